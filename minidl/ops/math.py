"""Elementwise arithmetic, matmul, reductions and shape operations.

Each op is a Function with ``forward`` and ``backward`` side by side. Arrays
are NumPy or CuPy; ``xp = get_array_module(x)`` picks the module, so one code
path serves both.

Broadcasting: a binary op broadcasts its operands as NumPy does; its
backward sums the output gradient back to each operand's shape
(``sum_to``), since a broadcast input was used once per copy.
"""
import numpy as np

from ..backend import get_array_module, to_device
from ..jit import njit
from ..tensor import Function, Tensor, as_tensor
from . import parallel


def sum_to(g, shape):
    """Sum ``g`` down to ``shape`` (the inverse of broadcasting ``shape`` to g)."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _broadcast_shape(op, a, b):
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} "
                         f"cannot be broadcast together") from None


# ----------------------------------------------------------------------------
# binary elementwise
# ----------------------------------------------------------------------------
class Add(Function):
    """y = a + b;  da = gy, db = gy (summed to each shape)."""
    def forward(self, a, b):
        _broadcast_shape("add", a, b)
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, gy):
        return sum_to(gy, self.shapes[0]), sum_to(gy, self.shapes[1])


class Sub(Function):
    """y = a - b;  da = gy, db = -gy."""
    def forward(self, a, b):
        _broadcast_shape("sub", a, b)
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, gy):
        return sum_to(gy, self.shapes[0]), sum_to(-gy, self.shapes[1])


class Mul(Function):
    """y = a * b;  da = gy * b, db = gy * a."""
    def forward(self, a, b):
        _broadcast_shape("mul", a, b)
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        a, b = self.a, self.b
        return sum_to(gy * b, a.shape), sum_to(gy * a, b.shape)


class Div(Function):
    """y = a / b;  da = gy / b, db = -gy * a / b^2."""
    def forward(self, a, b):
        _broadcast_shape("div", a, b)
        self.a, self.b = a, b
        return a / b

    def backward(self, gy):
        a, b = self.a, self.b
        ga = gy / b
        return sum_to(ga, a.shape), sum_to(-ga * a / b, b.shape)


class Pow(Function):
    """y = a ** b;  da = gy * b * a^(b-1), db = gy * y * log(a).

    db is only computed when b needs a gradient (log(a) is undefined for
    a <= 0, where a constant exponent is the common case)."""
    def forward(self, a, b):
        _broadcast_shape("pow", a, b)
        self.a, self.b = a, b
        self.y = a ** b
        return self.y

    def backward(self, gy):
        a, b, y = self.a, self.b, self.y
        xp = get_array_module(a)
        ga = sum_to(gy * b * a ** (b - 1), a.shape) if self.needs_input_grad[0] else None
        gb = None
        if self.needs_input_grad[1]:
            gb = sum_to(gy * y * xp.log(xp.where(a > 0, a, 1)), b.shape)
        return ga, gb


class MatMul(Function):
    """y = a @ b with NumPy's rules (1-D operands, broadcast batch dims).

    da = gy @ b^T, db = a^T @ gy, computed on 2-D views of 1-D operands and
    summed back over broadcast batch dimensions."""
    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: operands must be at least 1-D, got shapes "
                             f"{tuple(a.shape)} and {tuple(b.shape)}")
        k_a = a.shape[-1]
        k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if k_a != k_b:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} are "
                             f"not aligned ({k_a} != {k_b})")
        self.a, self.b = a, b
        return parallel.matmul(a, b)              # a @ b (ops/parallel.py: why)

    def backward(self, gy):
        a, b = self.a, self.b
        a2 = a[None, :] if a.ndim == 1 else a             # (..., n, k)
        b2 = b[:, None] if b.ndim == 1 else b             # (..., k, m)
        batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
        gy2 = gy.reshape(batch + (a2.shape[-2], b2.shape[-1]))   # (..., n, m)
        ga = sum_to(parallel.matmul(gy2, b2.swapaxes(-1, -2)), a2.shape).reshape(a.shape)
        gb = sum_to(parallel.matmul(a2.swapaxes(-1, -2), gy2), b2.shape).reshape(b.shape)
        return ga, gb


# ----------------------------------------------------------------------------
# unary elementwise
# ----------------------------------------------------------------------------
class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Exp(Function):
    """y = e^x;  dx = gy * y."""
    def forward(self, x):
        self.y = get_array_module(x).exp(x)
        return self.y

    def backward(self, gy):
        return gy * self.y


class Log(Function):
    """y = ln x;  dx = gy / x."""
    def forward(self, x):
        self.x = x
        return get_array_module(x).log(x)

    def backward(self, gy):
        return gy / self.x


class Sqrt(Function):
    """y = sqrt(x);  dx = gy / (2 y)."""
    def forward(self, x):
        self.y = get_array_module(x).sqrt(x)
        return self.y

    def backward(self, gy):
        return gy / (2 * self.y)


class Tanh(Function):
    """y = tanh x;  dx = gy * (1 - y^2)."""
    def forward(self, x):
        self.y = get_array_module(x).tanh(x)
        return self.y

    def backward(self, gy):
        return gy * (1 - self.y * self.y)


class Sigmoid(Function):
    """y = 1 / (1 + e^-x), computed as 0.5 tanh(x/2) + 0.5 (no overflow);
    dx = gy * y (1 - y)."""
    def forward(self, x):
        xp = get_array_module(x)
        self.y = xp.tanh(x * 0.5) * 0.5 + 0.5
        return self.y.astype(x.dtype, copy=False)

    def backward(self, gy):
        return gy * self.y * (1 - self.y)


@njit
def relu_forward(x, y):
    """y = max(x, 0) over flat arrays, one sweep; a NaN stays NaN."""
    for i in range(x.size):
        v = x[i]
        y[i] = 0 if v <= 0 else v


@njit
def relu_backward(gy, y, gx):
    """gx = gy where y > 0, else 0, over flat arrays (y > 0 exactly where x > 0)."""
    for i in range(y.size):
        gx[i] = gy[i] if y[i] > 0 else 0


class ReLU(Function):
    """y = max(x, 0);  dx = gy where x > 0, else 0.

    On the CPU (float32/float64) one Numba sweep each way, saving y, which
    the graph holds anyway, instead of a bool mask: on 3.2 M float32 (one
    thread) forward 1.60 -> 0.49 ms, backward 1.27 -> 0.93 ms, against the
    two NumPy sweeps and the mask that the array expressions, kept for CuPy
    and the other dtypes, take."""
    def forward(self, x):
        xp = get_array_module(x)
        self.swept = xp is np and x.dtype in (np.float32, np.float64)
        if self.swept:                                    # (ascontiguousarray makes 0-d 1-d)
            self.y = np.empty(x.shape, dtype=x.dtype)
            relu_forward(np.ascontiguousarray(x).reshape(-1), self.y.reshape(-1))
            return self.y
        self.positive = x > 0
        return xp.maximum(x, 0, dtype=x.dtype)

    def backward(self, gy):
        if not self.swept:
            return gy * self.positive
        gx = np.empty_like(self.y)
        relu_backward(np.ascontiguousarray(gy, dtype=self.y.dtype).reshape(-1), self.y.reshape(-1),
                      gx.reshape(-1))
        return gx


class Abs(Function):
    """y = |x|;  dx = gy * sign(x) (0 at x = 0)."""
    def forward(self, x):
        xp = get_array_module(x)
        self.sign = xp.sign(x)
        return xp.abs(x)

    def backward(self, gy):
        return gy * self.sign


class Cast(Function):
    """Change the dtype; the gradient is cast back."""
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        self.in_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.astype(self.in_dtype)


class ToDevice(Function):
    """Copy to another device; the gradient is copied back."""
    def __init__(self, device):
        self.device = device

    def forward(self, x):
        self.in_device = "cuda" if self.device == "cpu" else "cpu"
        return to_device(x, self.device)

    def backward(self, gy):
        return to_device(gy, self.in_device)


# ----------------------------------------------------------------------------
# reductions
# ----------------------------------------------------------------------------
def _normalize_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor of {ndim} dims")
        out.append(a % ndim if ndim else 0)
    return tuple(out)


def _expand_reduced(g, in_shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input."""
    if keepdims or g.ndim == len(in_shape):
        return g
    shape = [1 if i in axes else n for i, n in enumerate(in_shape)]
    return g.reshape(shape)


