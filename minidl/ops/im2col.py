"""im2col and col2im, the data movement of conv2d (ops/conv.py): a naive
reference, the Numba loops and their CUDA twins (kernels/conv.cu).

im2col copies every input window of a batch x (N, C, H, W) into a column;
the windows of the N images lie side by side in each row:

    col[(c*kh + p)*kw + q, n*L + i*OW + j] = xpad[n, c, i*sh + p*dh, j*sw + q*dw]

col is (K, N*L) with K = C*kh*kw and L = OH*OW; xpad is x with pad_top /
pad_left zeros before (and pad_bottom / pad_right after) each image; geo is
conv.Geometry (kernel size, stride, padding, dilation, output size). col2im
is its adjoint: pixel x[n, c, h, w] gets the sum of the col entries that
im2col copied from it. On the CPU it is a scatter; the CUDA twin is a
gather, one thread per input pixel (no atomics). Both add the contributions
to a pixel in the same order, (p, q) ascending, so they agree bit for bit.
"""
import numpy as np

from .. import cuda
from ..jit import njit


# ----------------------------------------------------------------------------
# naive reference: the definition as loops (the test oracle)
# ----------------------------------------------------------------------------
def pad_images(x, geo):
    """x (N, C, H, W) with the padding of ``geo`` as zeros around each image."""
    return np.pad(x, ((0, 0), (0, 0), (geo.pad_top, geo.pad_bottom), (geo.pad_left, geo.pad_right)))


def column_entries(N, C, geo):
    """Every (r, m, pixel) of the definition: col[r, m] is padded pixel
    pixel = (n, c, h, w) of xpad, in the order of the loops below."""
    L = geo.OH * geo.OW
    for n in range(N):
        for c in range(C):
            for p in range(geo.kh):
                for q in range(geo.kw):
                    for i in range(geo.OH):
                        for j in range(geo.OW):
                            yield ((c * geo.kh + p) * geo.kw + q, n * L + i * geo.OW + j,
                                   (n, c, i * geo.sh + p * geo.dh, j * geo.sw + q * geo.dw))


def im2col_naive(x, geo):
    """col (C*kh*kw, N*OH*OW) from its definition, one element at a time."""
    N, C, H, W = x.shape
    xpad = pad_images(x, geo)
    col = np.empty((C * geo.kh * geo.kw, N * geo.OH * geo.OW), dtype=x.dtype)
    for r, m, pixel in column_entries(N, C, geo):
        col[r, m] = xpad[pixel]
    return col


def col2im_naive(col, x_shape, geo):
    """x (N, C, H, W) from col (C*kh*kw, N*OH*OW), one entry at a time: each
    entry is added to the pixel im2col_naive copied it from (padding dropped)."""
    N, C, H, W = x_shape
    xpad = pad_images(np.zeros(x_shape, dtype=col.dtype), geo)
    for r, m, pixel in column_entries(N, C, geo):
        xpad[pixel] += col[r, m]
    return xpad[:, :, geo.pad_top:geo.pad_top + H, geo.pad_left:geo.pad_left + W]


