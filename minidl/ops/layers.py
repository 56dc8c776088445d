"""The layer operations: linear (fully connected), dropout, batch normalization.

Each is ONE Function with its forward and its closed-form backward side by
side, written against ``xp`` (NumPy or CuPy); BatchNorm's four steps run as
Numba kernels on NumPy arrays (beside their array expressions, the CuPy
path). The public functions at the
bottom (``linear``, ``dropout``, ``batch_norm``) check their arguments and
are what ``minidl.nn.functional`` exports.
"""
import numbers

import numpy as np

from ..backend import device_of, get_array_module, to_device
from ..jit import njit, prange
from ..tensor import Function, Tensor, default_rng
from . import parallel


# ----------------------------------------------------------------------------
# linear
# ----------------------------------------------------------------------------
class Linear(Function):
    """y = x W^T + b.   x: (..., in), W: (out, in), b: (out,) -> y: (..., out).

    With x2 = x viewed as (M, in) and gy2 = gy viewed as (M, out), M the
    product of the leading dims:
        dx = gy W           (..., in)
        dW = gy2^T x2       (out, in)
        db = sum_M gy2      (out,)
    ``x @ W.T`` hands the transposed weight to BLAS without copying it; the
    products run through ops/parallel.py's matmul (its docstring says why).
    """
    def forward(self, x, weight, bias=None):
        x2 = x.reshape(-1, x.shape[-1])              # (M, in): a view if x is contiguous
        y = parallel.matmul(x2, weight.T)            # (M, out)
        if bias is not None:
            y += bias                                # in place: no temporary
        self.x2, self.weight, self.has_bias = x2, weight, bias is not None
        return y.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(self, gy):
        need = self.needs_input_grad
        w = self.weight
        gy2 = gy.reshape(-1, w.shape[0])             # (M, out)
        gx = parallel.matmul(gy2, w).reshape(gy.shape[:-1] + (w.shape[1],)) if need[0] else None
        gw = parallel.matmul(gy2.T, self.x2) if need[1] else None    # (out, in)
        if not self.has_bias:
            return gx, gw
        gb = gy2.sum(axis=0) if need[2] else None    # (out,)
        return gx, gw, gb


# ----------------------------------------------------------------------------
# dropout
# ----------------------------------------------------------------------------
class Dropout(Function):
    """Inverted dropout: y = x * m / (1 - p), m_i ~ Bernoulli(1 - p).

    Each element is zeroed with probability p and the survivors are scaled by
    1 / (1 - p), so E[y] = x and nothing needs rescaling at test time.
    dx = gy * m / (1 - p): the same mask, saved from the forward pass.

    The mask is drawn on the CPU from ``minidl.tensor.default_rng()`` and
    copied to the input's device, so ``manual_seed`` fixes it on both.
    """
    def __init__(self, p):
        self.p = p

    def forward(self, x):
        keep = default_rng().random(x.shape, dtype=np.float32) >= self.p   # bool, x.shape
        keep = to_device(keep, device_of(x))
        self.scaled_mask = keep.astype(x.dtype) * (1.0 / (1.0 - self.p))  # m / (1 - p)
        return x * self.scaled_mask

    def backward(self, gy):
        return gy * self.scaled_mask


