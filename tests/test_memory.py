"""minidl.memory: glibc keeps freed memory for reuse (speed is measured in
benchmarks/, not here); the setting can be turned off."""
import os
import subprocess
import sys

import pytest

from minidl import memory

glibc = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")


@pytest.mark.skipif(not glibc, reason="mallopt thresholds are a glibc feature")
def test_thresholds_are_set_on_glibc():
    assert memory.keep_freed_memory() is True


def test_opt_out_leaves_malloc_alone(monkeypatch):
    monkeypatch.setenv("MINIDL_MALLOC_DEFAULTS", "1")
    assert memory.keep_freed_memory() is False


def test_import_with_opt_out_works():
    """A fresh process that opts out still imports and computes."""
    code = "import minidl; print(float(minidl.ones(3).sum().item()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, MINIDL_MALLOC_DEFAULTS="1"))
    assert out.stdout.strip() == "3.0"
