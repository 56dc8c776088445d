"""Local Response Normalization across channels (Krizhevsky et al. 2012).

For x (N, C, H, W), at every pixel independently:

    s_c = k + alpha * sum_{c' in W(c)} x_{c'}^2          ("scale")
    y_c = x_c * s_c^(-beta)  =  x_c / s_c^beta

The window W(c) = [c - size//2, c + (size-1)//2], cut at 0 and C-1: `size`
channels centred on c. For an even size it reaches one channel further down
than up (PyTorch's centring; Chainer's window for even n is n+1 wide).

alpha is NOT divided by size. PyTorch's LocalResponseNorm divides it (and
Chainer does not), so  minidl alpha = torch alpha / size.

Backward, derived. With p_c = s_c^(-beta) and ds_c/dx_j = 2 alpha x_j when
j is in W(c):

    dy_c/dx_j = [c == j] p_c - beta x_c s_c^(-beta-1) * 2 alpha x_j [j in W(c)]

    gx_j = sum_c gy_c dy_c/dx_j
         = gy_j p_j - 2 alpha beta x_j * sum_{c : j in W(c)} gy_c x_c p_c / s_c

and j is in W(c) exactly when c lies in the mirrored window
W'(j) = [j - (size-1)//2, j + size//2]. Forward keeps s and p, so backward
needs no pow. Sums run in the input's precision (float32 stays float32).

The module holds the naive reference (loops over channels, NumPy over the
other axes; the test oracle), the Numba kernels (parallel over the N*C
planes), their CUDA twins (kernels/lrn.cu, same names) and the Function.
"""
import numbers

import numpy as np

from .. import cuda
from ..backend import get_array_module
from ..jit import njit, prange
from ..tensor import Function, Tensor


