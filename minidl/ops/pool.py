"""Pooling over the spatial axes of NCHW images: max, average, adaptive average.

Window geometry (PyTorch's, the same for max and average pooling). With
kernel k, stride s and padding p along one axis of length H, output row oh
looks at input rows [oh*s - p, oh*s - p + k), clipped to [0, H): padded
positions never win a max and are never read. The number of output rows is

    OH = floor((H + 2p - k) / s) + 1                          (ceil_mode=False)
    OH = ceil((H + 2p - k) / s) + 1, minus 1 if the last window
         would start in the right padding (at or past row H)   (ceil_mode=True)

so every window holds at least one real pixel (PyTorch also requires
p <= k // 2, checked here).

* max_pool2d: y = max over the window. The argmax (FIRST maximum on ties, as
  PyTorch) is stored per output as an int32 flat index h*W + w inside its
  input plane; backward adds each output gradient to that one pixel. On the
  CPU, rows of at least SHORT_POOL_ROW outputs are pooled a whole row at a
  time (vectorized), shorter ones one window at a time.
* avg_pool2d: y = sum over the window / divisor, with PyTorch's divisor:
  count_include_pad=True counts the padded positions inside [-p, H + p) but
  not the part of a window hanging past the padding (ceil_mode); False counts
  real pixels only. Backward spreads gy / divisor over the window.
* adaptive_avg_pool2d: output bin i covers rows [floor(i*H/OH),
  ceil((i+1)*H/OH)). The bins are rectangles, so the pooling is separable:
  y = A_h @ x @ A_w^T with A_h[i, h] = 1/len(bin i) on its rows (a matmul on
  NumPy or CuPy alike); output 1x1 (global pooling) is a plain mean.

Each op has, side by side: the naive reference (loops over output positions
and window offsets, NumPy over the batch and channel axes; the test oracle),
the Numba kernels over the N*C planes, their CUDA twins (kernels/pool.cu,
same names, run through ``cuda.launch``) and the Function.
"""
import numpy as np

from .. import cuda
from ..backend import get_array_module
from ..jit import njit, prange
from .im2col import _accumulate_strided, _add_strided, _copy_strided, _fill_zero, column_runs
from .args import pair
from ..tensor import Function, Tensor

_INT32_MAX = 2 ** 31 - 1


