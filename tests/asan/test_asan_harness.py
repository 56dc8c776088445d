"""The sanitized host build catches a kernel's memory and integer bugs.

A sanitizer error aborts the process, so each broken kernel runs in a child
python (which inherits LD_PRELOAD and ASAN_OPTIONS); the test reads its report.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minidl import cuda

pytestmark = pytest.mark.asan
KERNELS = Path(__file__).parent.parent / "kernels"
REPO = Path(cuda.__file__).resolve().parent.parent


def run_child(kernel, n, args):
    """Launch ``kernel`` of broken.cu in a sanitized child python; return it."""
    code = ("import numpy as np\nfrom minidl import cuda\n"
            "with cuda.host_launcher(sanitize=True):\n"
            f"    cuda.launch({str(KERNELS / 'broken.cu')!r}, {kernel!r}, {n}, ({args}), np.float32)\n"
            "print('no error')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)


def line_of(text, path=KERNELS / "broken.cu"):
    """1-based line number of the first line of ``path`` containing ``text``."""
    return 1 + next(i for i, line in enumerate(path.read_text().splitlines()) if text in line)


def test_read_past_the_end_is_caught(sanitized):
    child = run_child("read_past_end", 100, "np.int64(100), np.zeros(100, np.float32), "
                                            "np.zeros(100, np.float32)")
    assert child.returncode != 0 and "no error" not in child.stdout
    assert "AddressSanitizer: heap-buffer-overflow" in child.stderr
    assert f"in read_past_end {KERNELS / 'broken.cu'}:{line_of('y[i] = x[i + 1]')}" in child.stderr


def test_int_overflow_is_caught(sanitized):
    child = run_child("int_offset_overflow", 8, "np.int32(8), np.int32(2**30), "
                                                "np.zeros(8, np.int64)")
    assert child.returncode != 0 and "no error" not in child.stdout
    assert f"broken.cu:{line_of('offset[i] = i * width')}" in child.stderr
    assert "signed integer overflow: 1073741824 * 2 cannot be represented in type 'int'" in child.stderr


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_test_kernels_run_clean(sanitized, dtype):
    harness = KERNELS / "harness.cu"
    n = 1000
    x, y = np.arange(n, dtype=dtype), np.ones(n, dtype)
    z, out = np.linspace(0.1, 2, 9).astype(dtype), np.zeros((9, 11), dtype)
    with sanitized() as launcher:
        cuda.launch(harness, "saxpy", n, (np.int64(n), dtype(2), x, y), dtype)
        cuda.launch(harness, "device_functions", z.size, (np.int64(z.size), z, out), dtype)
    np.testing.assert_array_equal(y, 2 * x + 1)
    assert launcher.launched == {("harness.cu", "saxpy"): 1, ("harness.cu", "device_functions"): 1}
