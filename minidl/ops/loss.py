"""softmax, log_softmax and cross-entropy, stable for logits of +-1000.

Stability comes from shifting by the maximum before exponentiating:
log_softmax(x)_i = (x_i - m) - log(sum_j exp(x_j - m)),  m = max_j x_j,
so exp never sees an argument above 0.
"""
import numpy as np

from ..backend import get_array_module
from ..tensor import Function, Tensor


def _log_softmax(x, axis):
    xp = get_array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class Softmax(Function):
    """y_i = exp(x_i) / sum_j exp(x_j);  dx = y * (gy - sum(gy * y))."""
    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        xp = get_array_module(x)
        self.y = xp.exp(_log_softmax(x, self.axis))
        return self.y

    def backward(self, gy):
        y = self.y
        return y * (gy - (gy * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """y = log softmax(x);  dx = gy - softmax(x) * sum(gy)."""
    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        self.y = _log_softmax(x, self.axis)
        return self.y

    def backward(self, gy):
        xp = get_array_module(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=self.axis, keepdims=True)


class CrossEntropy(Function):
    """loss = -mean_n log softmax(logits)_n[target_n]   (logits: (N, C)).

    d loss / d logits = (softmax(logits) - onehot(target)) / N."""
    def forward(self, logits, target):
        xp = get_array_module(logits)
        n = logits.shape[0]
        self.logp = _log_softmax(logits, 1)
        self.target = target
        picked = self.logp[xp.arange(n), target]
        return (-picked.sum() / n).astype(logits.dtype)

    def backward(self, gy):
        xp = get_array_module(gy)
        n = self.logp.shape[0]
        g = xp.exp(self.logp)
        g[xp.arange(n), self.target] -= 1
        return g * (gy / n), None


def softmax(x, dim=-1):
    return Softmax(dim)(x)


def log_softmax(x, dim=-1):
    return LogSoftmax(dim)(x)


def cross_entropy(logits, target):
    """Mean cross-entropy of (N, C) logits against integer class targets (N,)."""
    if not isinstance(logits, Tensor):
        raise TypeError(f"cross_entropy: logits must be a Tensor, got {type(logits).__name__}")
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices, "
                        f"got dtype {t.dtype}")
    if logits.ndim != 2 or t.ndim != 1 or t.shape[0] != logits.shape[0]:
        raise ValueError(f"cross_entropy: expected logits (N, C) and target (N,), got "
                         f"logits {tuple(logits.shape)} and target {tuple(t.shape)}")
    if t.size and (int(t.min()) < 0 or int(t.max()) >= logits.shape[1]):
        raise ValueError(f"cross_entropy: target values must lie in [0, {logits.shape[1]}), "
                         f"got min {int(t.min())}, max {int(t.max())}")
    return CrossEntropy()(logits, Tensor(t))
