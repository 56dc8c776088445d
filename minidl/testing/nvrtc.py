"""Compile CUDA C with NVRTC through ctypes -- no GPU, no driver, no CuPy.

NVRTC is the run-time compiler CuPy's ``RawModule`` calls. The PyPI wheel
``nvidia-cuda-nvrtc-cu12`` ships it as ``libnvrtc.so.12``; compiling with it
here proves a kernel file compiles on a GPU machine too::

    from minidl.testing import nvrtc
    cubin = nvrtc.compile(text, "conv.cu", arch="sm_80", options=("-Dscalar_t=float",))

``arch="sm_XX"`` gives a cubin (NVRTC also runs ptxas: register allocation
errors show up), ``arch="compute_XX"`` gives PTX text. Errors raise
``NVRTCError`` carrying NVRTC's log (``conv.cu(12): error: ...``).
"""
import ctypes
import ctypes.util
import functools
from pathlib import Path


class NVRTCError(RuntimeError):
    """Compilation failed; the message holds NVRTC's log."""


@functools.cache
def library():
    """ctypes handle of libnvrtc.so.12: the PyPI wheel's, else the system's."""
    candidates = []
    try:
        import nvidia.cuda_nvrtc
        candidates += [Path(p) / "lib" / "libnvrtc.so.12" for p in nvidia.cuda_nvrtc.__path__]
    except ImportError:
        pass
    candidates += ["libnvrtc.so.12", ctypes.util.find_library("nvrtc")]
    for path in filter(None, candidates):
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        return lib
    raise OSError("libnvrtc.so.12 not found: pip install nvidia-cuda-nvrtc-cu12")


def _check(result, call):
    if result != 0:
        message = library().nvrtcGetErrorString(result).decode()
        raise NVRTCError(f"{call} failed: {message} (nvrtcResult {result})")


def version():
    """(major, minor) of the loaded NVRTC."""
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(library().nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def compile(text, name="kernel.cu", arch="sm_80", options=()):
    """Compile CUDA C ``text``; return the cubin (``sm_XX``) or PTX (``compute_XX``) bytes."""
    lib = library()
    cubin = arch.startswith("sm_")
    prog = ctypes.c_void_p()
    _check(lib.nvrtcCreateProgram(ctypes.byref(prog), text.encode(), name.encode(),
                                  0, None, None), "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}", *options]
        c_opts = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        result = lib.nvrtcCompileProgram(prog, len(opts), c_opts)
        size = ctypes.c_size_t()
        _check(lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "nvrtcGetProgramLogSize")
        log = ctypes.create_string_buffer(size.value)
        _check(lib.nvrtcGetProgramLog(prog, log), "nvrtcGetProgramLog")
        if result != 0:
            raise NVRTCError(f"NVRTC could not compile {name} ({' '.join(opts)}):\n"
                             f"{log.value.decode(errors='replace')}")
        get_size, get = ((lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN) if cubin
                         else (lib.nvrtcGetPTXSize, lib.nvrtcGetPTX))
        _check(get_size(prog, ctypes.byref(size)), "nvrtcGet*Size")
        code = ctypes.create_string_buffer(size.value)
        _check(get(prog, code), "nvrtcGetCUBIN/PTX")
        return code.raw
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
