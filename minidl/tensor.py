"""Tensor, Function and the reverse-mode autograd engine.

The whole idea in three pieces:

* a ``Tensor`` wraps an ndarray (NumPy or CuPy) and, when it was produced by
  an operation that needs gradients, remembers that operation as ``creator``;
* a ``Function`` is one operation: ``forward`` maps input arrays to output
  arrays and saves what ``backward`` will need; ``backward`` maps the
  gradient of the outputs to the gradient of the inputs (chain rule);
* ``Tensor.backward()`` visits the recorded functions from the output back to
  the leaves, in reverse topological order, summing gradients on the way.

Forward and backward work on raw ndarrays (not Tensors), so the engine
computes first derivatives only; that is all training and gradcheck need.

Gradients accumulate: calling ``backward`` twice adds into ``.grad`` of the
leaves, as in PyTorch. Optimizers and ``Module.zero_grad`` clear them.
"""
import contextlib
import heapq
import itertools

import numpy as np

from . import backend


# ----------------------------------------------------------------------------
# grad mode
# ----------------------------------------------------------------------------
class _GradMode:
    enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside this block no graph is recorded (inference, optimizer steps)."""
    previous = _GradMode.enabled
    _GradMode.enabled = False
    try:
        yield
    finally:
        _GradMode.enabled = previous


@contextlib.contextmanager
def enable_grad():
    """Turn graph recording back on inside a ``no_grad`` block."""
    previous = _GradMode.enabled
    _GradMode.enabled = True
    try:
        yield
    finally:
        _GradMode.enabled = previous


def is_grad_enabled():
    return _GradMode.enabled


def manual_seed(seed):
    """Seed the generator behind ``randn``, ``rand``, initialisers and dropout."""
    global _rng
    _rng = np.random.default_rng(seed)


_rng = np.random.default_rng()


def default_rng():
    """The NumPy Generator that minidl draws every random number from."""
    return _rng


# ----------------------------------------------------------------------------
# Function: one differentiable operation
# ----------------------------------------------------------------------------
class Function:
    """Base class of every operation.

    Subclasses define ``forward(*arrays) -> array or tuple of arrays`` and
    ``backward(*grad_outputs) -> grad or tuple of grads`` (``None`` for an
    input that needs no gradient). Constructor arguments hold the op's
    non-tensor settings (axis, stride...). ``forward`` may store arrays on
    ``self`` for ``backward``; they are released once backward has run.
    """

    def __call__(self, *inputs):
        tensors = [as_tensor(x, like=inputs) for x in inputs]
        _check_same_device(type(self).__name__, tensors)
        arrays = [t.data for t in tensors]
        outputs = self.forward(*arrays)
        single = not isinstance(outputs, tuple)
        if single:
            outputs = (outputs,)
        needs_grad = _GradMode.enabled and any(t.requires_grad for t in tensors)
        results = tuple(Tensor(y, requires_grad=needs_grad) for y in outputs)
        if needs_grad:
            self.inputs = tensors
            self.needs_input_grad = tuple(t.requires_grad for t in tensors)
            self.generation = max(t._generation for t in tensors)
            self.output_shapes = tuple(y.shape for y in outputs)
            self.output_ids = tuple(id(r) for r in results)
            for r in results:
                r.creator = self
                r._generation = self.generation + 1
        return results[0] if single else results

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, *gys):
        raise NotImplementedError


def _check_same_device(op_name, tensors):
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        described = ", ".join(f"{t.device} {tuple(t.shape)}" for t in tensors)
        raise RuntimeError(
            f"{op_name}: all inputs must be on the same device, got tensors on "
            f"cpu and cuda ({described}); move them with .to(device)")


# ----------------------------------------------------------------------------
# the backward engine
# ----------------------------------------------------------------------------
def run_backward(root, grad, retain_graph=False):
    """Propagate ``grad`` (d loss / d root) to every leaf that requires grad.

    Functions are visited in decreasing ``generation`` (the length of the
    longest path from a leaf): every consumer of a tensor has a larger
    generation than its producer, so a function runs only after all the
    gradient flowing into its outputs has been summed. A heap keeps this
    iterative: a chain of 100,000 ops needs no recursion.
    """
    grads = {id(root): grad}           # id(tensor) -> summed gradient array
    counter = itertools.count()         # tie-breaker for the heap
    heap, seen = [], set()

    def push(fn):
        if fn is not None and id(fn) not in seen:
            seen.add(id(fn))
            heapq.heappush(heap, (-fn.generation, next(counter), fn))

    if root.creator is None:
        _accumulate_leaf(root, grad)
        return
    push(root.creator)
    while heap:
        _, _, fn = heapq.heappop(heap)
        if getattr(fn, "released", False):
            raise RuntimeError(
                "Trying to backward through the graph a second time: its saved "
                "buffers were freed by the first backward(). Pass "
                "retain_graph=True to the first call to keep them.")
        gys = [grads.pop(oid, None) for oid in fn.output_ids]
        if all(g is None for g in gys):
            continue
        gys = _fill_missing(fn, gys)
        gxs = fn.backward(*gys)
        if not isinstance(gxs, tuple):
            gxs = (gxs,)
        if len(gxs) != len(fn.inputs):
            raise RuntimeError(f"{type(fn).__name__}.backward returned {len(gxs)} "
                               f"gradients for {len(fn.inputs)} inputs")
        for x, gx, needed in zip(fn.inputs, gxs, fn.needs_input_grad):
            if gx is None or not needed:
                continue
            if gx.shape != x.shape:
                raise RuntimeError(f"{type(fn).__name__}.backward gave a gradient of "
                                   f"shape {gx.shape} for an input of shape {x.shape}")
            if x.creator is None:
                _accumulate_leaf(x, gx)
            else:
                k = id(x)
                grads[k] = gx if k not in grads else grads[k] + gx
                push(x.creator)
        if not retain_graph:
            _release(fn)


def _fill_missing(fn, gys):
    """Outputs that received no gradient get zeros (e.g. an unused max index)."""
    if all(g is not None for g in gys):
        return gys
    shapes = getattr(fn, "output_shapes", None)
    if shapes is None:
        raise RuntimeError(f"{type(fn).__name__}: some outputs got no gradient")
    ref = next(g for g in gys if g is not None)
    xp = backend.get_array_module(ref)
    return [g if g is not None else xp.zeros(s, dtype=ref.dtype)
            for g, s in zip(gys, shapes)]


def _accumulate_leaf(t, g):
    if g.dtype != t.data.dtype:
        g = g.astype(t.data.dtype)
    if t.grad is None:
        t.grad = Tensor(g.copy() if g is t.data else g)
    else:
        t.grad = Tensor(t.grad.data + g)


def _release(fn):
    """Drop everything the function saved, and its links into the graph."""
    generation = fn.generation
    fn.__dict__.clear()
    fn.generation, fn.released = generation, True


# ----------------------------------------------------------------------------
# Tensor
# ----------------------------------------------------------------------------
class Tensor:
    """An n-dimensional array with a gradient.

    ``data`` is a NumPy or CuPy ndarray. Python data (lists, scalars) become
    float32; an ndarray keeps its dtype (float64 stays float64).
    """

    __array_priority__ = 1000   # so ndarray * Tensor calls Tensor.__rmul__

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        if not (isinstance(data, np.ndarray) or backend.is_cupy_array(data)):
            data = _to_array(data)
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(f"only floating point tensors can require gradients, "
                            f"got dtype {data.dtype}")
        self.data = data
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.creator = None
        self._generation = 0

    # --- properties ---------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)     # number of elements, as NumPy
    device = property(lambda self: backend.device_of(self.data))
    is_leaf = property(lambda self: self.creator is None)

    def numel(self):
        """Number of elements (PyTorch's name; ``.size`` is NumPy's)."""
        return self.data.size

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = np.array2string(backend.as_numpy(self.data), prefix="tensor(")
        extra = "" if self.device == "cpu" else ", device='cuda'"
        extra += f", dtype={self.dtype}" if self.dtype != np.float32 else ""
        extra += ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({body}{extra})"

    # --- autograd ------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Compute d self / d leaf for every leaf that requires grad.

        ``grad`` is d loss / d self; it may be omitted only for a scalar
        (one-element) tensor, where it is 1. Gradients add into ``.grad``.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() called on a tensor that does not require "
                               "grad (no input requires grad, or made under no_grad)")
        xp = backend.get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a grad argument needs a scalar "
                                   f"output, got shape {self.shape}; pass grad= of that shape")
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward(): grad has shape {grad.shape}, "
                                 f"the tensor has shape {self.shape}")
        run_backward(self, grad, retain_graph=retain_graph)

    def detach(self):
        """The same data, cut from the graph (no gradient flows through)."""
        return Tensor(self.data)

    def requires_grad_(self, flag=True):
        if flag and self.dtype.kind != "f":
            raise TypeError(f"only floating point tensors can require gradients, got {self.dtype}")
        self.requires_grad = bool(flag)
        return self

    # --- conversion ------------------------------------------------------------
    def numpy(self):
        """A NumPy array (copied from the GPU if the tensor lives there)."""
        return backend.as_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a one-element tensor, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def to(self, device):
        """This tensor on ``device``; a copy is a differentiable op."""
        device = backend.check_device(device)
        if device == self.device:
            return self
        from .ops.math import ToDevice
        return ToDevice(device)(self)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def astype(self, dtype):
        from .ops.math import Cast
        if self.dtype == np.dtype(dtype):
            return self
        return Cast(dtype)(self)

    def float(self):
        return self.astype(np.float32)

    def double(self):
        return self.astype(np.float64)


def _to_array(data):
    """Python data -> ndarray, with PyTorch's defaults: floats become float32,
    ints int64, bools bool; a NumPy scalar keeps its dtype."""
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"Tensor data must be numeric, got {type(data).__name__} "
                        f"with dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not isinstance(data, np.generic):
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "iu" and not isinstance(data, np.generic):
        arr = arr.astype(np.int64)
    return arr


def as_tensor(x, like=()):
    """Wrap ``x`` as a Tensor; a Python scalar takes the dtype of its partner."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray) or backend.is_cupy_array(x):
        return Tensor(x)
    if isinstance(x, (int, float, bool, np.number)):
        ref = next((t for t in like if isinstance(t, Tensor)), None)
        if ref is not None:
            xp = backend.get_array_module(ref.data)
            dtype = ref.dtype if ref.dtype.kind == "f" else np.result_type(ref.dtype, type(x))
            return Tensor(xp.asarray(x, dtype=dtype))
    return Tensor(x)


def tensor(data, requires_grad=False, dtype=None, device="cpu"):
    """Make a Tensor from data (list, scalar, ndarray); like ``torch.tensor``."""
    t = Tensor(data.data if isinstance(data, Tensor) else data)
    arr = t.data if dtype is None else t.data.astype(dtype)
    return Tensor(backend.to_device(arr, device)).requires_grad_(requires_grad)


# the operators and methods of Tensor are defined next to their Functions
from .ops import math as _math  # noqa: E402  (needs Tensor and Function above)

_math.install_tensor_methods(Tensor)