class Sum(Function):
    """y = sum over axes;  dx = gy broadcast back to x's shape."""
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.in_shape = x.shape
        self.axes = _normalize_axis(self.axis, x.ndim)
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        xp = get_array_module(gy)
        g = _expand_reduced(gy, self.in_shape, self.axes, self.keepdims)
        return xp.broadcast_to(g, self.in_shape).copy()


class Mean(Sum):
    """y = sum over axes / count;  dx = gy / count broadcast back."""
    def forward(self, x):
        y = super().forward(x)
        self.count = max(1, int(np.prod([x.shape[a] for a in self.axes])))
        return (y / self.count).astype(x.dtype, copy=False)

    def backward(self, gy):
        return super().backward(gy / self.count)


class Max(Function):
    """y = max (or min) over axes. The gradient goes to the elements equal to
    the extreme value, split evenly between ties (as PyTorch's amax)."""
    def __init__(self, axis=None, keepdims=False, smallest=False):
        self.axis, self.keepdims, self.smallest = axis, keepdims, smallest

    def forward(self, x):
        if x.size == 0:
            raise ValueError(f"max: cannot reduce an empty tensor of shape {x.shape}")
        self.axes = _normalize_axis(self.axis, x.ndim)
        reduce = x.min if self.smallest else x.max
        y = reduce(axis=self.axes, keepdims=True)
        self.mask = x == y
        return y if self.keepdims else y.reshape(
            [n for i, n in enumerate(x.shape) if i not in self.axes])

    def backward(self, gy):
        g = _expand_reduced(gy, self.mask.shape, self.axes, self.keepdims)
        count = self.mask.sum(axis=self.axes, keepdims=True)
        return self.mask * (g / count)


