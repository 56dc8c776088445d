"""max_pool2d, avg_pool2d, adaptive_avg_pool2d on the CPU (Numba path).

Oracles: the naive loop references of minidl/ops/pool.py on hypothesis-drawn
shapes, kernels, strides, paddings and modes; hand-computed PyTorch cases
(output sizes, divisors, tie-breaking); float64 numerical gradients.
Max-pool inputs are tie-free (a shuffled ramp) except in the tie test.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minidl
import minidl.nn.functional as F
from minidl.ops import pool

DTYPES = [np.float32, np.float64]


def ramp(shape, dtype=np.float64, seed=0):
    """Distinct values 0, 0.1, 0.2 ... in random order: no two pixels tie."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n).reshape(shape) * 0.1).astype(dtype)


@st.composite
def pool_cases(draw):
    """(x shape, kernel, stride, padding, ceil_mode) with a kernel that fits."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    H = draw(st.integers(max(1, kh - 2 * ph), 9))
    W = draw(st.integers(max(1, kw - 2 * pw), 9))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), H, W)
    return shape, (kh, kw), (sh, sw), (ph, pw), draw(st.booleans())


# ----------------------------------------------------------------------------
# output size: PyTorch's rule, stated independently
# ----------------------------------------------------------------------------
def windows_by_rule(size, k, s, p, ceil_mode):
    """Count window starts t = i*s - p one by one: floor mode keeps windows
    inside the padded input; ceil mode also keeps a last partial window if it
    starts inside the input or the left padding (t < size)."""
    count = 0
    for i in range(4 * size + 8):
        t = i * s - p
        inside = t + k <= size + p
        partial = ceil_mode and t < size and t + k - (size + p) < s   # ceil of the division
        if inside or partial:
            count += 1
    return count


@given(size=st.integers(1, 30), k=st.integers(1, 6), s=st.integers(1, 5),
       p=st.integers(0, 3), ceil_mode=st.booleans())
@settings(max_examples=60, deadline=None)
def test_output_size_follows_the_rule(size, k, s, p, ceil_mode):
    if 2 * p > k or k > size + 2 * p:
        return
    assert pool.pool_output_size(size, k, s, p, ceil_mode) == windows_by_rule(
        size, k, s, p, ceil_mode)


@pytest.mark.parametrize("size, k, s, p, ceil_mode, expected", [
    (5, 2, 2, 0, False, 2), (5, 2, 2, 0, True, 3),     # a half window at the end
    (4, 2, 2, 1, True, 3), (5, 2, 2, 1, True, 3),      # 4th window would start in the padding
    (55, 3, 2, 0, False, 27), (224, 2, 2, 0, False, 112), (6, 3, 3, 1, True, 3),
])
def test_output_size_known_cases(size, k, s, p, ceil_mode, expected):
    assert pool.pool_output_size(size, k, s, p, ceil_mode) == expected


# ----------------------------------------------------------------------------
# max pooling
# ----------------------------------------------------------------------------
@given(case=pool_cases(), dtype=st.sampled_from(DTYPES),
       short_row=st.sampled_from([1, 10**9]))
@settings(max_examples=60, deadline=None)
def test_max_pool_matches_naive(case, dtype, short_row):
    """Both CPU kernels: rows at once (SHORT_POOL_ROW = 1) and one window at
    a time (SHORT_POOL_ROW above every width)."""
    shape, k, s, p, ceil_mode = case
    x = minidl.Tensor(ramp(shape, dtype), requires_grad=True)
    fn = pool.MaxPool2d(pool._geometry("t", x, k, s, p, ceil_mode))
    default, pool.SHORT_POOL_ROW = pool.SHORT_POOL_ROW, short_row
    try:
        y = fn(x)
    finally:
        pool.SHORT_POOL_ROW = default
    y_ref, argmax_ref = pool.max_pool2d_naive(x.data, *fn.geometry)
    assert y.dtype == dtype and y.shape == y_ref.shape
    np.testing.assert_array_equal(y.data, y_ref)
    assert fn.argmax.dtype == np.int32 and fn.argmax.shape == y.shape
    np.testing.assert_array_equal(fn.argmax, argmax_ref)
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    y.backward(gy)
    np.testing.assert_array_equal(   # same additions in the same order: exact
        x.grad.data, pool.max_pool2d_backward_naive(gy, argmax_ref, *shape[2:]))


@pytest.fixture(params=["rows at once", "one window at a time"])
def max_kernel(request, monkeypatch):
    """Runs the test on each CPU max-pool kernel (see pool.SHORT_POOL_ROW)."""
    monkeypatch.setattr(pool, "SHORT_POOL_ROW", 1 if request.param == "rows at once" else 10**9)


@pytest.mark.parametrize("k, s, p, ceil_mode", [
    (2, 2, 0, False), (3, 2, 1, False), (3, 1, 1, True), ((2, 3), (1, 2), (1, 0), True),
    (2, 3, 1, True), (3, 2, 0, True)])
def test_max_pool_gradcheck(k, s, p, ceil_mode, max_kernel):
    x = minidl.Tensor(ramp((2, 2, 5, 6)), requires_grad=True)
    assert minidl.gradcheck(lambda t: F.max_pool2d(t, k, s, p, ceil_mode), [x])


def test_max_pool_ties_go_to_the_first_maximum(max_kernel):
    x = minidl.Tensor(np.zeros((1, 1, 4, 4)), requires_grad=True)
    F.max_pool2d(x, 2, 2).sum().backward()        # every window is all ties
    expected = np.zeros((4, 4))
    expected[::2, ::2] = 1                        # the top-left pixel of each window
    np.testing.assert_array_equal(x.grad.data[0, 0], expected)

    row = np.array([[[[1.0, 3.0, 3.0, 2.0, 3.0]]]])   # overlapping windows, ties at 3
    x = minidl.Tensor(row, requires_grad=True)
    y = F.max_pool2d(x, (1, 3), 1)                # windows [0:3] [1:4] [2:5]
    y.sum().backward()
    np.testing.assert_array_equal(y.data[0, 0, 0], [3, 3, 3])
    np.testing.assert_array_equal(x.grad.data[0, 0, 0], [0, 2, 1, 0, 0])

    block = np.array([[5.0, 1.0], [1.0, 5.0]])[None, None]   # tie across rows: row-major first
    x = minidl.Tensor(block, requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad.data[0, 0], [[1, 0], [0, 0]])


def test_max_pool_padding_never_wins(max_kernel):
    x = minidl.Tensor(-1 - ramp((1, 2, 4, 5)))         # all negative: a zero pad would win
    y = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
    assert (y.data < 0).all()
    np.testing.assert_array_equal(y.data, pool.max_pool2d_naive(
        x.data, *pool._geometry("t", x, 3, 2, 1, True))[0])


def test_max_pool_nan_wins_like_pytorch(max_kernel):
    x = ramp((1, 1, 4, 4))
    x[0, 0, 0, 1] = x[0, 0, 1, 1] = x[0, 0, 2, 3] = np.nan    # two NaNs in window (0, 0)
    t = minidl.Tensor(x)
    fn = pool.MaxPool2d(pool._geometry("t", t, 2, 2, 0, False))
    y = fn(t)
    assert np.isnan(y.data[0, 0]).tolist() == [[True, False], [False, True]]
    assert fn.argmax[0, 0, 0, 0] == 1 * 4 + 1                 # the last NaN, as PyTorch
    y_ref, argmax_ref = pool.max_pool2d_naive(x, *fn.geometry)  # PyTorch's scan, literally
    np.testing.assert_array_equal(y.data, y_ref)
    np.testing.assert_array_equal(fn.argmax, argmax_ref)


def test_max_pool_of_minus_infinity_points_at_each_windows_first_pixel(max_kernel):
    """All -inf: no pixel beats the start, so each argmax is its window's
    first real pixel (PyTorch's start index), padding clipped."""
    x = minidl.Tensor(np.full((1, 1, 5, 5), -np.inf))
    fn = pool.MaxPool2d(pool._geometry("t", x, 3, 2, 1, True))
    y = fn(x)
    assert np.isneginf(y.data).all()
    np.testing.assert_array_equal(fn.argmax, pool.max_pool2d_naive(x.data, *fn.geometry)[1])
    np.testing.assert_array_equal(fn.argmax[0, 0], [[0, 1, 3], [5, 6, 8], [15, 16, 18]])


def test_max_pool_non_contiguous_input():
    base = ramp((2, 5, 6, 3))
    x = minidl.Tensor(base.transpose(0, 3, 1, 2))      # (2, 3, 5, 6), not contiguous
    y = F.max_pool2d(x, 2, 1)
    np.testing.assert_array_equal(y.data, F.max_pool2d(
        minidl.Tensor(np.ascontiguousarray(x.data)), 2, 1).data)


# ----------------------------------------------------------------------------
# average pooling
# ----------------------------------------------------------------------------
@given(case=pool_cases(), count_include_pad=st.booleans(), dtype=st.sampled_from(DTYPES),
       serial_below=st.sampled_from([0, pool.SERIAL_BELOW]))
@settings(max_examples=50, deadline=None)
def test_avg_pool_matches_naive(case, count_include_pad, dtype, serial_below):
    """Both the parallel kernels (serial_below=0) and their one-thread copies."""
    shape, k, s, p, ceil_mode = case
    rng = np.random.default_rng(2)
    x = minidl.Tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True)
    geometry = pool._geometry("t", x, k, s, p, ceil_mode)
    default, pool.SERIAL_BELOW = pool.SERIAL_BELOW, serial_below
    try:
        y = F.avg_pool2d(x, k, s, p, ceil_mode, count_include_pad)
        gy = rng.standard_normal(y.shape).astype(dtype)
        y.backward(gy)
    finally:
        pool.SERIAL_BELOW = default
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    assert y.dtype == dtype
    np.testing.assert_allclose(y.data, pool.avg_pool2d_naive(
        x.data, *geometry, count_include_pad), **tol)
    np.testing.assert_allclose(x.grad.data, pool.avg_pool2d_backward_naive(
        gy, *geometry[:6], *shape[2:], count_include_pad), **tol)


