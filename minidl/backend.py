"""Where arrays live: NumPy on the CPU, CuPy on the GPU.

Every op is written once against ``xp``, the array module of its inputs
(the DeZero/Chainer idiom)::

    xp = get_array_module(x)   # numpy or cupy
    y = xp.exp(x)

CuPy is optional. It is imported lazily, the first time a GPU is asked for,
so ``import minidl`` never pays for it and never fails without it.
"""
import numpy as np

_cupy = None          # the cupy module once imported successfully
_cupy_error = None    # why CuPy cannot be used (a one-line string), once known


def _load_cupy():
    """Import CuPy and check a GPU answers; return (cupy or None, reason)."""
    global _cupy, _cupy_error
    if _cupy is not None or _cupy_error is not None:
        return _cupy, _cupy_error
    try:
        import cupy
    except ImportError as e:
        _cupy_error = (f"CuPy is not installed ({e}); install the GPU extra: "
                       f'pip install ".[gpu]"')
        return None, _cupy_error
    try:
        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            raise RuntimeError("no CUDA device found")
    except Exception as e:  # CUDARuntimeError, DynamicLibNotFoundError ...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        _cupy_error = (f"CuPy is installed but no usable GPU was found: {reason}. "
                       f"A CUDA GPU and driver are needed for device='cuda'.")
        return None, _cupy_error
    _cupy = cupy
    return _cupy, None


def cuda_is_available():
    """True when CuPy imports and at least one CUDA device answers."""
    return _load_cupy()[0] is not None


def require_cupy():
    """Return the cupy module or raise RuntimeError with the one-line reason."""
    cp, reason = _load_cupy()
    if cp is None:
        raise RuntimeError(reason)
    return cp


def is_cupy_array(a):
    """True for a cupy.ndarray, checked without importing CuPy."""
    return type(a).__module__.split(".")[0] == "cupy"


def get_array_module(*arrays):
    """numpy, or cupy if any argument is a CuPy array (or a Tensor on it)."""
    for a in arrays:
        a = getattr(a, "data", a) if not isinstance(a, np.ndarray) else a
        if is_cupy_array(a):
            return _cupy if _cupy is not None else require_cupy()
    return np


def device_of(a):
    """"cuda" for a CuPy array, "cpu" otherwise."""
    return "cuda" if is_cupy_array(a) else "cpu"


def check_device(device):
    """Normalise a device name ("cpu", "cuda", "cuda:0") or raise ValueError."""
    name = str(device)
    if name == "cpu" or name == "cuda" or name.startswith("cuda:"):
        return "cpu" if name == "cpu" else "cuda"
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def to_device(a, device):
    """Copy array ``a`` to ``device`` ("cpu" or "cuda"); no copy if it is there."""
    device = check_device(device)
    if device == device_of(a):
        return a
    if device == "cpu":
        return a.get()
    return require_cupy().asarray(a)


def as_numpy(a):
    """A NumPy array for ``a`` (copied from the GPU if needed)."""
    return a.get() if is_cupy_array(a) else np.asarray(a)