# ----------------------------------------------------------------------------
# fast CPU loops (Numba); their CUDA twins are kernels/conv.cu, same names
# ----------------------------------------------------------------------------
@njit
def column_runs(count, sw, pw, W, OW):
    """off, j0, j1 (count,) each, for q < count: output column j reads input
    column j*sw + off[q] (off[q] = q - pw), which lies inside [0, W) exactly
    for j0[q] <= j < j1[q]. Computed once per call, outside the copy loops
    (im2col's phase planes, col2im, the average pooling)."""
    off, j0, j1 = np.empty(count, np.int64), np.empty(count, np.int64), np.empty(count, np.int64)
    for q in range(count):
        off[q] = q - pw
        j0[q] = min(OW, max(0, (sw - 1 - off[q]) // sw))        # first j with j*sw + off >= 0
        j1[q] = max(j0[q], min(OW, (W - off[q] + sw - 1) // sw))  # first j with j*sw + off >= W
    return off, j0, j1


# The row helpers index with np.uint64: a signed index might be negative, so
# Numba would wrap it around (x[-1] is the last element) with a check on
# every access, which keeps LLVM from vectorizing the loop. Unsigned, the
# copy vectorizes: im2col and col2im got 4-6x faster for stride 1 (measured).
# The average pooling (ops/pool.py) uses them too.
@njit(inline="always")
def _fill_zero(dst, start, n):
    """dst[start:start + n] = 0."""
    for j in range(n):
        dst[np.uint64(start + j)] = 0


@njit(inline="always")
def _copy_strided(dst, d0, src, s0, step, n):
    """dst[d0 + j] = src[s0 + j*step] for j < n."""
    for j in range(n):
        dst[np.uint64(d0 + j)] = src[np.uint64(s0 + j * step)]


@njit(inline="always")
def _accumulate_strided(dst, d0, src, s0, step, n):
    """dst[d0 + j] += src[s0 + j*step] for j < n."""
    for j in range(n):
        dst[np.uint64(d0 + j)] += src[np.uint64(s0 + j * step)]


@njit(inline="always")
def _add_strided(dst, d0, step, src, s0, n):
    """dst[d0 + j*step] += src[s0 + j] for j < n."""
    for j in range(n):
        dst[np.uint64(d0 + j * step)] += src[np.uint64(s0 + j)]


# Each call of both loops runs on one thread; conv2d runs them on several
# cores by giving each worker thread its own chunks of images
# (ops/parallel.py). Inside one call, parallel=True did not pay on the 2
# shared cores. Best of 15, one thread vs prange (over rows of col for
# im2col, over bands of planes for col2im), on one chunk each: im2col 0.31 vs 0.36 ms
# (AlexNet conv1), 0.36 vs 0.45 (Inception 5x5), 0.39 vs 0.53 (LeNet conv2);
# col2im 0.26 vs 0.61 (Inception), 0.34 vs 0.90 (LeNet). Waking Numba's
# thread pool costs more than these short loops: 26-85 us per parallel loop
# with the workqueue layer (jit.py). OpenMP's starts one in 1.5 us, but its
# threads then spin and take the cores from the next GEMM's BLAS threads
# (LeNet conv2 forward+backward 1.3 -> 5.9 ms with parallel loops on it).
#
# Both loops work on the images padded and split by column phase: padded
# column w of a row goes to sub-row w % sw, place w // sw. Then every output
# row of every window, i.e. x[n, c, i*sh - ph + p*dh, j*sw - pw + q*dw] for
# j < OW, is one unit-stride run of OW values: no bounds to check and loops
# LLVM vectorizes. Measured against reading x directly (best of 30, one
# thread): im2col 1.3x faster on LeNet conv2, 1.5-1.9x on the padded ones
# (Inception 5x5, ResNet 3x3, VGG conv3_1), 1.9x on AlexNet conv1 (stride 4)
# and 2.5x on ResNet's 7x7 stride-2 stem; col2im 2x on AlexNet conv1 and
# 3.6x on the stem, unchanged at stride 1.
@njit(inline="always")
def _phase_shape(kh, kw, sh, sw, dh, dw, OH, OW):
    """Hp, Wq: the padded rows the windows reach, (OH-1)*sh + (kh-1)*dh + 1,
    and the length of a phase sub-row, ceil(Wp / sw) for the Wp columns reached."""
    Wp = (OW - 1) * sw + (kw - 1) * dw + 1
    return (OH - 1) * sh + (kh - 1) * dh + 1, (Wp + sw - 1) // sw


@njit
def _to_phase_planes(x, ph, pw, Hp, sw, Wq):
    """x (N, C, H, W) as (N*C, Hp*sw*Wq): padded pixel (hp, w) at
    (hp*sw + w % sw)*Wq + w // sw, zeros in the padding (x itself, reshaped,
    when that is the same layout)."""
    N, C, H, W = x.shape
    planes = x.reshape(N * C, H * W)                      # (N*C, H*W)
    if sw == 1 and ph == 0 and pw == 0 and Hp == H and Wq == W:
        return planes
    out = np.empty((N * C, Hp * sw * Wq), dtype=x.dtype)  # (N*C, Hp*sw*Wq)
    off, j0, j1 = column_runs(sw, sw, pw, W, Wq)          # sub-row rq: columns jj*sw + rq
    for nc in range(N * C):
        src, dst = planes[nc], out[nc]
        for hp in range(Hp):
            h = hp - ph                                   # input row of padded row hp
            if h < 0 or h >= H:
                _fill_zero(dst, hp * sw * Wq, sw * Wq)
                continue
            for rq in range(sw):
                d0 = (hp * sw + rq) * Wq
                _fill_zero(dst, d0, j0[rq])
                _copy_strided(dst, d0 + j0[rq], src, h * W + j0[rq] * sw + off[rq], sw,
                              j1[rq] - j0[rq])
                _fill_zero(dst, d0 + j1[rq], Wq - j1[rq])
    return out


# Short output rows at row stride 1: kernel row p reads, at output row i,
# the padded row i + p*dh that kernel row p - 1 read at output row i + dh.
# So the first OH - dh rows of window (c, p, q) are rows dh.. of window
# (c, p - 1, q), already in col: ONE copy of (OH - dh)*OW values instead of
# OH - dh copies of OW. It pays where a row is too short for the copy loop's
# vector body (16 floats on AVX-512, where this was measured; 32 on AVX2,
# 8 x 4; one thread, 4 MB of columns, 3x3 kernels unless said):
# OW = 4, 7, 14, 16, 20: 9-17% faster; LeNet conv2 (OW = 10, 5x5): 27%
# (0.204 -> 0.148 ms); OW = 28 and 40: 36% and 12% slower.
SHORT_ROW = 20


@njit
def im2col(x, col, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW):
    """Fill col (C*kh*kw, N*OH*OW) from x (N, C, H, W), C-contiguous both:
    col[(c*kh + p)*kw + q, n*OH*OW + i*OW + j] = x[n, c, i*sh - ph + p*dh, j*sw - pw + q*dw],
    0 in the padding. One copy per output row of each window, from the phase
    planes (short rows at stride 1: see SHORT_ROW); row by row of col, so
    that the writes run in order."""
    N, C, H, W = x.shape
    Hp, Wq = _phase_shape(kh, kw, sh, sw, dh, dw, OH, OW)
    planes = _to_phase_planes(x, ph, pw, Hp, sw, Wq)      # (N*C, Hp*sw*Wq)
    L = OH * OW
    shift = sh == 1 and OW <= SHORT_ROW and dh < OH       # reuse kernel row p - 1's rows
    for r in range(C * kh * kw):
        c, p, q = r // (kh * kw), (r // kw) % kh, r % kw
        dst = col[r]                                      # (N*L,)
        start = ((q * dw) % sw) * Wq + (q * dw) // sw     # column q*dw in its sub-row
        reused = OH - dh if shift and p > 0 else 0        # output rows taken from row r - kw
        for n in range(N):
            if reused:                                    # rows dh.. of window (c, p - 1, q)
                _copy_strided(dst, n * L, col[r - kw], n * L + dh * OW, 1, reused * OW)
            src = planes[n * C + c]                       # (Hp*sw*Wq,)
            for i in range(reused, OH):                   # output row i of image n
                hp = i * sh + p * dh                      # the padded row it reads
                _copy_strided(dst, n * L + i * OW, src, hp * sw * Wq + start, 1, OW)


@njit
def col2im(col, x, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW):
    """x (N, C, H, W) = the adjoint of im2col, from col (C*kh*kw, N*OH*OW):
    each pixel gets the sum of the col entries im2col copied from it. A
    scatter into zeroed phase planes, row by row of col: row (c, p, q) adds
    into every plane (n, c), so each pixel sums its terms in (p, q) order, as
    the CUDA gather does. Then the planes go back to x, padding cut off."""
    N, C, H, W = x.shape
    Hp, Wq = _phase_shape(kh, kw, sh, sw, dh, dw, OH, OW)
    planes = x.reshape(N * C, H * W)                      # (N*C, H*W)
    direct = sw == 1 and ph == 0 and pw == 0 and Hp == H and Wq == W
    acc = planes if direct else np.empty((N * C, Hp * sw * Wq), dtype=x.dtype)
    _fill_zero(acc.reshape(acc.size), 0, acc.size)
    L = OH * OW
    for r in range(C * kh * kw):
        c, p, q = r // (kh * kw), (r // kw) % kh, r % kw
        src = col[r]                                      # (N*L,)
        start = ((q * dw) % sw) * Wq + (q * dw) // sw
        for n in range(N):
            dst = acc[n * C + c]                          # (Hp*sw*Wq,)
            for i in range(OH):
                hp = i * sh + p * dh
                _add_strided(dst, hp * sw * Wq + start, 1, src, n * L + i * OW, OW)
    if direct:
        return
    off, j0, j1 = column_runs(sw, sw, pw, W, Wq)
    for nc in range(N * C):                               # pixel (h, w) <- (h + ph, w + pw)
        dst, src = planes[nc], acc[nc]
        _fill_zero(dst, 0, H * W)                         # pixels no window reached stay 0
        for h in range(min(H, Hp - ph)):
            for rq in range(sw):
                _add_strided(dst, h * W + j0[rq] * sw + off[rq], sw, src,
                             ((h + ph) * sw + rq) * Wq + j0[rq], j1[rq] - j0[rq])


# col2im adds runs of OW values: 10 on LeNet conv2, all of them shorter than
# the add loop's vector body (16 floats on AVX-512, 32 on AVX2). With the
# chunk's images interleaved in col (image index innermost, the layout of
# Krizhevsky's cuda-convnet) each output row of a window is one run of
# OW*N values instead of N runs of OW. conv.py uses it on the CPU for grad
# x of stride-1 convs with short rows, in chunks of several images (it
# moves gy into that layout first: Conv2d.backward, INTERLEAVED_BELOW_OW);
# im2col keeps the layout above, which the forward GEMM's output needs
# (moving y out of the interleaved layout cost what im2col saved). There is
# no CUDA twin: a GPU thread per pixel gathers its terms whatever the layout.
@njit
def col2im_interleaved(col, x, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW):
    """col2im from the interleaved layout, col (C*kh*kw, OH*OW*N):
    col[(c*kh + p)*kw + q, (i*OW + j)*N + n] for image n, at column stride
    sw = 1 only (conv.py uses it only there). Each pixel sums its terms in
    the same (p, q) order as col2im. It accumulates into padded planes with
    the image index innermost, (C, Hp*Wp*N), then moves every pixel back to
    x (N, C, H, W), padding cut off: at stride 1 the windows reach every
    padded column (Wp = pad_left + W + pad_right); rows from Hp on lie
    below the last window (row stride > 1) and are 0."""
    if sw != 1:
        raise ValueError("col2im_interleaved: the column stride must be 1")
    N, C, H, W = x.shape
    Hp, Wp = _phase_shape(kh, kw, sh, sw, dh, dw, OH, OW)
    acc = np.empty((C, Hp * Wp * N), dtype=x.dtype)       # (C, Hp*Wp*N)
    _fill_zero(acc.reshape(acc.size), 0, acc.size)
    run = OW * N                                          # output row i of the N images
    for r in range(C * kh * kw):
        c, p, q = r // (kh * kw), (r // kw) % kh, r % kw
        src, dst = col[r], acc[c]
        for i in range(OH):
            _add_strided(dst, ((i * sh + p * dh) * Wp + q * dw) * N, 1, src, i * run, run)
    # x[n, c, h, w] = acc[c, ((h + ph)*Wp + w + pw)*N + n], by flat indices:
    # a view per plane (x[n, c].reshape) made this loop 1.4x (LeNet conv2)
    # to 2.5x (3x3 at 7x7, 4 images) slower (one thread, best of 400).
    xf, af = x.reshape(x.size), acc.reshape(acc.size)
    reached = min(H, Hp - ph)                             # rows of x some window reached
    for n in range(N):
        for c in range(C):
            d = (n * C + c) * H * W                       # x[n, c, 0, 0]
            for h in range(reached):
                _copy_strided(xf, d + h * W, af, ((c * Hp + h + ph) * Wp + pw) * N + n, N, W)
            _fill_zero(xf, d + reached * W, (H - reached) * W)


@njit
def images_last(a, out):
    """out (K, N) = a (N, K) transposed: the images of a chunk moved innermost."""
    N, K = a.shape
    for k in range(K):
        for n in range(N):
            out[k, n] = a[n, k]


# ----------------------------------------------------------------------------
# GPU twins: the same loops as CUDA kernels (kernels/conv.cu), one thread per
# output element; they run on CuPy arrays, or on NumPy ones in the host harness
# ----------------------------------------------------------------------------
def _kernel_args(total, x, geo):
    """The scalar arguments shared by both kernels, typed as their C signature."""
    return (np.int64(total),) + tuple(np.int32(v) for v in x.shape + (
        geo.kh, geo.kw, geo.sh, geo.sw, geo.pad_top, geo.pad_left, geo.dh, geo.dw, geo.OH, geo.OW))


def im2col_gpu(x, col, geo):
    """col (C*kh*kw, N*OH*OW) from x (N, C, H, W): one thread per col element."""
    cuda.launch("conv.cu", "im2col", col.size, (x, col) + _kernel_args(col.size, x, geo), x.dtype)


def col2im_gpu(col, x, geo):
    """x (N, C, H, W) from col: a gather, one thread per pixel of x."""
    cuda.launch("conv.cu", "col2im", x.size, (col, x) + _kernel_args(x.size, x, geo), x.dtype)


def im2col_args(geo):
    """The scalar arguments of the Numba im2col and col2im, after the arrays."""
    return (geo.kh, geo.kw, geo.sh, geo.sw, geo.pad_top, geo.pad_left, geo.dh, geo.dw, geo.OH, geo.OW)