# ----------------------------------------------------------------------------
# shape operations
# ----------------------------------------------------------------------------
class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} "
                             f"({x.size} elements) into {tuple(self.shape)}") from None

    def backward(self, gy):
        return gy.reshape(self.in_shape)


class Permute(Function):
    """Reorder the axes; the gradient is permuted back by the inverse order."""
    def __init__(self, axes):
        self.axes = tuple(axes)

    def forward(self, x):
        if sorted(a % max(x.ndim, 1) for a in self.axes) != list(range(x.ndim)):
            raise ValueError(f"permute: {self.axes} is not a permutation of the "
                             f"{x.ndim} axes of a tensor of shape {x.shape}")
        return x.transpose(self.axes)

    def backward(self, gy):
        inverse = np.argsort([a % gy.ndim for a in self.axes])
        return gy.transpose(tuple(inverse))


class GetItem(Function):
    """y = x[key] for slices, ints, None, Ellipsis, integer arrays and masks.

    The backward scatters gy into zeros with ``add.at``, so an index repeated
    in an integer array receives the sum of the gradients of all its copies."""
    def __init__(self, key):
        self.key = key

    def forward(self, x):
        self.in_shape, self.dtype = x.shape, x.dtype
        return x[self.key]

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = xp.zeros(self.in_shape, dtype=gy.dtype)
        if _is_basic_index(self.key):
            gx[self.key] = gy            # basic indexing never repeats an element
        elif xp is np:
            np.add.at(gx, self.key, gy)
        else:
            import cupyx
            cupyx.scatter_add(gx, self.key, gy)
        return gx


def _is_basic_index(key):
    key = key if isinstance(key, tuple) else (key,)
    return all(isinstance(k, (int, np.integer, slice)) or k is None or k is Ellipsis
               for k in key)


def _index_arrays(key, device):
    """Turn Tensors inside an index into arrays (on the indexed tensor's device)."""
    def conv(k):
        if isinstance(k, Tensor):
            return to_device(k.data, device)
        if isinstance(k, list):
            return to_device(np.asarray(k), device)
        return k
    return tuple(conv(k) for k in key) if isinstance(key, tuple) else conv(key)


class Concat(Function):
    """y = concatenation along ``axis``; the gradient is split back."""
    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        xp = get_array_module(*xs)
        ref = xs[0]
        ax = self.axis % ref.ndim
        for x in xs[1:]:
            if x.ndim != ref.ndim or any(x.shape[i] != ref.shape[i]
                                         for i in range(ref.ndim) if i != ax):
                raise ValueError(f"cat: shapes {tuple(ref.shape)} and {tuple(x.shape)} "
                                 f"differ outside dim {self.axis}")
        self.sizes = [x.shape[ax] for x in xs]
        self.ax = ax
        return xp.concatenate(xs, axis=ax)

    def backward(self, gy):
        xp = get_array_module(gy)
        bounds = np.cumsum(self.sizes)[:-1]
        return tuple(xp.split(gy, bounds, axis=self.ax))