def test_avg_pool_divisor_pytorch_cases():
    ones = minidl.Tensor(np.ones((1, 1, 4, 4)))
    # k=3, s=2, p=1, ceil: windows [-1,2) [1,4) [3,6) hold 2, 3, 1 real rows;
    # counted with padding but only up to H + p = 5: 3, 3, 2
    per_axis = np.array([2 / 3, 3 / 3, 1 / 2])
    y = F.avg_pool2d(ones, 3, 2, 1, ceil_mode=True)
    np.testing.assert_allclose(y.data[0, 0], np.outer(per_axis, per_axis))
    y = F.avg_pool2d(ones, 3, 2, 1, ceil_mode=True, count_include_pad=False)
    np.testing.assert_allclose(y.data[0, 0], np.ones((3, 3)))
    x = minidl.Tensor(np.arange(16.0).reshape(1, 1, 4, 4))
    np.testing.assert_allclose(F.avg_pool2d(x, 2).data[0, 0], [[2.5, 4.5], [10.5, 12.5]])


@pytest.mark.parametrize("k, s, p, ceil_mode, count_include_pad", [
    (2, 2, 0, False, True), (3, 2, 1, False, True), (3, 2, 1, True, True),
    (3, 2, 1, True, False), ((2, 3), (1, 2), (1, 1), True, False), (2, 3, 1, True, True)])
