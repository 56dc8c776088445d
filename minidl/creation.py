"""Factory functions: zeros, ones, randn, rand, arange, *_like."""
import numpy as np

from . import backend
from .tensor import Tensor, default_rng


def _shape(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) \
        else tuple(int(s) for s in shape)


def _make(arr, requires_grad, device):
    return Tensor(backend.to_device(arr, device), requires_grad=requires_grad)


def zeros(*shape, dtype=np.float32, requires_grad=False, device="cpu"):
    return _make(np.zeros(_shape(shape), dtype=dtype), requires_grad, device)


def ones(*shape, dtype=np.float32, requires_grad=False, device="cpu"):
    return _make(np.ones(_shape(shape), dtype=dtype), requires_grad, device)


def randn(*shape, dtype=np.float32, requires_grad=False, device="cpu"):
    """Standard normal samples from minidl's generator (see manual_seed)."""
    arr = default_rng().standard_normal(_shape(shape)).astype(dtype)
    return _make(arr, requires_grad, device)


def rand(*shape, dtype=np.float32, requires_grad=False, device="cpu"):
    """Uniform samples in [0, 1) from minidl's generator."""
    arr = default_rng().random(_shape(shape)).astype(dtype)
    return _make(arr, requires_grad, device)


def arange(*args, dtype=None, device="cpu"):
    return _make(np.arange(*args, dtype=dtype), False, device)


def zeros_like(t, requires_grad=False):
    return zeros(t.shape, dtype=t.dtype, requires_grad=requires_grad, device=t.device)


def ones_like(t, requires_grad=False):
    return ones(t.shape, dtype=t.dtype, requires_grad=requires_grad, device=t.device)