# ----------------------------------------------------------------------------
# the public functions and the Tensor methods built on them
# ----------------------------------------------------------------------------
def cat(tensors, dim=0):
    """Join tensors along an existing dimension ``dim``."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: needs at least one tensor")
    return Concat(dim)(*tensors)


def stack(tensors, dim=0):
    """Join same-shaped tensors along a new dimension ``dim``."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: all tensors must have the same shape, got {sorted(shapes)}")
    d = dim % (tensors[0].ndim + 1)
    return cat([t.unsqueeze(d) for t in tensors], d)


def _shape_args(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) \
        else tuple(shape)


def _binary(cls, reflected=False):
    def op(self, other):
        other = as_tensor(other, like=(self,))
        return cls()(other, self) if reflected else cls()(self, other)
    return op


def _compare(ufunc):
    def op(self, other):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(ufunc(self.data, other))
    return op


def install_tensor_methods(T):
    """Attach operators and methods to the Tensor class (called once)."""
    T.__add__, T.__radd__ = _binary(Add), _binary(Add, True)
    T.__sub__, T.__rsub__ = _binary(Sub), _binary(Sub, True)
    T.__mul__, T.__rmul__ = _binary(Mul), _binary(Mul, True)
    T.__truediv__, T.__rtruediv__ = _binary(Div), _binary(Div, True)
    T.__pow__, T.__rpow__ = _binary(Pow), _binary(Pow, True)
    T.__matmul__, T.__rmatmul__ = _binary(MatMul), _binary(MatMul, True)
    T.__neg__ = lambda self: Neg()(self)
    T.__pos__ = lambda self: self
    T.__lt__, T.__le__ = _compare(lambda a, b: a < b), _compare(lambda a, b: a <= b)
    T.__gt__, T.__ge__ = _compare(lambda a, b: a > b), _compare(lambda a, b: a >= b)
    T.__eq__, T.__ne__ = _compare(lambda a, b: a == b), _compare(lambda a, b: a != b)
    T.__hash__ = object.__hash__
    T.__getitem__ = lambda self, key: GetItem(_index_arrays(key, self.device))(self)

    T.exp = lambda self: Exp()(self)
    T.log = lambda self: Log()(self)
    T.sqrt = lambda self: Sqrt()(self)
    T.tanh = lambda self: Tanh()(self)
    T.sigmoid = lambda self: Sigmoid()(self)
    T.relu = lambda self: ReLU()(self)
    T.abs = lambda self: Abs()(self)

    T.sum = lambda self, axis=None, keepdims=False: Sum(axis, keepdims)(self)
    T.mean = lambda self, axis=None, keepdims=False: Mean(axis, keepdims)(self)
    T.max = lambda self, axis=None, keepdims=False: Max(axis, keepdims)(self)
    T.min = lambda self, axis=None, keepdims=False: Max(axis, keepdims, smallest=True)(self)
    T.argmax = lambda self, axis=None: Tensor(self.data.argmax(axis=axis))

    T.reshape = lambda self, *shape: Reshape(_shape_args(shape))(self)
    T.view = T.reshape
    T.permute = lambda self, *axes: Permute(_shape_args(axes))(self)
    T.transpose = _transpose
    T.T = property(lambda self: Permute(tuple(reversed(range(self.ndim))))(self))
    T.flatten = _flatten
    T.unsqueeze = lambda self, dim: self.reshape(
        _insert(self.shape, dim % (self.ndim + 1), 1))
    T.squeeze = _squeeze


def _transpose(self, dim0=0, dim1=1):
    """Swap two axes (PyTorch's transpose, not NumPy's permutation)."""
    axes = list(range(self.ndim))
    axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
    return Permute(axes)(self)


def _flatten(self, start_dim=0, end_dim=-1):
    """Merge dims start_dim..end_dim into one."""
    if self.ndim == 0:
        return self.reshape(1)
    s, e = start_dim % self.ndim, end_dim % self.ndim
    shape = self.shape[:s] + (int(np.prod(self.shape[s:e + 1])),) + self.shape[e + 1:]
    return self.reshape(shape)


def _squeeze(self, dim=None):
    if dim is None:
        return self.reshape(tuple(n for n in self.shape if n != 1))
    dim = dim % self.ndim
    if self.shape[dim] != 1:
        return self
    return self.reshape(self.shape[:dim] + self.shape[dim + 1:])


def _insert(shape, i, n):
    return tuple(shape[:i]) + (n,) + tuple(shape[i:])