def test_avg_pool_gradcheck(k, s, p, ceil_mode, count_include_pad):
    x = minidl.Tensor(np.random.default_rng(3).standard_normal((2, 2, 5, 6)), requires_grad=True)
    assert minidl.gradcheck(lambda t: F.avg_pool2d(t, k, s, p, ceil_mode, count_include_pad), [x])


# ----------------------------------------------------------------------------
# adaptive average pooling
# ----------------------------------------------------------------------------
def test_adaptive_bins():
    assert pool.adaptive_bins(5, 3) == [(0, 2), (1, 4), (3, 5)]
    assert pool.adaptive_bins(6, 3) == [(0, 2), (2, 4), (4, 6)]
    assert pool.adaptive_bins(2, 4) == [(0, 1), (0, 1), (1, 2), (1, 2)]
    assert pool.adaptive_bins(7, 1) == [(0, 7)]


@given(N=st.integers(1, 2), C=st.integers(1, 3), H=st.integers(1, 9), W=st.integers(1, 9),
       OH=st.one_of(st.none(), st.integers(1, 10)), OW=st.integers(1, 10),
       dtype=st.sampled_from(DTYPES))
@settings(max_examples=40, deadline=None)
def test_adaptive_avg_pool_matches_naive(N, C, H, W, OH, OW, dtype):
    rng = np.random.default_rng(4)
    x = minidl.Tensor(rng.standard_normal((N, C, H, W)).astype(dtype))
    y = F.adaptive_avg_pool2d(x, (OH, OW))
    OH = H if OH is None else OH
    assert y.shape == (N, C, OH, OW) and y.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y.data, pool.adaptive_avg_pool2d_naive(x.data, OH, OW),
                               rtol=tol, atol=tol)