# ----------------------------------------------------------------------------
# batch normalization
# ----------------------------------------------------------------------------
class BatchNorm(Function):
    """Batch normalization over every axis but the channel axis 1.

    x: (N, C) or (N, C, H, W) (any (N, C, ...)); gamma, beta, mean, var: (C,).
    With mu, var the statistics of a channel over its n = x.size / C values
    (the batch's in training, the running ones in eval) and s = (var+eps)^-1/2:

        xhat = (x - mu) s,          y = gamma xhat + beta.

    Backward, with g = dL/dxhat = gy gamma and sums over the n values:
        dgamma = sum gy xhat,       dbeta = sum gy,
        eval:  dx = g s             (mu and s are constants),
        train: dx = s (g - mean(g) - xhat mean(g xhat)).
    The training rule, because mu and var depend on x too:
        d mu / d x_i = 1/n,   d var / d x_i = 2 (x_i - mu) / n,
        d xhat_j / d x_i = s (delta_ij - 1/n) - (x_j - mu) s^3 (x_i - mu) / n
                         = s (delta_ij - 1/n - xhat_i xhat_j / n);
        dx_i = sum_j g_j d xhat_j / d x_i
             = s (g_i - mean_j g_j - xhat_i mean_j g_j xhat_j).

    In training the running statistics are updated in place, as PyTorch:
        running_mean = (1 - momentum) running_mean + momentum mu
        running_var  = (1 - momentum) running_var  + momentum var n / (n - 1)
    (the unbiased variance for the running estimate; the biased one normalizes).
    """
    def __init__(self, running_mean, running_var, training, momentum, eps,
                 has_weight, has_bias):
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps = training, momentum, eps
        self.has_weight, self.has_bias = has_weight, has_bias

    def forward(self, x, *affine):
        xp = get_array_module(x)
        weight = affine[0] if self.has_weight else None
        bias = affine[-1] if self.has_bias else None
        N, C = x.shape[:2]
        x3 = xp.ascontiguousarray(x).reshape(N, C, -1)     # (N, C, L), L = H*W (or 1)
        if self.training:
            mean, var = _statistics(x3)                    # (C,) each, var biased
            self._update_running(mean, var, x3.size // C)
        else:
            mean = self.running_mean.astype(x.dtype, copy=False)
            var = self.running_var.astype(x.dtype, copy=False)
        inv_std = (1 / xp.sqrt(var + self.eps)).astype(x.dtype, copy=False)   # s, (C,)
        y, xhat = _normalize(x3, mean, inv_std, weight, bias)              # (N, C, L) each
        self.xhat, self.inv_std, self.weight = xhat, inv_std, weight
        return y.reshape(x.shape)

    def _update_running(self, mean, var, n):
        if self.running_mean is None:
            return
        m = self.momentum
        self.running_mean *= 1 - m
        self.running_mean += m * mean
        self.running_var *= 1 - m
        self.running_var += m * var * (n / (n - 1))

    def backward(self, gy):
        xp = get_array_module(gy)
        xhat, need = self.xhat, self.needs_input_grad
        gy3 = xp.ascontiguousarray(gy).reshape(xhat.shape)                 # (N, C, L)
        sum_gy, sum_gy_xhat = _channel_sums(gy3, xhat)                      # (C,) each
        grads = [None]
        if need[0]:
            scale = self.inv_std if self.weight is None else self.inv_std * self.weight  # (C,)
            grads[0] = _input_grad(gy3, xhat, scale, sum_gy, sum_gy_xhat,
                                   self.training).reshape(gy.shape)
        if self.has_weight:
            grads.append(sum_gy_xhat if need[1] else None)                  # dgamma
        if self.has_bias:
            grads.append(sum_gy if need[-1] else None)                      # dbeta
        return tuple(grads)


# The four steps of BatchNorm on x seen as (N, C, L): NumPy arrays go to the
# Numba kernels below (one sweep per step, parallel over channels), CuPy
# arrays to the same formulas as array expressions. On NumPy arrays those
# expressions are a chain of temporaries over the whole activation: 26% of a
# ResNet-50 training step (batch 4, 2 threads, cProfile). The kernels, best
# of 15 interleaved runs: fwd+bwd of a 4x64x112x112 float32 batch 12.1 ->
# 5.4 ms; the ResNet-50 step 1,131 -> 1,067 ms (best of 6).
def _statistics(x3):
    """mean and biased variance (C,) of x3 (N, C, L) over N and L."""
    if get_array_module(x3) is np:
        mean, var = np.empty(x3.shape[1], x3.dtype), np.empty(x3.shape[1], x3.dtype)
        bn_statistics(x3, mean, var)
        return mean, var
    mean = x3.mean(axis=(0, 2))
    xc = x3 - mean[:, None]
    return mean, (xc * xc).mean(axis=(0, 2))


def _normalize(x3, mean, inv_std, weight, bias):
    """xhat = (x - mean) inv_std, y = weight xhat + bias (N, C, L) each."""
    xp = get_array_module(x3)
    if xp is np:
        C, dtype = x3.shape[1], x3.dtype
        y, xhat = np.empty_like(x3), np.empty_like(x3)
        bn_normalize(x3, mean, inv_std, np.ones(C, dtype) if weight is None else weight,
                     np.zeros(C, dtype) if bias is None else bias, y, xhat)
        return y, xhat
    xhat = (x3 - mean[:, None]) * inv_std[:, None]
    y = xhat if weight is None else xhat * weight[:, None]
    return (y if bias is None else y + bias[:, None]), xhat


def _channel_sums(gy3, xhat):
    """sum gy and sum gy xhat (C,) over N and L: dbeta and dgamma."""
    if get_array_module(gy3) is np:
        s, sx = np.empty(gy3.shape[1], gy3.dtype), np.empty(gy3.shape[1], gy3.dtype)
        bn_channel_sums(gy3, xhat, s, sx)
        return s, sx
    return gy3.sum(axis=(0, 2)), (gy3 * xhat).sum(axis=(0, 2))


def _input_grad(gy3, xhat, scale, sum_gy, sum_gy_xhat, training):
    """dx (N, C, L) = scale (gy - mean gy - xhat mean(gy xhat)) in training,
    scale gy in eval (scale = gamma s; the class docstring derives it)."""
    xp = get_array_module(gy3)
    if xp is np:
        gx = np.empty_like(gy3)
        bn_input_grad(gy3, xhat, scale, sum_gy, sum_gy_xhat, training, gx)
        return gx
    if not training:
        return gy3 * scale[:, None]
    n = gy3.size // gy3.shape[1]
    return scale[:, None] * (gy3 - sum_gy[:, None] / n - xhat * (sum_gy_xhat[:, None] / n))


# fastmath lets LLVM reassociate the sums, so that they vectorize (NumPy's
# own sums are pairwise and vectorized); the accumulators are float64.
@njit(parallel=True, fastmath=True)
def bn_statistics(x, mean, var):
    """mean[c], var[c] of x (N, C, L) over n and l, in two sweeps per channel."""
    N, C, L = x.shape
    for c in prange(C):
        total = 0.0
        for n in range(N):
            for i in range(L):
                total += x[n, c, i]
        mu = total / (N * L)
        squares = 0.0
        for n in range(N):
            for i in range(L):
                d = x[n, c, i] - mu
                squares += d * d
        mean[c], var[c] = mu, squares / (N * L)


@njit(parallel=True)
def bn_normalize(x, mean, inv_std, weight, bias, y, xhat):
    """xhat = (x - mean[c]) inv_std[c], y = weight[c] xhat + bias[c]; (N, C, L)."""
    N, C, L = x.shape
    for c in prange(C):
        mu, s, g, b = mean[c], inv_std[c], weight[c], bias[c]
        for n in range(N):
            for i in range(L):
                h = (x[n, c, i] - mu) * s
                xhat[n, c, i] = h
                y[n, c, i] = h * g + b


@njit(parallel=True, fastmath=True)
def bn_channel_sums(gy, xhat, sum_gy, sum_gy_xhat):
    """sum_gy[c] = sum gy[:, c], sum_gy_xhat[c] = sum gy[:, c] xhat[:, c]."""
    N, C, L = gy.shape
    for c in prange(C):
        s, sx = 0.0, 0.0
        for n in range(N):
            for i in range(L):
                s += gy[n, c, i]
                sx += gy[n, c, i] * xhat[n, c, i]
        sum_gy[c], sum_gy_xhat[c] = s, sx


@njit(parallel=True)
def bn_input_grad(gy, xhat, scale, sum_gy, sum_gy_xhat, training, gx):
    """gx = scale[c] (gy - sum_gy[c]/n - xhat sum_gy_xhat[c]/n), or scale[c] gy
    when not training; n = N*L."""
    N, C, L = gy.shape
    for c in prange(C):
        a = scale[c]
        m = sum_gy[c] / (N * L) if training else 0
        mx = sum_gy_xhat[c] / (N * L) if training else 0
        for n in range(N):
            for i in range(L):
                gx[n, c, i] = a * (gy[n, c, i] - m - xhat[n, c, i] * mx)


# ----------------------------------------------------------------------------
# the public functions
# ----------------------------------------------------------------------------
def linear(x, weight, bias=None):
    """y = x W^T + b for x (..., in_features), weight (out_features, in_features),
    bias (out_features,) or None; y has shape (..., out_features)."""
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), "
                         f"got shape {tuple(weight.shape)}")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {tuple(x.shape)} does not match weight "
                         f"{tuple(weight.shape)}: expected input (..., {weight.shape[1]})")
    if bias is None:
        return Linear()(x, weight)
    if tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},) to match weight "
                         f"{tuple(weight.shape)}, got {tuple(bias.shape)}")
    return Linear()(x, weight, bias)