def window(c, size, C):
    """The channels [lo, hi) that normalize channel c."""
    return max(c - size // 2, 0), min(c + (size - 1) // 2 + 1, C)


# ----------------------------------------------------------------------------
# naive reference
# ----------------------------------------------------------------------------
def lrn_naive(x, size, alpha, beta, k):
    """Reference forward: the formula, channel by channel. x (N, C, H, W)."""
    C = x.shape[1]
    y = np.empty_like(x)
    for c in range(C):
        lo, hi = window(c, size, C)
        s = k + alpha * (x[:, lo:hi] ** 2).sum(axis=1)                 # (N, H, W)
        y[:, c] = x[:, c] / s ** beta
    return y


def lrn_backward_naive(x, gy, size, alpha, beta, k):
    """Reference backward: gx_j += gy_c dy_c/dx_j for every c and j in W(c)."""
    C = x.shape[1]
    gx = np.zeros_like(x)
    for c in range(C):
        lo, hi = window(c, size, C)
        s = k + alpha * (x[:, lo:hi] ** 2).sum(axis=1)                 # (N, H, W)
        gx[:, c] += gy[:, c] * s ** -beta                               # the j == c term
        for j in range(lo, hi):
            gx[:, j] -= gy[:, c] * beta * x[:, c] * s ** (-beta - 1) * 2 * alpha * x[:, j]
    return gx


# ----------------------------------------------------------------------------
# Numba kernels and their CUDA twins
# ----------------------------------------------------------------------------
@njit(inline="always")
def _negative_power(s, p, beta):
    """p = s^-beta elementwise (1-D). Without Intel's SVML, Numba's pow is a
    scalar libm call per element: 80% of the forward time. For AlexNet's
    beta = 0.75, s^-0.75 = 1 / (r * sqrt(r)) with r = sqrt(s) is two sqrt
    instructions that vectorize: forward 11.8 -> 2.4 ms on the benchmark's
    8x96x55x55 (within 2 float32 ulps of pow)."""
    if beta == 0.75:
        for i in range(s.size):
            r = np.sqrt(s[i])
            p[i] = 1 / (r * np.sqrt(r))
    else:
        for i in range(s.size):
            p[i] = s[i] ** -beta


@njit(parallel=True)
def lrn_forward(x, y, s, p, size, alpha, beta, k):
    """x (N, C, L) -> y, s (scale), p = s^-beta, all (N, C, L); L = H*W."""
    N, C, L = x.shape
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        lo, hi = max(c - size // 2, 0), min(c + (size - 1) // 2 + 1, C)
        acc = s[n, c]                                   # (L,) view, the window sum
        acc[:] = 0
        for j in range(lo, hi):
            for i in range(L):
                acc[i] += x[n, j, i] * x[n, j, i]
        for i in range(L):
            acc[i] = k + alpha * acc[i]
        _negative_power(acc, p[n, c], beta)             # p[n, c] = s[n, c]^-beta
        for i in range(L):
            y[n, c, i] = x[n, c, i] * p[n, c, i]


@njit(parallel=True)
def lrn_backward(x, s, p, gy, gx, size, alpha, beta):
    """gy (N, C, L) -> gx (N, C, L), with s and p saved by lrn_forward."""
    N, C, L = x.shape
    two_alpha_beta = x.dtype.type(2) * alpha * beta      # 2 * alpha would be float64
    for nj in prange(N * C):
        n, j = nj // C, nj % C
        lo, hi = max(j - (size - 1) // 2, 0), min(j + size // 2 + 1, C)   # W'(j)
        acc = gx[n, j]                                  # (L,) view, the sum over W'(j)
        acc[:] = 0
        for c in range(lo, hi):
            for i in range(L):
                acc[i] += gy[n, c, i] * x[n, c, i] * p[n, c, i] / s[n, c, i]
        for i in range(L):
            acc[i] = gy[n, j, i] * p[n, j, i] - two_alpha_beta * x[n, j, i] * acc[i]


def lrn_forward_gpu(x, y, s, p, size, alpha, beta, k):
    """CUDA twin of lrn_forward: one thread per element (kernels/lrn.cu)."""
    N, C, L = x.shape
    cuda.launch("lrn.cu", "lrn_forward", x.size,
                (np.int64(x.size), x, y, s, p, np.int32(C), np.int64(L), np.int32(size),
                 alpha, beta, k), x.dtype)


def lrn_backward_gpu(x, s, p, gy, gx, size, alpha, beta):
    """CUDA twin of lrn_backward: one thread per input element (a gather)."""
    N, C, L = x.shape
    cuda.launch("lrn.cu", "lrn_backward", x.size,
                (np.int64(x.size), x, s, p, gy, gx, np.int32(C), np.int64(L),
                 np.int32(size), alpha, beta), x.dtype)


# ----------------------------------------------------------------------------
# the Function
# ----------------------------------------------------------------------------
class LocalResponseNorm(Function):
    """y = x * s^-beta;  gx = gy p - 2 alpha beta x sum_{W'} gy x p / s."""

    def __init__(self, size, alpha, beta, k):
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        xp = get_array_module(x)
        N, C, H, W = x.shape
        t = x.dtype.type                                # constants in x's precision
        x = xp.ascontiguousarray(x).reshape(N, C, H * W)                # (N, C, L)
        y, s, p = xp.empty_like(x), xp.empty_like(x), xp.empty_like(x)  # (N, C, L) each
        kernel = lrn_forward_gpu if cuda.use_gpu_path(x) else lrn_forward
        kernel(x, y, s, p, self.size, t(self.alpha), t(self.beta), t(self.k))
        self.x, self.s, self.p, self.x_shape = x, s, p, (N, C, H, W)
        return y.reshape(N, C, H, W)

    def backward(self, gy):
        xp = get_array_module(gy)
        t = gy.dtype.type
        gy = xp.ascontiguousarray(gy).reshape(self.x.shape)             # (N, C, L)
        gx = xp.empty_like(gy)                                          # (N, C, L)
        kernel = lrn_backward_gpu if cuda.use_gpu_path(gy) else lrn_backward
        kernel(self.x, self.s, self.p, gy, gx, self.size, t(self.alpha), t(self.beta))
        return gx.reshape(self.x_shape)


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=2.0):
    """LRN across the channels of x (N, C, H, W): y_c = x_c / (k + alpha *
    sum_{c' in W(c)} x_c'^2) ** beta (module docstring; minidl alpha =
    torch alpha / size)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"local_response_norm: x must be a Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"local_response_norm: x must be 4-D (N, C, H, W), "
                         f"got shape {tuple(x.shape)}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"local_response_norm: x must be float32 or float64, got {x.dtype}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"local_response_norm: size must be an int, got {size!r}")
    if size < 1:
        raise ValueError(f"local_response_norm: size must be >= 1, got {size} "
                         f"(x shape {tuple(x.shape)})")
    for name, v in (("alpha", alpha), ("beta", beta), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"local_response_norm: {name} must be a real number, got {v!r}")
    return LocalResponseNorm(int(size), float(alpha), float(beta), float(k))(x)