def test_adaptive_global_is_the_mean():
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 5)).astype(np.float32)
    y = F.adaptive_avg_pool2d(minidl.Tensor(x), 1)
    assert y.shape == (2, 3, 1, 1) and y.dtype == np.float32
    np.testing.assert_allclose(y.data[:, :, 0, 0], x.mean(axis=(2, 3)), rtol=1e-6)


@pytest.mark.parametrize("output_size", [1, (3, 2), (None, 4), 7])
def test_adaptive_avg_pool_gradcheck(output_size):
    x = minidl.Tensor(np.random.default_rng(6).standard_normal((2, 2, 5, 6)), requires_grad=True)
    assert minidl.gradcheck(lambda t: F.adaptive_avg_pool2d(t, output_size), [x])


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------
X = minidl.Tensor(np.zeros((1, 2, 5, 5), np.float32))


@pytest.mark.parametrize("call, error, says", [
    (lambda: F.max_pool2d(X, 7), ValueError, r"kernel_size \(7, 7\).*\(1, 2, 5, 5\)"),
    (lambda: F.avg_pool2d(X, 8, padding=1), ValueError, r"kernel_size.*padded input \(7, 7\)"),
    (lambda: F.max_pool2d(X, 2, stride=0), ValueError, r"stride must be >= 1, got \(0, 0\)"),
    (lambda: F.avg_pool2d(X, 2, stride=(1, -1)), ValueError, r"stride"),
    (lambda: F.max_pool2d(X, 0), ValueError, r"kernel_size must be >= 1"),
    (lambda: F.max_pool2d(X, 3, padding=2), ValueError, r"padding \(2, 2\).*kernel_size \(3, 3\)"),
    (lambda: F.avg_pool2d(X, (2, 4), padding=(1, 3)), ValueError, r"padding"),
    (lambda: F.max_pool2d(X, 2, padding=-1), ValueError, r"padding"),
    (lambda: F.max_pool2d(X, (2, 2, 2)), ValueError, r"kernel_size must be an int or a pair"),
    (lambda: F.max_pool2d(X, 2.0), TypeError, r"kernel_size"),
    (lambda: F.max_pool2d(minidl.Tensor(np.zeros((2, 5, 5))), 2), ValueError,
     r"x must be 4-D.*\(2, 5, 5\)"),
    (lambda: F.avg_pool2d(minidl.Tensor(np.zeros((1, 1, 4, 4), np.int64)), 2), TypeError, r"int64"),
    (lambda: F.max_pool2d(np.zeros((1, 1, 4, 4)), 2), TypeError, r"x must be a Tensor"),
    (lambda: F.adaptive_avg_pool2d(X, 0), ValueError, r"output_size \(0, 0\).*\(1, 2, 5, 5\)"),
    (lambda: F.adaptive_avg_pool2d(X, (2, 2, 2)), ValueError, r"output_size"),
    (lambda: F.adaptive_avg_pool2d(X, 1.5), TypeError, r"output_size"),
    (lambda: F.adaptive_avg_pool2d(minidl.Tensor(np.zeros((2, 5))), 1), ValueError, r"4-D"),
])
def test_bad_input_raises(call, error, says):
    with pytest.raises(error, match=says):
        call()
