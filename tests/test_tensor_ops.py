"""Every Tensor op: forward against NumPy, gradient against central differences.

Shapes are drawn by hypothesis, including broadcasting pairs and 0-d tensors.
Gradients are checked with minidl.gradcheck in float64, which is itself
tested against closed forms in test_gradcheck.py.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import minidl
from minidl import Tensor, gradcheck
from minidl.ops.loss import cross_entropy, log_softmax, softmax

SETTINGS = dict(max_examples=40, deadline=None)


def t64(a, requires_grad=True):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def arrays(shape, low=-2.0, high=2.0):
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, width=64))


# ---------------------------------------------------------------- binary ops
BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
}


@st.composite
def broadcast_pair(draw, positive_second=False):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                    max_side=3))
    a = draw(arrays(shapes.input_shapes[0]))
    low = 0.5 if positive_second else -2.0
    b = draw(arrays(shapes.input_shapes[1], low=low))
    if not positive_second:
        b = np.where(np.abs(b) < 0.3, 0.7, b)   # keep division well conditioned
    return a, b


@pytest.mark.parametrize("name", BINARY)
@settings(**SETTINGS)
@given(pair=broadcast_pair())
def test_binary_forward_and_grad(name, pair):
    op, ref = BINARY[name]
    a, b = pair
    out = op(t64(a), t64(b))
    np.testing.assert_allclose(out.numpy(), ref(a, b), rtol=1e-12)
    assert gradcheck(op, [t64(a), t64(b)])


@settings(**SETTINGS)
@given(pair=broadcast_pair(positive_second=True))
def test_pow_tensor_exponent(pair):
    b, a = pair                          # base a > 0 so d/db a**b = a**b log a exists
    a = np.abs(a) + 0.5
    out = t64(a) ** t64(b)
    np.testing.assert_allclose(out.numpy(), a ** b, rtol=1e-12)
    assert gradcheck(lambda x, y: x ** y, [t64(a), t64(b)])


@pytest.mark.parametrize("expo", [2, 3, 0.5, -1.5])
def test_pow_scalar_exponent(expo):
    a = np.random.default_rng(0).uniform(0.5, 2, (3, 4))
    np.testing.assert_allclose((t64(a) ** expo).numpy(), a ** expo)
    assert gradcheck(lambda x: x ** expo, [t64(a)])


def test_python_scalars_and_reflected_operands():
    a = np.arange(1, 7, dtype=np.float64).reshape(2, 3)
    x = t64(a)
    cases = [(2 + x, 2 + a), (x + 2, a + 2), (2 - x, 2 - a), (x - 2, a - 2),
             (3 * x, 3 * a), (x * 3, a * 3), (1 / x, 1 / a), (x / 4, a / 4),
             (2 ** x, 2 ** a), (-x, -a)]
    for got, want in cases:
        np.testing.assert_allclose(got.numpy(), want)
    assert gradcheck(lambda x: 1 / x + 2 ** x - 3 * x, [t64(a)])


def test_scalar_keeps_float32_dtype():
    x = minidl.ones(2, 2)
    assert (x * 2.5).dtype == np.float32
    assert (1.5 - x).dtype == np.float32
    assert (x ** 2).dtype == np.float32


def test_dtype_of_ndarray_kept():
    assert Tensor(np.zeros(3)).dtype == np.float64
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert minidl.tensor([1, 2]).dtype == np.int64


# ---------------------------------------------------------------- matmul
MATMUL_SHAPES = [((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((2, 3), (3, 4)),
                 ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)), ((5, 2, 3), (5, 3, 4)),
                 ((1, 2, 3), (4, 3, 2)), ((3,), (2, 3, 4)), ((2, 1, 2, 3), (4, 3, 2))]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul(sa, sb):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    np.testing.assert_allclose((t64(a) @ t64(b)).numpy(), a @ b, rtol=1e-12)
    assert gradcheck(lambda x, y: x @ y, [t64(a), t64(b)])


def test_matmul_reflected_ndarray():
    a = np.ones((2, 3))
    y = a @ t64(np.ones((3, 2)))
    assert isinstance(y, Tensor) and y.shape == (2, 2)


# ---------------------------------------------------------------- unary ops
UNARY = {
    "exp": (lambda x: x.exp(), np.exp, (-2, 2)),
    "log": (lambda x: x.log(), np.log, (0.2, 3)),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, (0.2, 3)),
    "tanh": (lambda x: x.tanh(), np.tanh, (-3, 3)),
    "sigmoid": (lambda x: x.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), (-5, 5)),
    "relu": (lambda x: x.relu(), lambda a: np.maximum(a, 0), (-2, 2)),
    "abs": (lambda x: x.abs(), np.abs, (-2, 2)),
    "neg": (lambda x: -x, np.negative, (-2, 2)),
}


@pytest.mark.parametrize("name", UNARY)
@settings(**SETTINGS)
@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4), data=st.data())
def test_unary(name, shape, data):
    op, ref, (low, high) = UNARY[name]
    a = data.draw(arrays(shape, low, high))
    if name in ("relu", "abs"):          # keep away from the kink at 0
        a = np.where(np.abs(a) < 1e-3, 0.5, a)
    np.testing.assert_allclose(op(t64(a)).numpy(), ref(a), rtol=1e-12, atol=1e-15)
    assert gradcheck(op, [t64(a)])


@settings(**SETTINGS)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=5), data=st.data(),
       dtype=st.sampled_from([np.float32, np.float64]), transposed=st.booleans())
def test_relu_sweep_against_the_formula(shape, data, dtype, transposed):
    """The CPU's one-sweep ReLU (relu_forward/relu_backward): y = max(x, 0)
    with NaN kept, dx = gy where x > 0; with NaN, +-inf and zeros drawn, on
    non-contiguous inputs and gradients too."""
    values = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -2.5, 1e-30, -1e-30])
    a = data.draw(hnp.arrays(dtype, shape, elements=values | st.floats(-3, 3, width=32)))
    g = data.draw(hnp.arrays(dtype, shape, elements=st.floats(-3, 3, width=32)))
    if transposed:
        a, g = a.T, g.T                                   # non-contiguous views
    x = Tensor(a, requires_grad=True)
    y = x.relu()
    assert y.dtype == dtype
    np.testing.assert_array_equal(y.numpy(), np.maximum(a, 0))   # NaN where a is NaN
    y.backward(g)
    np.testing.assert_array_equal(x.grad.numpy(), np.where(a > 0, g, 0))


def test_relu_of_integers_keeps_the_array_path():
    x = Tensor(np.array([[-2, 0, 3]]))
    np.testing.assert_array_equal(x.relu().numpy(), [[0, 0, 3]])


def test_sigmoid_extremes_finite():
    y = Tensor(np.array([-1000.0, 0.0, 1000.0], dtype=np.float32)).sigmoid().numpy()
    np.testing.assert_allclose(y, [0.0, 0.5, 1.0])


# ---------------------------------------------------------------- reductions
@st.composite
def array_and_axis(draw, min_dims=0):
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=3, max_side=4))
    a = draw(arrays(shape))
    axis = draw(st.none() | st.integers(-len(shape), len(shape) - 1)) if shape else None
    return a, axis, draw(st.booleans())


@pytest.mark.parametrize("name", ["sum", "mean"])
@settings(**SETTINGS)
@given(case=array_and_axis())
def test_sum_mean(name, case):
    a, axis, keep = case
    got = getattr(t64(a), name)(axis=axis, keepdims=keep)
    np.testing.assert_allclose(got.numpy(), getattr(a, name)(axis=axis, keepdims=keep),
                               rtol=1e-12)
    assert gradcheck(lambda x: getattr(x, name)(axis=axis, keepdims=keep), [t64(a)])


@settings(**SETTINGS)
@given(case=array_and_axis(min_dims=1))
def test_max_min_tie_free(case):
    a, axis, keep = case
    a = np.random.default_rng(0).permutation(a.size).reshape(a.shape) * 0.1  # tie-free
    for name in ("max", "min"):
        got = getattr(t64(a), name)(axis=axis, keepdims=keep)
        np.testing.assert_allclose(got.numpy(), getattr(a, name)(axis=axis, keepdims=keep))
        assert gradcheck(lambda x: getattr(x, name)(axis=axis, keepdims=keep), [t64(a)])


def test_max_splits_gradient_between_ties():
    x = t64([1.0, 3.0, 3.0])
    x.max().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0, 0.5, 0.5])


# ---------------------------------------------------------------- shape ops
def test_reshape_view_flatten():
    a = np.arange(24.0).reshape(2, 3, 4)
    x = t64(a)
    np.testing.assert_array_equal(x.reshape(4, 6).numpy(), a.reshape(4, 6))
    np.testing.assert_array_equal(x.view((6, -1)).numpy(), a.reshape(6, -1))
    assert x.flatten().shape == (24,)
    assert x.flatten(1).shape == (2, 12)
    assert x.flatten(0, 1).shape == (6, 4)
    assert x.unsqueeze(1).shape == (2, 1, 3, 4) and x.unsqueeze(-1).shape == (2, 3, 4, 1)
    assert x.unsqueeze(0).squeeze(0).shape == (2, 3, 4)
    assert gradcheck(lambda x: x.reshape(4, 6)[1:3] * 2, [x])
    assert gradcheck(lambda x: x.flatten(1), [x])


def test_transpose_is_pytorch_swap():
    a = np.arange(24.0).reshape(2, 3, 4)
    x = t64(a)
    np.testing.assert_array_equal(x.transpose(0, 2).numpy(), a.swapaxes(0, 2))
    np.testing.assert_array_equal(x.transpose(-1, 1).numpy(), a.swapaxes(-1, 1))
    np.testing.assert_array_equal(x.permute(2, 0, 1).numpy(), a.transpose(2, 0, 1))
    np.testing.assert_array_equal(x.T.numpy(), a.T)
    assert gradcheck(lambda x: x.permute(2, 0, 1) * t64(np.arange(24.0).reshape(4, 2, 3),
                                                        False), [x])
    assert gradcheck(lambda x: x.transpose(0, 1), [x])


INDEX_CASES = [
    (slice(1, 3),), (0,), (-1, slice(None, None, 2)), (Ellipsis, 1), (None, 1),
    (np.array([0, 2, 0, 0]),), (slice(None), np.array([1, 1, 3])),
    (np.array([0, 1]), np.array([3, 3])), (np.array([[0], [1]]), np.array([1, 2])),
]


@pytest.mark.parametrize("key", INDEX_CASES, ids=repr)
def test_getitem(key):
    a = np.random.default_rng(2).standard_normal((3, 4, 2))
    np.testing.assert_array_equal(t64(a)[key].numpy(), a[key])
    assert gradcheck(lambda x: x[key], [t64(a)])


def test_getitem_repeated_index_accumulates():
    x = t64([1.0, 2.0, 3.0])
    x[np.array([0, 0, 2, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3, 0, 1])


def test_getitem_boolean_mask_and_tensor_index():
    a = np.array([[1.0, -2.0], [-3.0, 4.0]])
    x = t64(a)
    np.testing.assert_array_equal(x[a > 0].numpy(), [1.0, 4.0])
    np.testing.assert_array_equal(x[x > 0].numpy(), [1.0, 4.0])
    x[x > 0].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1, 0], [0, 1]])
    idx = minidl.tensor([1, 1])
    np.testing.assert_array_equal(t64(a)[idx].numpy(), a[[1, 1]])


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_and_stack(dim):
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    np.testing.assert_array_equal(minidl.cat([t64(a), t64(b)], dim).numpy(),
                                  np.concatenate([a, b], dim))
    np.testing.assert_array_equal(minidl.stack([t64(a), t64(b)], dim).numpy(),
                                  np.stack([a, b], dim))
    assert gradcheck(lambda x, y: minidl.cat([x, y, x], dim), [t64(a), t64(b)])
    assert gradcheck(lambda x, y: minidl.stack([x, y], dim), [t64(a), t64(b)])


def test_cat_unequal_sizes_along_dim():
    a, b = t64(np.ones((2, 3))), t64(np.ones((2, 5)))
    assert minidl.cat([a, b], 1).shape == (2, 8)
    assert gradcheck(lambda x, y: minidl.cat([x, y], 1), [a, b])


# ---------------------------------------------------------------- softmax family
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_and_log_softmax(dim):
    a = np.random.default_rng(4).standard_normal((3, 5))
    e = np.exp(a - a.max(dim, keepdims=True))
    ref = e / e.sum(dim, keepdims=True)
    np.testing.assert_allclose(softmax(t64(a), dim).numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(log_softmax(t64(a), dim).numpy(), np.log(ref), rtol=1e-12)
    assert gradcheck(lambda x: softmax(x, dim), [t64(a)])
    assert gradcheck(lambda x: log_softmax(x, dim), [t64(a)])


def test_cross_entropy_matches_closed_form_and_grad():
    rng = np.random.default_rng(5)
    logits, target = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ref = -logp[np.arange(6), target].mean()
    assert abs(cross_entropy(t64(logits), target).item() - ref) < 1e-12
    assert gradcheck(lambda x: cross_entropy(x, target), [t64(logits)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_stable_for_huge_logits(dtype):
    logits = Tensor(np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, 1000.0]], dtype),
                    requires_grad=True)
    loss = cross_entropy(logits, np.array([0, 1]))
    assert np.isfinite(loss.item()) and abs(loss.item() - 1000.0) < 1e-3
    loss.backward()
    assert np.all(np.isfinite(logits.grad.numpy()))
    assert np.all(np.isfinite(softmax(logits, 1).numpy()))
    assert np.all(np.isfinite(log_softmax(logits, 1).numpy()))
