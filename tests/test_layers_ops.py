"""minidl.ops.layers: linear, dropout, batch_norm against naive NumPy loops
(float64) and numerical gradients."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minidl
from minidl import Tensor, gradcheck
from minidl.ops.layers import batch_norm, dropout, linear

SETTINGS = settings(max_examples=25, deadline=None)


def t(a, grad=False):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


# ----------------------------------------------------------------------------
# naive references
# ----------------------------------------------------------------------------
def naive_linear(x, w, b):
    """y[m, o] = sum_i x[m, i] w[o, i] + b[o], one output at a time."""
    x2 = x.reshape(-1, x.shape[-1])
    y = np.zeros((x2.shape[0], w.shape[0]))
    for m in range(x2.shape[0]):
        for o in range(w.shape[0]):
            acc = 0.0 if b is None else b[o]
            for i in range(w.shape[1]):
                acc += x2[m, i] * w[o, i]
            y[m, o] = acc
    return y.reshape(x.shape[:-1] + (w.shape[0],))


def naive_batch_norm(x, mean, var, w, b, eps):
    """Per channel c: (x[:, c] - mean[c]) / sqrt(var[c] + eps) * w[c] + b[c]."""
    y = np.empty_like(x)
    for c in range(x.shape[1]):
        y[:, c] = (x[:, c] - mean[c]) / np.sqrt(var[c] + eps)
        y[:, c] = y[:, c] * (1.0 if w is None else w[c]) + (0.0 if b is None else b[c])
    return y


def channel_stats(x):
    """Per-channel mean, biased and unbiased variance, by explicit loops."""
    c = x.shape[1]
    mean, var, unbiased = np.zeros(c), np.zeros(c), np.zeros(c)
    for k in range(c):
        vals = x[:, k].ravel()
        mean[k] = sum(vals) / len(vals)
        ss = sum((v - mean[k]) ** 2 for v in vals)
        var[k], unbiased[k] = ss / len(vals), ss / (len(vals) - 1)
    return mean, var, unbiased


# ----------------------------------------------------------------------------
# linear
# ----------------------------------------------------------------------------
@SETTINGS
@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
       n_in=st.integers(1, 4), n_out=st.integers(1, 4), use_bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_linear_matches_naive_loops_and_gradcheck(lead, n_in, n_out, use_bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(tuple(lead) + (n_in,))
    w = rng.standard_normal((n_out, n_in))
    b = rng.standard_normal(n_out) if use_bias else None
    y = linear(t(x), t(w), None if b is None else t(b))
    assert y.shape == tuple(lead) + (n_out,)
    np.testing.assert_allclose(y.data, naive_linear(x, w, b), rtol=1e-12, atol=1e-12)
    inputs = [t(x, True), t(w, True)] + ([t(b, True)] if use_bias else [])
    assert gradcheck(lambda *a: linear(*a), inputs)


def test_linear_gradients_closed_form():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((5, 3)), rng.standard_normal((4, 3)), rng.standard_normal(4)
    gy = rng.standard_normal((5, 4))
    xt, wt, bt = t(x, True), t(w, True), t(b, True)
    linear(xt, wt, bt).backward(gy)
    np.testing.assert_allclose(xt.grad.data, gy @ w)
    np.testing.assert_allclose(wt.grad.data, gy.T @ x)
    np.testing.assert_allclose(bt.grad.data, gy.sum(0))


def test_linear_float32_keeps_dtype_and_only_needed_grads():
    x = Tensor(np.ones((2, 3), np.float32))
    w = Tensor(np.ones((4, 3), np.float32), requires_grad=True)
    y = linear(x, w)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad is None and w.grad.shape == (4, 3)


def test_linear_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 5\).*\(4, 3\)"):
        linear(t(np.ones((2, 5))), t(np.ones((4, 3))))
    with pytest.raises(ValueError, match="weight must be 2-D"):
        linear(t(np.ones((2, 3))), t(np.ones(3)))
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\).*\(5,\)"):
        linear(t(np.ones((2, 3))), t(np.ones((4, 3))), t(np.ones(5)))


# ----------------------------------------------------------------------------
# dropout
# ----------------------------------------------------------------------------
def test_dropout_zeroes_or_scales_each_element():
    minidl.manual_seed(0)
    x = np.random.default_rng(1).uniform(1, 2, size=(200, 100))
    p = 0.3
    y = dropout(t(x), p=p, training=True).data
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-12)
    # 20,000 Bernoulli(0.3) draws: the dropped fraction is within 5 sigma of p
    assert abs((~kept).mean() - p) < 5 * np.sqrt(p * (1 - p) / x.size)
    assert abs(y.mean() / x.mean() - 1) < 0.03            # E[y] = x


def test_dropout_is_reproducible_and_its_gradient_uses_the_same_mask():
    x = np.random.default_rng(2).uniform(1, 2, size=(6, 7))
    minidl.manual_seed(5)
    y1 = dropout(t(x), 0.5).data
    minidl.manual_seed(5)
    xt = t(x, True)
    y2 = dropout(xt, 0.5)
    np.testing.assert_array_equal(y1, y2.data)
    y2.sum().backward()
    np.testing.assert_allclose(xt.grad.data, (y1 != 0) * 2.0)
    np.testing.assert_allclose(xt.grad.data * x, y1)


def test_dropout_gradcheck_with_a_fixed_mask():
    x = t(np.random.default_rng(3).standard_normal((4, 5)), True)

    def fn(a):
        minidl.manual_seed(11)              # the same mask at every evaluation
        return dropout(a, 0.4, training=True)
    assert gradcheck(fn, [x])


def test_dropout_identity_when_not_training_or_p_zero():
    x = t(np.arange(6.0))
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, "0.5", True])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match="p must be a probability"):
        dropout(t(np.ones(3)), p)


def test_dropout_float32_stays_float32():
    assert dropout(Tensor(np.ones((3, 3), np.float32)), 0.5).dtype == np.float32


# ----------------------------------------------------------------------------
# batch_norm
# ----------------------------------------------------------------------------
shapes = st.one_of(st.tuples(st.integers(2, 5), st.integers(1, 3)),
                   st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
                             st.integers(1, 3)).filter(lambda s: s[0] * s[2] * s[3] > 1))


@SETTINGS
@given(shape=shapes, affine=st.booleans(), seed=st.integers(0, 2**16))
def test_batch_norm_training_forward_and_running_stats(shape, affine, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3 + 1
    c = shape[1]
    w, b = (rng.standard_normal(c), rng.standard_normal(c)) if affine else (None, None)
    rm0, rv0 = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    rm, rv = t(rm0.copy()), t(rv0.copy())
    y = batch_norm(t(x), rm, rv, None if w is None else t(w), None if b is None else t(b),
                   training=True, momentum=0.2, eps=1e-5)
    mean, var, unbiased = channel_stats(x)
    np.testing.assert_allclose(y.data, naive_batch_norm(x, mean, var, w, b, 1e-5),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(rm.data, 0.8 * rm0 + 0.2 * mean, rtol=1e-12)
    np.testing.assert_allclose(rv.data, 0.8 * rv0 + 0.2 * unbiased, rtol=1e-12)


@SETTINGS
@given(shape=shapes, affine=st.booleans(), training=st.booleans(),
       seed=st.integers(0, 2**16))
def test_batch_norm_gradcheck(shape, affine, training, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    rm, rv = t(rng.standard_normal(c)), t(rng.uniform(0.5, 2, c))
    inputs = [t(rng.standard_normal(shape) * 2, True)]
    if affine:
        inputs += [t(rng.standard_normal(c), True), t(rng.standard_normal(c), True)]

    def fn(x, *wb):
        w, b = wb if wb else (None, None)
        return batch_norm(x, rm, rv, w, b, training=training, momentum=0.0, eps=1e-3)
    assert gradcheck(fn, inputs)


def test_batch_norm_eval_uses_running_stats_and_leaves_them():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 2, 2))
    rm0, rv0 = np.array([0.5, -1.0]), np.array([2.0, 0.25])
    w, b = np.array([1.5, 2.0]), np.array([0.1, 0.0])
    rm, rv = t(rm0.copy()), t(rv0.copy())
    y = batch_norm(t(x), rm, rv, t(w), t(b), training=False, eps=1e-5)
    np.testing.assert_allclose(y.data, naive_batch_norm(x, rm0, rv0, w, b, 1e-5), rtol=1e-12)
    np.testing.assert_array_equal(rm.data, rm0)
    np.testing.assert_array_equal(rv.data, rv0)


def test_batch_norm_training_gradient_closed_form():
    """With batch statistics, sum_n xhat[n, c] = 0 whatever x is, so for
    y = w xhat the gradient of sum(y) with respect to x is exactly 0."""
    x = t(np.random.default_rng(5).standard_normal((4, 3)), True)
    batch_norm(x, None, None, t(np.ones(3) * 2), None, training=True).sum().backward()
    np.testing.assert_allclose(x.grad.data, 0, atol=1e-12)


def test_batch_norm_only_bias_or_only_weight():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 3))
    b = t(rng.standard_normal(3), True)
    assert gradcheck(lambda xx, bb: batch_norm(xx, None, None, None, bb, training=True),
                     [t(x, True), b])
    w = t(rng.standard_normal(3), True)
    assert gradcheck(lambda xx, ww: batch_norm(xx, None, None, ww, None, training=True),
                     [t(x, True), w])


def test_batch_norm_float32_with_float32_buffers():
    x = Tensor(np.random.default_rng(7).standard_normal((4, 3, 2, 2)).astype(np.float32))
    rm, rv = Tensor(np.zeros(3, np.float32)), Tensor(np.ones(3, np.float32))
    assert batch_norm(x, rm, rv, training=True).dtype == np.float32
    assert batch_norm(x, rm, rv, training=False).dtype == np.float32
    assert rm.dtype == np.float32 and rv.dtype == np.float32


def test_batch_norm_errors():
    x = t(np.ones((4, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\).*\(4,\)"):
        batch_norm(x, t(np.zeros(4)), t(np.ones(3)))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        batch_norm(x, None, None, t(np.ones(2)), training=True)
    with pytest.raises(ValueError, match="eval mode"):
        batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match="both running_mean and running_var"):
        batch_norm(x, t(np.zeros(3)), None, training=True)
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 3\)"):
        batch_norm(t(np.ones((1, 3))), None, None, training=True)
    with pytest.raises(ValueError, match=r"\(N, C\).*\(5,\)"):
        batch_norm(t(np.ones(5)), None, None, training=True)


class _NotNumPy:
    """numpy under another name: makes batch_norm take its array-expression
    path (the one CuPy arrays take) on NumPy arrays."""
    def __getattr__(self, name):
        return getattr(np, name)


@SETTINGS
@given(shape=shapes, affine=st.booleans(), training=st.booleans(), seed=st.integers(0, 2**16))
def test_batch_norm_cpu_kernels_equal_the_array_expressions(shape, affine, training, seed):
    """The Numba kernels (NumPy arrays) and the array expressions (CuPy's path)
    give the same outputs and gradients."""
    from minidl.ops import layers
    rng = np.random.default_rng(seed)
    c = shape[1]
    x, gy = rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape)
    w, b = (rng.standard_normal(c), rng.standard_normal(c)) if affine else (None, None)

    def run():
        leaves = [t(a, True) for a in (x, w, b) if a is not None]
        rm, rv = t(np.zeros(c)), t(np.ones(c) * 1.5)
        y = batch_norm(leaves[0], rm, rv, *(leaves[1:] if affine else (None, None)),
                       training=training, momentum=0.3, eps=1e-3)
        y.backward(gy)
        return [y.data, rm.data, rv.data] + [leaf.grad.data for leaf in leaves]

    kernels = run()
    real = layers.get_array_module
    layers.get_array_module = lambda a: _NotNumPy()
    try:
        expressions = run()
    finally:
        layers.get_array_module = real
    for got, want in zip(kernels, expressions):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