# ----------------------------------------------------------------------------
# argument checking and output size
# ----------------------------------------------------------------------------
def pool_output_size(size, k, s, p, ceil_mode):
    """PyTorch's number of windows along one axis (see the module docstring)."""
    out = (size + 2 * p - k + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1                      # the last window would start in the right padding
    return out


def _check_image(op, x):
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: x must be a Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{op}: x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: x must be float32 or float64, got {x.dtype}")


def _geometry(op, x, kernel_size, stride, padding, ceil_mode):
    """Validate the window settings -> (kh, kw, sh, sw, ph, pw, OH, OW)."""
    _check_image(op, x)
    kh, kw = pair(op, "kernel_size", kernel_size)
    sh, sw = (kh, kw) if stride is None else pair(op, "stride", stride)
    ph, pw = pair(op, "padding", padding)
    H, W = x.shape[2:]
    if kh < 1 or kw < 1:
        raise ValueError(f"{op}: kernel_size must be >= 1, got {(kh, kw)}")
    if sh < 1 or sw < 1:
        raise ValueError(f"{op}: stride must be >= 1, got {(sh, sw)}")
    if ph < 0 or pw < 0 or 2 * ph > kh or 2 * pw > kw:
        raise ValueError(f"{op}: padding must be between 0 and half the kernel_size, "
                         f"got padding {(ph, pw)} for kernel_size {(kh, kw)}")
    if kh > H + 2 * ph or kw > W + 2 * pw:
        raise ValueError(f"{op}: kernel_size {(kh, kw)} is larger than the padded input "
                         f"{(H + 2 * ph, W + 2 * pw)} of x with shape {tuple(x.shape)} "
                         f"and padding {(ph, pw)}")
    if H * W > _INT32_MAX:
        raise ValueError(f"{op}: an input plane of {H}x{W} pixels overflows the int32 "
                         f"argmax index (x shape {tuple(x.shape)})")
    OH = pool_output_size(H, kh, sh, ph, bool(ceil_mode))
    OW = pool_output_size(W, kw, sw, pw, bool(ceil_mode))
    return kh, kw, sh, sw, ph, pw, OH, OW


def _planes(a):
    """(N, C, H, W) -> contiguous (N*C, H, W), a view when a is contiguous."""
    xp = get_array_module(a)
    return xp.ascontiguousarray(a).reshape(-1, a.shape[2], a.shape[3])


# ----------------------------------------------------------------------------
# max pooling
# ----------------------------------------------------------------------------
def max_pool2d_naive(x, kh, kw, sh, sw, ph, pw, OH, OW):
    """Reference: loops over outputs and window pixels. x (N, C, H, W) NumPy
    -> y (N, C, OH, OW), argmax (N, C, OH, OW) int32 flat index h*W + w."""
    N, C, H, W = x.shape
    y = np.empty((N, C, OH, OW), x.dtype)
    argmax = np.empty((N, C, OH, OW), np.int32)
    for oh in range(OH):
        for ow in range(OW):
            h0, w0 = oh * sh - ph, ow * sw - pw           # window corner, may be in padding
            best = np.full((N, C), -np.inf, x.dtype)
            best_i = np.full((N, C), max(h0, 0) * W + max(w0, 0), np.int32)
            for h in range(max(h0, 0), min(h0 + kh, H)):
                for w in range(max(w0, 0), min(w0 + kw, W)):
                    v = x[:, :, h, w]                                        # (N, C)
                    take = (v > best) | np.isnan(v)    # strict >: the first max stays
                    best = np.where(take, v, best)
                    best_i = np.where(take, h * W + w, best_i)
            y[:, :, oh, ow] = best
            argmax[:, :, oh, ow] = best_i
    return y, argmax


def max_pool2d_backward_naive(gy, argmax, H, W):
    """Reference: output (oh, ow) adds gy[n, c, oh, ow] to pixel argmax[n, c, oh, ow]."""
    N, C, OH, OW = gy.shape
    gx = np.zeros((N, C, H * W), gy.dtype)
    n, c = np.indices((N, C))                                   # (N, C) each
    for oh in range(OH):
        for ow in range(OW):       # one pixel per (n, c): no index repeats in this +=
            gx[n, c, argmax[:, :, oh, ow]] += gy[:, :, oh, ow]
    return gx.reshape(N, C, H, W)


@njit(inline="always")
def _max_run(best, best_i, b0, src, s0, i0, istep, n):
    """For j < n, value src[s0 + j] (pixel i0 + j*istep of the plane) against
    output b0 + j: it wins if it is larger (strict: ties keep the first) or
    NaN (so the last NaN wins), PyTorch's ``v > best or isnan(v)``; the
    winner's pixel index goes to best_i."""
    for j in range(n):
        v, at, i = src[np.uint64(s0 + j)], np.uint64(b0 + j), i0 + j * istep
        take = (v > best[at]) | (v != v)
        best[at] = v if take else best[at]            # selects, not branches
        best_i[at] = i if take else best_i[at]


@njit(parallel=True)
def max_pool_forward(x, y, argmax, kh, kw, sh, sw, ph, pw):
    """x (P, H, W) -> y (P, OH, OW) window maxima, argmax (P, OH, OW) int32
    h*W + w of the first maximum (a NaN wins: the window's last NaN).

    Row by row, like the average pooling below: output row oh starts at
    -inf (index: each window's first pixel), then every window pixel (h, q),
    in the window's row-major order, is compared with the whole row at once:
    a loop over ow that vectorizes, where one window at a time was a chain
    of dependent compares. At stride sw > 1 the plane's columns are first
    split by phase (column w to sub-row w % sw, place w // sw, as im2col
    does), so that those loops read unit-stride runs too."""
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    Wq = (W + sw - 1) // sw                                          # a phase sub-row
    xs, ys, args = x.reshape(P, H * W), y.reshape(P, OH * OW), argmax.reshape(P, OH * OW)
    off, j0, j1 = column_runs(kw, sw, pw, W, OW)                     # (kw,) each
    for p in prange(P):
        best, best_i = ys[p], args[p]                                # flat planes
        if sw == 1:
            src = xs[p]                                              # (H*W,)
        else:                                                        # (H*sw*Wq,): pixel (h, w) at
            src = np.empty(H * sw * Wq, x.dtype)                     # (h*sw + w % sw)*Wq + w // sw
            for h in range(H):
                for rq in range(min(sw, W)):                         # the columns w % sw == rq
                    _copy_strided(src, (h * sw + rq) * Wq, xs[p], h * W + rq, sw,
                                  (W - rq + sw - 1) // sw)
        for oh in range(OH):
            h_lo = max(oh * sh - ph, 0)                   # window rows clipped to the input
            h_hi = min(oh * sh - ph + kh, H)
            o0 = oh * OW                                  # best[o0:o0 + OW]: this output row
            for ow in range(OW):
                best[o0 + ow] = -np.inf
                best_i[o0 + ow] = h_lo * W + max(ow * sw - pw, 0)
            for h in range(h_lo, h_hi):
                for q in range(kw):                       # pixel (h, ow*sw + off[q]) vs output ow
                    w = j0[q] * sw + off[q]               # the first pixel's column
                    s0 = (h * sw + w % sw) * Wq + w // sw
                    _max_run(best, best_i, o0 + j0[q], src, s0, h * W + w, sw, j1[q] - j0[q])


@njit(parallel=True)
def max_pool_forward_windows(x, y, argmax, kh, kw, sh, sw, ph, pw):
    """max_pool_forward one window at a time, for short output rows (see
    SHORT_POOL_ROW). The NaN is tracked aside, so that the compare-and-select
    chain of the max stays short: 1.3-1.9x faster."""
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    for p in prange(P):
        for oh in range(OH):
            h_lo = max(oh * sh - ph, 0)                 # window rows clipped to the input
            h_hi = min(oh * sh - ph + kh, H)
            for ow in range(OW):
                w_lo = max(ow * sw - pw, 0)
                w_hi = min(ow * sw - pw + kw, W)
                best = x[p, h_lo, w_lo]
                best_i = h_lo * W + w_lo
                nan_i = -1                              # the last NaN seen, if any
                for h in range(h_lo, h_hi):
                    for w in range(w_lo, w_hi):
                        v = x[p, h, w]
                        take = v > best                 # strict >: ties keep the first
                        best = v if take else best      # selects, not branches: no
                        best_i = h * W + w if take else best_i   # mispredictions (2.5x)
                        nan_i = h * W + w if v != v else nan_i
                if nan_i >= 0:
                    best, best_i = x[p, nan_i // W, nan_i % W], nan_i
                y[p, oh, ow] = best
                argmax[p, oh, ow] = best_i


# Output rows shorter than this take max_pool_forward_windows: their loops
# over ow are too short to vectorize (a 16-wide body on AVX-512, 32-wide,
# 8 floats x 4, on AVX2; thresholds measured on AVX-512). Measured on
# 4x256xHxW, 3x3 windows, 2 threads, row kernel vs window kernel: stride 2,
# OW = 6, 8, 10: 0.75 vs 0.51, 0.79 vs 0.71, 1.15 vs 1.03 ms; OW = 12, 16:
# 1.37 vs 1.47, 1.82 vs 2.55 ms. Stride 1, OW = 7 (GoogLeNet's 5a/5b pools):
# 2.0 vs 1.8 ms; OW = 12: 1.2 vs 1.8 ms.
SHORT_POOL_ROW = 12


def _max_pool_cpu(planes, y, argmax, *window):
    """The CPU max-pool forward for these output rows (see SHORT_POOL_ROW)."""
    kernel = max_pool_forward if y.shape[2] >= SHORT_POOL_ROW else max_pool_forward_windows
    kernel(planes, y, argmax, *window)


@njit(parallel=True)
def max_pool_backward(gy, argmax, gx):
    """gy, argmax (P, OH, OW) -> gx (P, H, W): each gy lands on its argmax
    pixel (a scatter: planes are independent, so no two threads collide)."""
    P, H, W = gx.shape
    OH, OW = gy.shape[1], gy.shape[2]
    for p in prange(P):
        plane = gx[p].reshape(H * W)                    # (H*W,) view of the plane
        plane[:] = 0
        for oh in range(OH):
            for ow in range(OW):
                plane[argmax[p, oh, ow]] += gy[p, oh, ow]


def _launch(kernel, n, arrays, plane_in, plane_out, settings):
    """cuda.launch a pool.cu kernel over n threads with the arguments
    (n, *arrays, H, W, OH, OW, *settings), the sizes and settings as int32."""
    ints = tuple(np.int32(v) for v in (*plane_in, *plane_out, *settings))
    cuda.launch("pool.cu", kernel, n, (np.int64(n), *arrays, *ints), arrays[0].dtype)


def max_pool_forward_gpu(x, y, argmax, *window):
    """CUDA twin of max_pool_forward: one thread per output (kernels/pool.cu)."""
    _launch("max_pool_forward", y.size, (x, y, argmax), x.shape[1:], y.shape[1:], window)


def max_pool_backward_gpu(gy, argmax, gx, *window):
    """CUDA twin of max_pool_backward: one thread per INPUT pixel, gathering
    from the windows that cover it (no atomics)."""
    _launch("max_pool_backward", gx.size, (gy, argmax, gx), gx.shape[1:], gy.shape[1:], window)


class MaxPool2d(Function):
    """y = max over each window; dx = gy routed to the stored argmax."""

    def __init__(self, geometry):
        self.geometry = geometry                    # (kh, kw, sh, sw, ph, pw, OH, OW)

    def forward(self, x):
        xp = get_array_module(x)
        N, C, H, W = x.shape
        *window, OH, OW = self.geometry
        planes = _planes(x)                                          # (N*C, H, W)
        y = xp.empty((N * C, OH, OW), x.dtype)                       # (N*C, OH, OW)
        argmax = xp.empty((N * C, OH, OW), xp.int32)                 # h*W + w per output
        kernel = max_pool_forward_gpu if cuda.use_gpu_path(x) else _max_pool_cpu
        kernel(planes, y, argmax, *window)
        self.argmax = argmax.reshape(N, C, OH, OW)
        self.x_shape = x.shape
        return y.reshape(N, C, OH, OW)

    def backward(self, gy):
        xp = get_array_module(gy)
        N, C, H, W = self.x_shape
        gx = xp.empty((N * C, H, W), gy.dtype)                       # every pixel written
        argmax = _planes(self.argmax)                                # (N*C, OH, OW)
        if cuda.use_gpu_path(gy):
            max_pool_backward_gpu(_planes(gy), argmax, gx, *self.geometry[:6])
        else:
            max_pool_backward(_planes(gy), argmax, gx)
        return gx.reshape(self.x_shape)


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Max over kh x kw windows of x (N, C, H, W) -> (N, C, OH, OW).

    stride defaults to kernel_size; padding (<= kernel_size // 2) never wins
    the max; ceil_mode as PyTorch (module docstring)."""
    return MaxPool2d(_geometry("max_pool2d", x, kernel_size, stride, padding, ceil_mode))(x)


# ----------------------------------------------------------------------------
# average pooling
# ----------------------------------------------------------------------------
def _naive_divisor(h0, w0, kh, kw, H, W, ph, pw, count_include_pad):
    """Count the window positions that lie in the padded input (count_include_pad)
    or in the input; the window's corner (h0, w0) may be in the padding."""
    (h_lo, h_hi), (w_lo, w_hi) = ((-ph, H + ph), (-pw, W + pw)) if count_include_pad \
        else ((0, H), (0, W))
    return (sum(h_lo <= h < h_hi for h in range(h0, h0 + kh))
            * sum(w_lo <= w < w_hi for w in range(w0, w0 + kw)))


def avg_pool2d_naive(x, kh, kw, sh, sw, ph, pw, OH, OW, count_include_pad):
    """Reference: y[:, :, oh, ow] = sum of the real pixels of the window / divisor."""
    N, C, H, W = x.shape
    y = np.empty((N, C, OH, OW), x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            h0, w0 = oh * sh - ph, ow * sw - pw
            window = x[:, :, max(h0, 0):min(h0 + kh, H), max(w0, 0):min(w0 + kw, W)]
            y[:, :, oh, ow] = window.sum(axis=(2, 3)) / _naive_divisor(
                h0, w0, kh, kw, H, W, ph, pw, count_include_pad)
    return y


def avg_pool2d_backward_naive(gy, kh, kw, sh, sw, ph, pw, H, W, count_include_pad):
    """Reference: every real pixel of window (oh, ow) gets gy[oh, ow] / divisor."""
    N, C, OH, OW = gy.shape
    gx = np.zeros((N, C, H, W), gy.dtype)
    for oh in range(OH):
        for ow in range(OW):
            h0, w0 = oh * sh - ph, ow * sw - pw
            d = _naive_divisor(h0, w0, kh, kw, H, W, ph, pw, count_include_pad)
            gx[:, :, max(h0, 0):min(h0 + kh, H), max(w0, 0):min(w0 + kw, W)] += (
                gy[:, :, oh, ow, None, None] / d)
    return gx


@njit(inline="always")
def window_length(o, s, p, k, n, count_include_pad):
    """Along one axis, window o's share of PyTorch's divisor: its length cut
    to the padded input [-p, n + p) (count_include_pad), else to the input
    [0, n). The divisor of window (oh, ow) is the product of the two axes'
    lengths (the CUDA twins' divisor() in kernels/pool.cu)."""
    start = o * s - p
    if count_include_pad:
        return min(start + k, n + p) - start
    return min(start + k, n) - max(start, 0)


@njit
def _column_lengths(OW, sw, pw, kw, W, count_include_pad, dtype):
    """(OW,) window_length of every output column, as ``dtype``."""
    out = np.empty(OW, dtype)
    for ow in range(OW):
        out[ow] = window_length(ow, sw, pw, kw, W, count_include_pad)
    return out


# Both loops go row by row: for output row oh, each window row h and kernel
# column q add a strided run of x into y's row. The inner loop over ow
# vectorizes; one output at a time, it was 2x slower (LeNet's 64x6x28x28
# 2x2 pooling, forward). Column bounds and lengths are computed once per
# call. Each plane is indexed flat, through im2col's unsigned-index run
# helpers: against 2-D row views, LeNet's pooling (one thread, best of 50)
# went from 0.38 to 0.28 ms forward and from 0.43 to 0.31 ms backward.
@njit(parallel=True)
def avg_pool_forward(x, y, kh, kw, sh, sw, ph, pw, count_include_pad):
    """x (P, H, W) -> y (P, OH, OW) window means, summed in x's precision
    (over h, then w, as the CUDA twin)."""
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    xs, ys = x.reshape(P, H * W), y.reshape(P, OH * OW)              # flat planes
    off, j0, j1 = column_runs(kw, sw, pw, W, OW)                     # (kw,) each
    col_len = _column_lengths(OW, sw, pw, kw, W, count_include_pad, x.dtype)  # (OW,)
    for p in prange(P):
        src, out = xs[p], ys[p]
        for oh in range(OH):
            h0 = oh * sh - ph
            row_len = window_length(oh, sh, ph, kh, H, count_include_pad)
            o0 = oh * OW                                  # out[o0:o0 + OW]: the window sums
            _fill_zero(out, o0, OW)
            for h in range(max(h0, 0), min(h0 + kh, H)):
                for q in range(kw):                       # out[o0 + ow] += x[p, h, ow*sw + off[q]]
                    _accumulate_strided(out, o0 + j0[q], src, h * W + j0[q] * sw + off[q], sw,
                                        j1[q] - j0[q])
            for ow in range(OW):
                out[o0 + ow] /= row_len * col_len[ow]     # the divisor, exact in float


@njit(parallel=True)
def avg_pool_backward(gy, gx, kh, kw, sh, sw, ph, pw, count_include_pad):
    """gy (P, OH, OW) -> gx (P, H, W): each window's real pixels get gy / divisor."""
    P, H, W = gx.shape
    OH, OW = gy.shape[1], gy.shape[2]
    gys, gxs = gy.reshape(P, OH * OW), gx.reshape(P, H * W)          # flat planes
    off, j0, j1 = column_runs(kw, sw, pw, W, OW)
    col_len = _column_lengths(OW, sw, pw, kw, W, count_include_pad, gx.dtype)
    for p in prange(P):
        src, dst = gys[p], gxs[p]
        _fill_zero(dst, 0, H * W)
        g = np.empty(OW, gx.dtype)                        # gy / divisor of one output row
        for oh in range(OH):
            h0 = oh * sh - ph
            row_len = window_length(oh, sh, ph, kh, H, count_include_pad)
            for ow in range(OW):
                g[ow] = src[oh * OW + ow] / (row_len * col_len[ow])
            for h in range(max(h0, 0), min(h0 + kh, H)):
                for q in range(kw):                       # gx[p, h, ow*sw + off[q]] += g[ow]
                    _add_strided(dst, h * W + j0[q] * sw + off[q], sw, g, j0[q], j1[q] - j0[q])


# Inputs under SERIAL_BELOW elements run the same loops on one thread: waking
# Numba's thread pool costs more than it saves there. LeNet's 64x6x28x28
# forward, median of 400 interleaved calls on the busy machine: 0.45 ms on
# one thread, 0.72 ms on two (best 0.42 and 0.43).
SERIAL_BELOW = 2**20
_avg_pool_forward_1t = njit(avg_pool_forward.py_func)
_avg_pool_backward_1t = njit(avg_pool_backward.py_func)


def _cpu_kernel(parallel, serial, a):
    return serial if a.size < SERIAL_BELOW else parallel


def avg_pool_forward_gpu(x, y, *settings):
    """CUDA twin of avg_pool_forward: one thread per output."""
    _launch("avg_pool_forward", y.size, (x, y), x.shape[1:], y.shape[1:], settings)


def avg_pool_backward_gpu(gy, gx, *settings):
    """CUDA twin of avg_pool_backward: one thread per input pixel, gathering
    gy / divisor from the windows that cover it."""
    _launch("avg_pool_backward", gx.size, (gy, gx), gx.shape[1:], gy.shape[1:], settings)


class AvgPool2d(Function):
    """y = window sum / divisor; dx = gy / divisor spread over the window."""

    def __init__(self, geometry, count_include_pad):
        self.geometry = geometry                    # (kh, kw, sh, sw, ph, pw, OH, OW)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x):
        xp = get_array_module(x)
        N, C, H, W = x.shape
        *window, OH, OW = self.geometry
        y = xp.empty((N * C, OH, OW), x.dtype)                       # (N*C, OH, OW)
        kernel = avg_pool_forward_gpu if cuda.use_gpu_path(x) else \
            _cpu_kernel(avg_pool_forward, _avg_pool_forward_1t, x)
        kernel(_planes(x), y, *window, self.count_include_pad)
        self.x_shape = x.shape
        return y.reshape(N, C, OH, OW)

    def backward(self, gy):
        xp = get_array_module(gy)
        N, C, H, W = self.x_shape
        gx = xp.empty((N * C, H, W), gy.dtype)                       # (N*C, H, W)
        kernel = avg_pool_backward_gpu if cuda.use_gpu_path(gy) else \
            _cpu_kernel(avg_pool_backward, _avg_pool_backward_1t, gx)
        kernel(_planes(gy), gx, *self.geometry[:6], self.count_include_pad)
        return gx.reshape(self.x_shape)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """Mean over kh x kw windows of x (N, C, H, W) -> (N, C, OH, OW), with
    PyTorch's divisor (module docstring)."""
    geometry = _geometry("avg_pool2d", x, kernel_size, stride, padding, ceil_mode)
    return AvgPool2d(geometry, count_include_pad)(x)


# ----------------------------------------------------------------------------
# adaptive average pooling
# ----------------------------------------------------------------------------
def adaptive_bins(size, out):
    """Bin i of ``out`` over ``size`` covers [floor(i*size/out), ceil((i+1)*size/out))."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def adaptive_avg_pool2d_naive(x, OH, OW):
    """Reference: y[:, :, i, j] = mean of x over row bin i and column bin j."""
    N, C, H, W = x.shape
    y = np.empty((N, C, OH, OW), x.dtype)
    for i, (h0, h1) in enumerate(adaptive_bins(H, OH)):
        for j, (w0, w1) in enumerate(adaptive_bins(W, OW)):
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


def _bin_matrix(xp, size, out, dtype):
    """A (out, size): A[i, h] = 1 / len(bin i) for h in bin i, else 0."""
    a = np.zeros((out, size))
    for i, (lo, hi) in enumerate(adaptive_bins(size, out)):
        a[i, lo:hi] = 1.0 / (hi - lo)
    return xp.asarray(a, dtype=dtype)


class AdaptiveAvgPool2d(Function):
    """y = A_h @ x @ A_w^T (bin averages);  dx = A_h^T @ gy @ A_w."""

    def __init__(self, output_size):
        self.output_size = output_size              # (OH, OW)

    def forward(self, x):
        xp = get_array_module(x)
        N, C, H, W = self.x_shape = x.shape
        if self.output_size == (1, 1):                               # global pooling
            return x.mean(axis=(2, 3), keepdims=True, dtype=x.dtype)  # (N, C, 1, 1)
        self.a_h = _bin_matrix(xp, H, self.output_size[0], x.dtype)  # (OH, H)
        self.a_w = _bin_matrix(xp, W, self.output_size[1], x.dtype)  # (OW, W)
        rows = x @ self.a_w.T                       # (N, C, H, W) @ (W, OW) -> (N, C, H, OW)
        return self.a_h @ rows                      # (OH, H) @ (N, C, H, OW) -> (N, C, OH, OW)

    def backward(self, gy):
        xp = get_array_module(gy)
        N, C, H, W = self.x_shape
        if self.output_size == (1, 1):
            return xp.broadcast_to(gy / gy.dtype.type(H * W), self.x_shape).copy()
        cols = gy @ self.a_w                        # (N, C, OH, OW) @ (OW, W) -> (N, C, OH, W)
        return self.a_h.T @ cols                    # (H, OH) @ (N, C, OH, W) -> (N, C, H, W)


def adaptive_avg_pool2d(x, output_size):
    """Average x (N, C, H, W) over an output_size grid of bins -> (N, C, OH, OW).

    output_size: int or pair; a None entry keeps that input size."""
    _check_image("adaptive_avg_pool2d", x)
    sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * 2
    if len(sizes) != 2:
        raise ValueError(f"adaptive_avg_pool2d: output_size must be an int or a pair, "
                         f"got {output_size!r}")
    sizes = tuple(x.shape[2 + i] if s is None else s for i, s in enumerate(sizes))
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"adaptive_avg_pool2d: output_size must hold ints or None, "
                            f"got {output_size!r}")
    if min(sizes) < 1 or min(x.shape[2:]) < 1:
        raise ValueError(f"adaptive_avg_pool2d: output_size {sizes} and the spatial size "
                         f"of x {tuple(x.shape)} must be >= 1")
    return AdaptiveAvgPool2d((int(sizes[0]), int(sizes[1])))(x)
