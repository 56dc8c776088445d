"""local_response_norm on the CPU (Numba path).

Oracles: the naive channel-loop reference and its Jacobian-scatter backward
(minidl/ops/lrn.py) on hypothesis-drawn shapes and settings, closed forms
for tiny cases, and float64 numerical gradients.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minidl
import minidl.nn.functional as F
from minidl.ops import lrn

DTYPES = [np.float32, np.float64]
# the drawn arguments of a case (shape, size, alpha, beta, k, dtype), shared with
# test_lrn_cuda.py; beta = 0.75 takes the square-root path, other betas pow
LRN_CASE = dict(N=st.integers(1, 2), C=st.integers(1, 9), H=st.integers(1, 4),
                W=st.integers(1, 4), size=st.integers(1, 10), alpha=st.floats(1e-4, 2.0),
                beta=st.just(0.75) | st.floats(0.25, 1.5), k=st.floats(0.5, 3.0),
                dtype=st.sampled_from(DTYPES))


def test_window_centring():
    assert lrn.window(2, 5, 10) == (0, 5)          # odd: c-2 .. c+2
    assert lrn.window(0, 5, 10) == (0, 3)          # cut at the first channel
    assert lrn.window(9, 5, 10) == (7, 10)         # and at the last
    assert lrn.window(4, 4, 10) == (2, 6)          # even: c-2 .. c+1 (PyTorch's)
    assert lrn.window(3, 1, 10) == (3, 4)
    assert lrn.window(3, 20, 5) == (0, 5)


def test_closed_form():
    a = np.array([1.0, -2.0, 3.0]).reshape(1, 3, 1, 1)
    alpha, beta, k = 0.5, 0.75, 2.0
    y = F.local_response_norm(minidl.Tensor(a), 2, alpha, beta, k).data.ravel()
    # size 2: window(c) = {c-1, c}
    np.testing.assert_allclose(y, [1 / (2 + 0.5 * 1) ** 0.75,
                                   -2 / (2 + 0.5 * (1 + 4)) ** 0.75,
                                   3 / (2 + 0.5 * (4 + 9)) ** 0.75], rtol=1e-14)
    # one channel, size 1: y = x / (k + alpha x^2)^beta, dy/dx in closed form
    x = minidl.Tensor(np.array([[[[1.5]]]]), requires_grad=True)
    F.local_response_norm(x, 1, alpha, beta, k).backward()
    s = k + alpha * 1.5 ** 2
    np.testing.assert_allclose(x.grad.data.item(),
                               s ** -beta - 2 * alpha * beta * 1.5 ** 2 * s ** (-beta - 1))


def test_torch_alpha_conversion():
    """PyTorch divides alpha by size: torch alpha = minidl alpha * size."""
    x = np.random.default_rng(0).standard_normal((1, 6, 2, 2))
    size, torch_alpha, beta, k = 3, 0.3, 0.75, 1.0
    y = F.local_response_norm(minidl.Tensor(x), size, torch_alpha / size, beta, k).data
    mean_sq = np.stack([(x[:, max(c - 1, 0):c + 2] ** 2).sum(1) / size for c in range(6)], 1)
    np.testing.assert_allclose(y, x / (k + torch_alpha * mean_sq) ** beta, rtol=1e-13)


@given(**LRN_CASE)
@settings(max_examples=50, deadline=None)
def test_matches_naive(N, C, H, W, size, alpha, beta, k, dtype):
    """beta = 0.75 (AlexNet's, computed with square roots) and drawn betas (pow)."""
    rng = np.random.default_rng(1)
    x = minidl.Tensor(rng.standard_normal((N, C, H, W)).astype(dtype), requires_grad=True)
    y = F.local_response_norm(x, size, alpha, beta, k)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    assert y.dtype == dtype
    np.testing.assert_allclose(y.data, lrn.lrn_naive(x.data, size, alpha, beta, k), **tol)
    gy = rng.standard_normal(y.shape).astype(dtype)
    y.backward(gy)
    assert x.grad.dtype == dtype
    np.testing.assert_allclose(x.grad.data,
                               lrn.lrn_backward_naive(x.data, gy, size, alpha, beta, k), **tol)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8])
def test_gradcheck(size):
    # alpha large enough that the cross-channel term of the gradient matters
    x = minidl.Tensor(np.random.default_rng(2).standard_normal((2, 6, 2, 3)), requires_grad=True)
    assert minidl.gradcheck(lambda t: F.local_response_norm(t, size, 0.5, 0.75, 1.0), [x])


def test_float64_stays_float64():
    x = minidl.Tensor(np.random.default_rng(3).standard_normal((1, 4, 3, 3)), requires_grad=True)
    fn = lrn.LocalResponseNorm(3, 1e-4, 0.75, 2.0)
    y = fn(x)
    assert y.dtype == np.float64 and fn.s.dtype == np.float64 and fn.p.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float64


def test_float32_stays_float32():
    x = minidl.Tensor(np.random.default_rng(4).standard_normal((1, 4, 3, 3)).astype(np.float32),
                      requires_grad=True)
    fn = lrn.LocalResponseNorm(3, 1e-4, 0.75, 2.0)
    y = fn(x)
    assert y.dtype == np.float32 and fn.s.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_non_contiguous_input():
    base = np.random.default_rng(5).standard_normal((2, 3, 4, 5))
    x = minidl.Tensor(base.transpose(0, 3, 1, 2))                   # (2, 5, 3, 4)
    np.testing.assert_allclose(F.local_response_norm(x, 3, 0.1).data,
                               lrn.lrn_naive(x.data, 3, 0.1, 0.75, 2.0), rtol=1e-13)


X = minidl.Tensor(np.zeros((1, 3, 2, 2), np.float32))


@pytest.mark.parametrize("call, error, says", [
    (lambda: F.local_response_norm(X, 0), ValueError, r"size must be >= 1, got 0.*\(1, 3, 2, 2\)"),
    (lambda: F.local_response_norm(X, 2.5), TypeError, r"size must be an int"),
    (lambda: F.local_response_norm(minidl.Tensor(np.zeros((3, 2, 2))), 3), ValueError,
     r"4-D.*\(3, 2, 2\)"),
    (lambda: F.local_response_norm(minidl.Tensor(np.zeros((1, 3, 2, 2), np.int32)), 3),
     TypeError, r"int32"),
    (lambda: F.local_response_norm(X, 3, alpha="big"), TypeError, r"alpha"),
    (lambda: F.local_response_norm(np.zeros((1, 3, 2, 2)), 3), TypeError, r"x must be a Tensor"),
])
def test_bad_input_raises(call, error, says):
    with pytest.raises(error, match=says):
        call()