def dropout(x, p=0.5, training=True):
    """Inverted dropout (see ``Dropout``); the identity when not training or p == 0."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
        raise ValueError(f"dropout: p must be a probability in [0, 1), got {p!r}")
    if not training or p == 0:
        return x
    return Dropout(float(p))(x)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalization of x (N, C) or (N, C, H, W) per channel (see ``BatchNorm``).

    training=True normalizes with the batch statistics and, when running_mean
    and running_var are given, updates them in place; training=False uses
    them. running_mean, running_var, weight, bias: (C,) Tensors or None.
    """
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input (N, C) or (N, C, H, W), got shape "
                         f"{tuple(x.shape)}")
    c = x.shape[1]
    named = {"running_mean": running_mean, "running_var": running_var,
             "weight": weight, "bias": bias}
    for name, t in named.items():
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"batch_norm: {name} must have shape ({c},) for an input with "
                             f"{c} channels {tuple(x.shape)}, got {tuple(t.shape)}")
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: give both running_mean and running_var, or neither")
    if not training and running_mean is None:
        raise ValueError("batch_norm: eval mode (training=False) needs running_mean and "
                         "running_var")
    if training and x.size // max(c, 1) <= 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when "
                         f"training, got input of shape {tuple(x.shape)}")
    stats = [t.data if isinstance(t, Tensor) else t for t in (running_mean, running_var)]
    if stats[0] is not None and device_of(stats[0]) != device_of(getattr(x, "data", x)):
        raise RuntimeError(f"batch_norm: running statistics are on {device_of(stats[0])}, "
                           f"the input on {device_of(getattr(x, 'data', x))}")
    fn = BatchNorm(stats[0], stats[1], bool(training), float(momentum), float(eps),
                   weight is not None, bias is not None)
    return fn(x, *[t for t in (weight, bias) if t is not None])
