"""The sanitizer run of the CUDA host harness, in its own pytest process:

    ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$(g++ -print-file-name=libasan.so) \
        python -m pytest -m asan tests/asan

The kernels are built with -fsanitize=address,undefined; the uninstrumented
python needs the ASan runtime preloaded, and leak checking off (CPython
keeps memory alive at exit on purpose). pytest.ini deselects the ``asan``
marker in ordinary runs.
"""
import os

import pytest

from minidl import cuda
from minidl.testing import cuda_host

COMMAND = ("ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$(g++ -print-file-name=libasan.so) "
           "python -m pytest -m asan tests/asan")


@pytest.fixture
def sanitized():
    """``with sanitized() as launcher:`` runs the ASan+UBSan host build."""
    if not cuda_host.asan_loaded() or "detect_leaks=0" not in os.environ.get("ASAN_OPTIONS", ""):
        pytest.fail(f"the asan tests need the ASan runtime preloaded; run: {COMMAND}")
    return lambda: cuda.host_launcher(sanitize=True)
