"""Every kernels/*.cu compiles with NVRTC -- the compiler CuPy uses on a GPU
machine -- for sm_80 and sm_90, float and double, with no GPU present.

New kernel files are covered automatically (glob). A failure shows NVRTC's
log: file, line and message.
"""
from pathlib import Path

import numpy as np
import pytest

from minidl import cuda
from minidl.testing import nvrtc

HARNESS = Path(__file__).parent / "kernels" / "harness.cu"
SOURCES = cuda.kernel_files() + [HARNESS]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float", "double"])
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_kernel_file_compiles_to_cubin(path, arch, dtype):
    src = cuda.load_source(path)
    cubin = nvrtc.compile(src.text, path.name, arch, cuda.nvrtc_options(dtype))
    assert cubin[:4] == b"\x7fELF"
    for name in src.kernels:                 # extern "C": names are not mangled
        assert name.encode() in cubin, f"{path.name}: kernel {name!r} missing from the cubin"


def test_nvrtc_is_the_cuda_12_compiler():
    assert nvrtc.version()[0] == 12


def test_ptx_for_a_virtual_architecture():
    ptx = nvrtc.compile(HARNESS.read_text(), "harness.cu", "compute_80", cuda.nvrtc_options(np.float32))
    assert b".visible .entry saxpy(" in ptx and b".target sm_80" in ptx


@pytest.mark.parametrize("body, says", [
    ("x[0] = INFINITY;", 'identifier "INFINITY" is undefined'),
    ("x[0] = FLT_MAX;", 'identifier "FLT_MAX" is undefined'),
    ("x[0] = std::max(x[0], x[1]);", 'namespace "std" has no member "max"'),
])
def test_what_nvrtc_rejects_fails_with_its_log(body, says):
    text = f'extern "C" __global__ void k(scalar_t* x) {{\n    {body}\n}}\n'
    with pytest.raises(nvrtc.NVRTCError, match="bad.cu") as info:
        nvrtc.compile(text, "bad.cu", "sm_80", cuda.nvrtc_options(np.float32))
    assert "bad.cu(2): error" in str(info.value) and says in str(info.value)


def test_std_headers_are_rejected():
    text = '#include <cmath>\nextern "C" __global__ void k(float* x) { x[0] = 1; }\n'
    with pytest.raises(nvrtc.NVRTCError, match="cmath"):
        nvrtc.compile(text, "bad.cu", "sm_80")
