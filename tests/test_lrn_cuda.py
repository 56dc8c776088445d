"""The GPU path of LRN: kernels/lrn.cu through the GPU twins of minidl/ops/lrn.py.

Inside ``cuda.host_launcher()`` local_response_norm (forward and backward,
on NumPy tensors) runs the .cu kernels on the CPU and must match the Numba
path within rounding; with a real GPU it runs through CuPy on device tensors.
"""
import numpy as np
import pytest
from hypothesis import given, settings

import minidl
import minidl.nn.functional as F
from minidl import cuda
from minidl.backend import cuda_is_available

from test_lrn import DTYPES, LRN_CASE


def forward_backward(x, gy, *args, device="cpu"):
    """(y, x.grad) of local_response_norm(x, *args) as NumPy arrays."""
    t = minidl.tensor(x, requires_grad=True, device=device)
    y = F.local_response_norm(t, *args)
    y.backward(minidl.tensor(gy, device=device))
    assert y.device == device and t.grad.device == device
    return y.numpy(), t.grad.numpy()


def tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


@given(**LRN_CASE)
@settings(max_examples=40, deadline=None)
def test_kernels_match_numba(N, C, H, W, size, alpha, beta, k, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    y, gx = forward_backward(x, gy, size, alpha, beta, k)
    with cuda.host_launcher() as launcher:
        y_gpu, gx_gpu = forward_backward(x, gy, size, alpha, beta, k)
    assert launcher.launched == {("lrn.cu", "lrn_forward"): 1, ("lrn.cu", "lrn_backward"): 1}
    assert y_gpu.dtype == dtype and gx_gpu.dtype == dtype
    np.testing.assert_allclose(y_gpu, y, **tolerance(dtype))
    np.testing.assert_allclose(gx_gpu, gx, **tolerance(dtype))


@pytest.mark.skipif(not cuda_is_available(),
                    reason="no CUDA GPU: CuPy cannot run kernels on this machine")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 4, 5, 12])
def test_on_gpu_matches_cpu(size, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 7, 5, 6)).astype(dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    y, gx = forward_backward(x, gy, size, 0.3, 0.75, 1.5)
    y_gpu, gx_gpu = forward_backward(x, gy, size, 0.3, 0.75, 1.5, device="cuda")
    np.testing.assert_allclose(y_gpu, y, **tolerance(dtype))
    np.testing.assert_allclose(gx_gpu, gx, **tolerance(dtype))
