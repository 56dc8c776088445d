"""The GPU path of pooling: kernels/pool.cu through the GPU twins of minidl/ops/pool.py.

Inside ``cuda.host_launcher()`` the whole op (forward and backward, on NumPy
tensors) runs the .cu kernels on the CPU; it must equal the Numba path
exactly for max-pooling (data movement) and within rounding for average
pooling. With a real GPU the same ops run through CuPy on device tensors.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minidl
import minidl.nn.functional as F
from minidl import cuda
from minidl.backend import cuda_is_available

from test_pool import DTYPES, pool_cases, ramp


def forward_backward(op, x, gy_seed=1):
    """(y, argmax or None, x.grad) of op on a fresh leaf holding array x."""
    t = minidl.Tensor(x, requires_grad=True)
    y = op(t)
    argmax = getattr(y.creator, "argmax", None)
    gy = np.random.default_rng(gy_seed).standard_normal(y.shape).astype(x.dtype)
    y.backward(gy)
    return y.data, argmax, t.grad.data


@given(case=pool_cases(), dtype=st.sampled_from(DTYPES))
@settings(max_examples=30, deadline=None)
def test_max_pool_kernels_equal_numba_exactly(case, dtype):
    shape, k, s, p, ceil_mode = case
    x = ramp(shape, dtype)
    op = lambda t: F.max_pool2d(t, k, s, p, ceil_mode)      # noqa: E731
    y, argmax, gx = forward_backward(op, x)
    with cuda.host_launcher() as launcher:
        y_gpu, argmax_gpu, gx_gpu = forward_backward(op, x)
    assert launcher.launched == {("pool.cu", "max_pool_forward"): 1,
                                 ("pool.cu", "max_pool_backward"): 1}
    np.testing.assert_array_equal(y_gpu, y)
    assert argmax_gpu.dtype == np.int32 and argmax_gpu.shape == y.shape
    np.testing.assert_array_equal(argmax_gpu, argmax)
    np.testing.assert_array_equal(gx_gpu, gx)


def test_max_pool_kernel_ties_and_nan():
    x = np.zeros((1, 2, 4, 5))
    x[0, 1, 1, 1] = x[0, 1, 2, 2] = np.nan       # several windows hold both NaNs
    op = lambda t: F.max_pool2d(t, 3, 1, 1)     # noqa: E731  overlapping windows, all ties
    y, argmax, gx = forward_backward(op, x)
    with cuda.host_launcher():
        y_gpu, argmax_gpu, gx_gpu = forward_backward(op, x)
    np.testing.assert_array_equal(y_gpu, y)      # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(argmax_gpu, argmax)
    np.testing.assert_array_equal(gx_gpu, gx)


@given(case=pool_cases(), count_include_pad=st.booleans(), dtype=st.sampled_from(DTYPES))
@settings(max_examples=30, deadline=None)
def test_avg_pool_kernels_match_numba(case, count_include_pad, dtype):
    shape, k, s, p, ceil_mode = case
    x = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    op = lambda t: F.avg_pool2d(t, k, s, p, ceil_mode, count_include_pad)   # noqa: E731
    y, _, gx = forward_backward(op, x)
    with cuda.host_launcher() as launcher:
        y_gpu, _, gx_gpu = forward_backward(op, x)
    assert launcher.launched == {("pool.cu", "avg_pool_forward"): 1,
                                 ("pool.cu", "avg_pool_backward"): 1}
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(y_gpu, y, **tol)
    np.testing.assert_allclose(gx_gpu, gx, **tol)


# ----------------------------------------------------------------------------
# on a real GPU
# ----------------------------------------------------------------------------
needs_gpu = pytest.mark.skipif(not cuda_is_available(),
                               reason="no CUDA GPU: CuPy cannot run kernels on this machine")

GPU_CASES = {
    "max 3/2 pad 1": (lambda t: F.max_pool2d(t, 3, 2, 1), True),
    "max ceil": (lambda t: F.max_pool2d(t, (3, 2), (2, 3), ceil_mode=True), True),
    "avg pad counted ceil": (lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True), False),
    "avg pad not counted": (lambda t: F.avg_pool2d(t, 2, 1, 1, count_include_pad=False), False),
    "adaptive 3x2": (lambda t: F.adaptive_avg_pool2d(t, (3, 2)), False),
    "adaptive global": (lambda t: F.adaptive_avg_pool2d(t, 1), False),
}


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", GPU_CASES)
def test_on_gpu_matches_cpu(name, dtype):
    op, exact = GPU_CASES[name]
    x = ramp((2, 3, 9, 8), dtype)
    y, _, gx = forward_backward(op, x)
    t = minidl.tensor(x, requires_grad=True, device="cuda")
    y_gpu = op(t)
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    y_gpu.backward(minidl.tensor(gy, device="cuda"))
    assert y_gpu.device == "cuda" and t.grad.device == "cuda"     # stayed on the GPU
    if exact:
        np.testing.assert_array_equal(y_gpu.numpy(), y)
        np.testing.assert_array_equal(t.grad.numpy(), gx)
    else:
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(y_gpu.numpy(), y, rtol=tol, atol=tol)
        np.testing.assert_allclose(t.grad.numpy(), gx, rtol=tol, atol=tol)
