"""2-D convolution: the formula, a naive reference, and im2col + GEMM.

Formula (PyTorch's conv2d, a cross-correlation). Input x (N, C, H, W), weight
w (O, C_g, kh, kw) with C_g = C / groups, bias b (O,), output y (N, O, OH, OW):

    y[n, o, i, j] = b[o] + sum_{c < C_g, p < kh, q < kw}
                    w[o, c, p, q] * xpad[n, g*C_g + c, i*sh + p*dh, j*sw + q*dw]

where g = o // (O / groups) is the group of output channel o, xpad is x with
pad_top/pad_left zeros before (and pad_bottom/pad_right after) each image,
(sh, sw) the stride and (dh, dw) the dilation, and

    OH = (H + pad_top + pad_bottom - dh*(kh - 1) - 1) // sh + 1    (OW alike).

im2col turns the convolution into one matrix product. It copies every input
window into a column, the windows of all N images side by side:

    col[(c*kh + p)*kw + q, n*L + i*OW + j] = xpad[n, c, i*sh + p*dh, j*sw + q*dw]

so col is (K, N*L) with K = C*kh*kw and L = OH*OW, and for groups = 1

    Y = w.reshape(O, K) @ col                  (O, N*L)
    y[n] = Y[:, n*L:(n + 1)*L]                 (a transpose of (O, N, L) to NCHW).

With groups, the rows of col and of w split into `groups` blocks and the
product is a batched matmul (G, O_g, K_g) @ (G, K_g, N*L). With gy seen the
same way, gY (O, N*L), backward is two more GEMMs and the adjoint of im2col:

    gcol = w.reshape(O, K).T @ gY            gx = col2im(gcol)
    gw   = gY @ col.T                         gb = gy.sum over (n, i, j)
    (as gw.T = col @ gY.T when O_g < 128, which OpenBLAS runs faster there)

Design choices, measured on the shared 2-core CPU (float32; how each figure
was taken is said beside it):
* The columns are RECOMPUTED in backward (as Chainer does) unless they are
  small. Keeping them would hold K*OH*OW floats per image for every conv
  layer until its backward (all of VGG-16 at batch 8: 2.6 GB; VGG conv3_1
  alone: 115 MB), which no chunking could bound; recomputing costs one more
  im2col, 1-7% of forward+backward on the large layers. When the whole
  batch's columns fit in COL_CHUNK_BYTES (8 MiB) and grad w will be
  needed, forward keeps them, chunk by chunk, in arrays of their own: on
  LeNet conv2 (3.7 MiB of columns at batch 64) that made forward+backward
  15% faster (1.76 vs 2.08 ms, best of 41 interleaved runs; 7.1 vs 8.0 ms
  at batch 128), and ResNet-50's 7x7 conv neither gained nor lost.
  Backward takes the chunks last first: forward's last chunk is still in the
  workspace, unless another conv used it since (the workspace remembers
  which op's chunk it holds), and is not computed again (one chunk per
  worker, each in its own thread's workspace). Inception 5x5
  (two chunks) was faster that way in 16 of 20 interleaved rounds (medians
  of the bests 5.09 vs 5.41 ms); ResNet 3x3 and AlexNet conv1 (eight
  chunks) in 5 and 3 of 6. In a network this helps the last conv only.
* On the CPU the column buffer is one cached workspace per thread, reused by
  every call: a fresh 100 MB array goes back to the OS after each call (glibc)
  and page-faults in again on the next. Reuse made forward+backward 1.08x
  faster on VGG conv3_1, 1.24x on ResNet 3x3, 1.5x on Inception 5x5 and 1.9x
  on LeNet conv2.
* The batch is processed in chunks of images whose columns fit in
  COL_CHUNK_BYTES on the CPU (8 MiB, a quarter of the 32 MiB L3 cache here),
  COL_BUFFER_BYTES on the GPU; a chunk is at least one image. im2col writes
  a chunk's columns and the GEMM reads them back while they are still in the
  cache: with one image per chunk instead of the whole batch (2 threads, best
  of 15 interleaved runs) AlexNet conv1 went from 50 to 39 ms and ResNet 3x3
  from 47 to 40 ms (im2col alone 2.6x faster); VGG conv3_1, LeNet conv2 and
  Inception 5x5 did not change. It also bounds the memory: VGG-16 conv1_2's
  columns are 110 MiB per image, 3.5 GiB for a batch of 32. With W
  workers (below) a conv holds W chunks of columns at a time.
* The images of a chunk share one GEMM (columns side by side, (K, nb*L)),
  not one GEMM each: a longer matrix keeps BLAS busier on small layers. On
  whole conv forward+backward (2 threads, best of 15 interleaved runs):
  7% faster on LeNet conv2, AlexNet conv1 and Inception 5x5, 17% on
  ResNet-50's 7x7 3x3 conv, equal on ResNet 3x3.
* On the CPU the chunks are shared out between W workers, W = the BLAS's
  thread count (one per core): the calling thread and W - 1 helper threads
  each run im2col, the GEMMs and col2im on their own consecutive chunks at
  once, with the BLAS limited to one thread meanwhile (ops/parallel.py).
  There are at least W chunks while there are images enough (LeNet conv2,
  whose columns fit in one, gets W). Left to a two-thread BLAS, the copies
  ran on one core while the other waited, and each GEMM's two threads
  waited for each other. Forward+backward against that (2 threads; best
  of 5 or 15 per process, processes of each alternated; two A/B runs, of
  6 and 10 rounds; medians): LeNet conv2 0.82x and 0.98x the time, AlexNet
  conv1 0.86x and 1.01x, VGG conv3_1 0.90x and 0.94x, ResNet 1x1 0.89x and
  0.99x, ResNet 3x3 0.76x and 0.82x, Inception 5x5 0.78x and 0.64x; faster
  in 33 of 36 and 46 of 60 pairs. A single image (or a one-thread BLAS)
  is one part, on the BLAS's own threads as before. A conv of fewer than
  SHARE_FROM_FLOPS (20 MFLOP forward) is one part too, on the calling
  thread with a one-thread BLAS: a hand-off to a helper costs more than it
  saves there. Each worker keeps its own workspace (below).
* Grad x of a chunk of images with short rows (stride 1, OW < 16, at
  least 2 images: LeNet conv2, ResNet's 14x14 and 7x7 stages) goes through
  col2im_interleaved: gY is first moved to (O*L, nb), the images innermost,
  so that gcol = w.T @ gY comes out (K, L*nb) and col2im adds runs of
  OW*nb values instead of nb runs of OW (ops/im2col.py). The forward keeps
  the layout above: moving y back out of the interleaved layout cost what
  im2col saved there (LeNet conv2 fwd+bwd equal in 10 interleaved rounds).
* A 1x1 convolution with stride 1, no padding and no dilation is a plain
  GEMM: the columns of image n are x[n].reshape(C, H*W), so im2col is
  skipped and each image is its own GEMM (a view of x, no copy).
* im2col and col2im, their naive reference and their CUDA twins are in
  ops/im2col.py.
"""
import itertools
import math
import threading
from collections import namedtuple

import numpy as np

from .. import cuda
from ..backend import get_array_module
from . import parallel
from .args import pair
from .im2col import (col2im, col2im_gpu, col2im_interleaved, im2col, im2col_args, im2col_gpu,
                     images_last, pad_images)
from ..tensor import Function, as_tensor, is_grad_enabled

COL_CHUNK_BYTES = 8 * 2**20      # columns per chunk on the CPU: cache-sized (tests lower it)
COL_BUFFER_BYTES = 256 * 2**20   # the same on the GPU: a bound on memory only
# A 1x1 conv with at least this many output pixels per image runs one GEMM per
# image on a view of x (no copy). Shorter, copying the images of a chunk side
# by side for one GEMM pays: grad w as one GEMM was 3.1x faster on ResNet-50's
# 7x7 stage (L = 49), and slower from L = 196 up.
SHORT_OUTPUT = 128
# grad w is computed transposed, col @ gY.T, below this many output channels
# per group, and as gY @ col.T from it on (the reasons: Conv2d.backward).
GW_TRANSPOSED_BELOW = 128
# Grad x takes col2im_interleaved for stride-1 output rows shorter than the
# add loop's vector body (16 floats on AVX-512, where these figures come
# from; 32 on AVX2), in chunks of 2 images or more. col2im plus
# the transpose of gy it needs, against col2im alone (one thread, best of
# 300, quiet): LeNet conv2 (OW = 10) at batch 64: 0.132 + 0.029 vs 0.232
# ms; 3x3 convs at 7x7 (512 channels, 4 images): 0.211 + 0.048 vs 0.550, at
# 14x14 (256 channels, 4 images): 0.230 + 0.096 vs 0.547, with 2 images:
# 0.154 + 0.073 vs 0.279; GoogLeNet's 5x5 at 7x7 (48 channels, 4 images):
# 0.044 + 0.012 vs 0.128. Slower at OW = 20 (0.217 + 0.099 vs 0.287). It
# also won alone on Inception 5x5 (OW = 28: 0.091 + 0.048 vs 0.167) but
# not in the whole conv (equal in 10 interleaved rounds), so the rule
# stays OW < 16.
INTERLEAVED_BELOW_OW = 16
INTERLEAVED_FROM_IMAGES = 2
# A conv of fewer forward flops (2*N*O*C_g*kh*kw*OH*OW) runs on the calling
# thread alone, with a one-thread BLAS: handing a part to a helper thread
# costs about 0.05 ms (ops/parallel.py), and the call waits for its slowest
# part. Alone on free cores, forward+backward on one part / on two (best of
# 200 per process, 4 alternated rounds, medians): a 2x1x4x4 input 0.41;
# LeNet-5's C1 at batch 8 (1.9 MFLOP) 0.78, C3 at batch 8 (3.8) 0.76, C5
# at batch 32 (3.1) 0.76 and 64 (6.1) 0.87; but C1 at batch 32 (7.5) 1.12
# and 64 (15) 1.55, C3 at batch 32 (15) 1.36 and 64 (31) 1.65. Inside the
# main job, though (batch 32, a DataLoader thread augmenting beside it),
# one part was faster for those mid-sized convs: 2e7 against 7e6 here,
# 8.7-10.3 against 9.3-10.4 s, faster in 5 of 6 alternated runs; the
# LeNet-5 step alone, without that thread, equal within the noise.
SHARE_FROM_FLOPS = 2e7

# kernel size, stride, padding on each side, dilation and output size of one conv2d call
Geometry = namedtuple("Geometry", "kh kw sh sw pad_top pad_bottom pad_left pad_right dh dw OH OW")


# ----------------------------------------------------------------------------
# naive reference: the formula as loops (the test oracle, and the first read)
# ----------------------------------------------------------------------------
def conv2d_naive(x, w, b, geo, groups):
    """y from the formula with one loop per output element (NumPy, slow)."""
    N, C, H, W = x.shape
    O, Cg = w.shape[:2]
    Og = O // groups
    xpad = pad_images(x, geo)
    y = np.zeros((N, O, geo.OH, geo.OW), dtype=x.dtype)
    for n in range(N):
        for o in range(O):
            g = o // Og
            for i in range(geo.OH):
                for j in range(geo.OW):
                    total = 0.0 if b is None else b[o]
                    for c in range(Cg):
                        for p in range(geo.kh):
                            for q in range(geo.kw):
                                total += (w[o, c, p, q] *
                                          xpad[n, g * Cg + c, i * geo.sh + p * geo.dh, j * geo.sw + q * geo.dw])
                    y[n, o, i, j] = total
    return y


def conv2d_naive_backward(x, w, gy, geo, groups):
    """(gx, gw, gb) by the chain rule on the loops of conv2d_naive: each term
    w * xpad of y[n, o, i, j] sends gy * w to xpad and gy * xpad to w."""
    N, C, H, W = x.shape
    O, Cg = w.shape[:2]
    Og = O // groups
    xpad = pad_images(x, geo)
    gxpad, gw = np.zeros_like(xpad), np.zeros_like(w)
    for n in range(N):
        for o in range(O):
            g = o // Og
            for i in range(geo.OH):
                for j in range(geo.OW):
                    for c in range(Cg):
                        for p in range(geo.kh):
                            for q in range(geo.kw):
                                at = (n, g * Cg + c, i * geo.sh + p * geo.dh, j * geo.sw + q * geo.dw)
                                gxpad[at] += gy[n, o, i, j] * w[o, c, p, q]
                                gw[o, c, p, q] += gy[n, o, i, j] * xpad[at]
    gx = gxpad[:, :, geo.pad_top:geo.pad_top + H, geo.pad_left:geo.pad_left + W]
    return gx, gw, gy.sum(axis=(0, 2, 3))


# ----------------------------------------------------------------------------
# im2col / col2im on the array's device (the loops: ops/im2col.py)
# ----------------------------------------------------------------------------
def _im2col(x, col, geo):
    if cuda.use_gpu_path(x):
        im2col_gpu(x, col, geo)
    else:
        im2col(x, col, *im2col_args(geo))


def _images_last(a):
    """(nb, K) -> (K, nb), the images innermost (CPU; before col2im_interleaved)."""
    out = np.empty(a.shape[::-1], dtype=a.dtype)
    images_last(a, out)
    return out


def _col2im(col, x, geo, interleaved=False):
    """interleaved: col is (K, L*N), the images innermost (CPU only)."""
    if interleaved:
        col2im_interleaved(col, x, *im2col_args(geo))
    elif cuda.use_gpu_path(x):
        col2im_gpu(col, x, geo)
    else:
        col2im(col, x, *im2col_args(geo))


# ----------------------------------------------------------------------------
# the column buffer: one cached workspace per thread on the CPU
# ----------------------------------------------------------------------------
_workspace = threading.local()
_op_tokens = itertools.count()      # names each Conv2d op, for _workspace.holds


def _col_buffer(xp, shape, dtype):
    """Scratch array of ``shape``. CuPy's memory pool already reuses blocks;
    on the CPU, reuse one growing byte buffer instead of page-faulting a new
    one. It keeps the largest chunk asked for: at most COL_CHUNK_BYTES, or
    one image's columns if those are larger. Whatever it held is forgotten
    (``_workspace.holds``: see Conv2d._columns)."""
    if xp is not np:
        return xp.empty(shape, dtype=dtype)
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    buf = getattr(_workspace, "buf", None)
    if buf is None or buf.nbytes < nbytes:
        buf = _workspace.buf = np.empty(nbytes, dtype=np.uint8)
    _workspace.holds = None
    return buf[:nbytes].view(dtype).reshape(shape)


# ----------------------------------------------------------------------------
# the differentiable op
# ----------------------------------------------------------------------------
class Conv2d(Function):
    """y = conv2d(x, w[, b]) by im2col + GEMM; the formula is in the module docstring.
    keep_columns: backward will need grad w, so keep small columns (see the
    module docstring)."""

    def __init__(self, geo, groups, keep_columns=False):
        self.geo, self.groups, self.keep_columns = geo, groups, keep_columns
        self.token = next(_op_tokens)
        # 1x1 kernel, stride 1, no padding, no dilation: col[n] is x[n] (C, H*W)
        self.plain_gemm = (geo.kh, geo.kw, geo.sh, geo.sw, geo.dh, geo.dw) == (1,) * 6 and \
            (geo.pad_top, geo.pad_bottom, geo.pad_left, geo.pad_right) == (0,) * 4

    def _workers(self, x):
        """W: how many workers share the batch (ops/parallel.py); 1 on the GPU."""
        return 1 if cuda.use_gpu_path(x) else parallel.cpu_workers()

    def _column_bytes(self, x):
        """(bytes of one image's columns, the most a chunk may hold:
        COL_BUFFER_BYTES on the GPU, COL_CHUNK_BYTES on the CPU)."""
        C, L = x.shape[1], self.geo.OH * self.geo.OW
        limit = COL_BUFFER_BYTES if cuda.use_gpu_path(x) else COL_CHUNK_BYTES
        return C * self.geo.kh * self.geo.kw * L * x.itemsize, limit

    def _chunks(self, x, workers=1):
        """[(n0, n1), ...]: runs of images whose columns fit in COL_CHUNK_BYTES
        (CPU) or COL_BUFFER_BYTES (GPU), of equal sizes as far as possible,
        and at least ``workers`` of them (a multiple of it) while there are
        images enough. A long 1x1 conv on the CPU runs image by image, on
        views of x."""
        N = x.shape[0]
        per_image, limit = self._column_bytes(x)
        if self.plain_gemm and self.geo.OH * self.geo.OW >= SHORT_OUTPUT and not cuda.use_gpu_path(x):
            most = 1
        else:
            most = max(1, limit // max(per_image, 1))
        n_chunks = -(-N // most)                          # ceil(N / most)
        n_chunks = max(1, min(N, workers * -(-n_chunks // workers)))   # a multiple of workers
        step = max(1, -(-N // n_chunks))                  # ceil(N / n_chunks)
        return [(n0, min(N, n0 + step)) for n0 in range(0, N, step)]

    def _parts(self, x, w):
        """The chunks shared out between the workers: W runs of consecutive
        chunks (fewer if there are fewer chunks). Forward keeps them for
        backward, which must take the same chunks (the kept columns are by
        chunk; each worker finds its last chunk in its thread's workspace).
        Sets self.small: a conv of fewer than SHARE_FROM_FLOPS runs as one
        part on this thread, with a one-thread BLAS."""
        (N, C), O, geo = x.shape[:2], w.shape[0], self.geo
        flops = 2 * N * O * (C // self.groups) * geo.kh * geo.kw * geo.OH * geo.OW
        workers = self._workers(x)
        self.small = workers > 1 and flops < SHARE_FROM_FLOPS
        chunks = self._chunks(x, 1 if self.small else workers)
        W = 1 if self.small else max(1, min(workers, len(chunks)))    # N = 0: one empty part
        return [chunks[k * len(chunks) // W:(k + 1) * len(chunks) // W] for k in range(W)]

    def _share_out(self, fn):
        """[fn(part) for part in self.parts], the parts at once on the workers
        (parallel.in_parallel); a small conv's one part with a one-thread BLAS."""
        if self.small:
            with parallel.one_thread_blas():
                return [fn(part) for part in self.parts]
        return parallel.in_parallel(fn, self.parts)

    def _keeps_columns(self, x):
        """Forward keeps its columns for grad w: wanted, not a plain GEMM, and
        the whole batch's columns fit in one chunk's bytes."""
        per_image, limit = self._column_bytes(x)
        return self.keep_columns and not self.plain_gemm and x.shape[0] * per_image <= limit

    def _interleaved_grad_x(self, x, nb):
        """Grad x of a chunk of nb images through col2im_interleaved (the
        images interleaved in gcol, see ops/im2col.py): on the CPU, for
        stride-1 output rows shorter than INTERLEAVED_BELOW_OW in chunks of
        at least INTERLEAVED_FROM_IMAGES images."""
        return (not self.plain_gemm and not cuda.use_gpu_path(x) and self.geo.sw == 1
                and self.geo.OW < INTERLEAVED_BELOW_OW and nb >= INTERLEAVED_FROM_IMAGES)

    def _columns(self, x, n0, n1, own=False):
        """col of images n0..n1 as (G, K_g, nb*L), K_g = C_g*kh*kw, L = OH*OW:
        in the shared workspace, or in an array of its own if ``own``. The
        workspace remembers that it holds this op's chunk (n0, n1) until its
        next use: backward takes the last chunk of forward from there
        instead of computing it again."""
        xp, nb, C, G = get_array_module(x), n1 - n0, x.shape[1], self.groups
        L = self.geo.OH * self.geo.OW
        if self.plain_gemm and nb == 1:
            return x[n0].reshape(G, C // G, L)                    # a view, no copy
        shape = (C * self.geo.kh * self.geo.kw, nb * L)
        chunk = (self.token, n0, n1)
        if not own and xp is np and getattr(_workspace, "holds", None) == chunk:
            return _workspace.buf[:math.prod(shape) * x.itemsize].view(x.dtype).reshape(G, -1, nb * L)
        col = xp.empty(shape, dtype=x.dtype) if own else _col_buffer(xp, shape, x.dtype)
        if self.plain_gemm:                                       # images side by side
            col.reshape(C, nb, L)[...] = x[n0:n1].reshape(nb, C, L).transpose(1, 0, 2)
        else:
            _im2col(x[n0:n1], col, self.geo)                      # (K, nb*L)
        if not own and xp is np:
            _workspace.holds = chunk
        return col.reshape(G, -1, nb * L)

    def forward(self, x, w, b=None):
        xp = get_array_module(x)
        x = xp.ascontiguousarray(x)                               # (N, C, H, W)
        N, O, G = x.shape[0], w.shape[0], self.groups
        OH, OW = self.geo.OH, self.geo.OW
        w3 = w.reshape(G, O // G, -1)                             # (G, O_g, K_g)
        y = xp.empty((N, O, OH, OW), dtype=x.dtype)
        keep = self._keeps_columns(x)       # small columns: keep them for grad w, by chunk
        self.kept = {} if keep else None

        def run(chunks):                                          # one worker's chunks
            for n0, n1 in chunks:
                nb = n1 - n0
                col = self._columns(x, n0, n1, own=keep)          # (G, K_g, nb*L)
                if keep:
                    self.kept[n0] = col
                if nb == 1:                                       # already image n0's layout
                    xp.matmul(w3, col, out=y[n0].reshape(G, O // G, OH * OW))
                else:                                    # (G, O_g, nb*L) -> (nb, O, OH, OW)
                    y[n0:n1] = xp.matmul(w3, col).reshape(O, nb, OH, OW).transpose(1, 0, 2, 3)
                if b is not None:                        # while the chunk of y is in the cache
                    y[n0:n1] += b.reshape(1, O, 1, 1)             # (nb, O, OH, OW)

        self.parts = self._parts(x, w)      # backward shares out the same chunks
        self._share_out(run)
        self.x, self.w, self.has_bias = x, w, b is not None
        return y

    def backward(self, gy):
        x, w, geo, G = self.x, self.w, self.geo, self.groups
        xp = get_array_module(gy)
        need_x, need_w = self.needs_input_grad[:2]
        N, C, O, L = x.shape[0], x.shape[1], w.shape[0], geo.OH * geo.OW
        gy4 = xp.ascontiguousarray(gy).reshape(N, G, O // G, L)   # (N, G, O_g, L)
        wT = w.reshape(G, O // G, -1).transpose(0, 2, 1)          # (G, K_g, O_g), a view
        Kg = wT.shape[1]
        gx = xp.empty_like(x) if need_x else None                 # (N, C, H, W)
        # gw = gY @ col.T, (G, O_g, K_g). With few output channels OpenBLAS runs the
        # transposed product col @ gY.T faster (1.2-1.7x on LeNet conv2, Inception
        # 5x5, ResNet 3x3), and gw.T is small. From O_g = 128 on, both run alike and
        # transposing gw.T back costs more than the product: 11 ms after a 4.7 ms
        # GEMM on ResNet-50's 512x4608 3x3 weight. (gw must come out C-contiguous,
        # like w: the optimizer's one-sweep update needs it.)
        transposed = O // G < GW_TRANSPOSED_BELOW
        need_b = self.has_bias and self.needs_input_grad[2]

        def run(chunks):                                          # one worker's chunks
            gw = gb = None                                        # the sums over its chunks
            for n0, n1 in reversed(chunks):                       # forward's last chunk first
                nb = n1 - n0
                if need_b:
                    # gb[o] = sum over n, i, j of gy[n, o, i, j]; einsum runs it 2-4x faster
                    # than gy.sum(axis=(0, 2, 3)) (NumPy 2.4, float32: 0.010 vs 0.037 ms on
                    # LeNet conv2's 64x16x10x10, 0.17 vs 0.50 ms on 4x256x56x56)
                    part = xp.einsum("nol->o", gy4[n0:n1].reshape(nb, O, L))      # (O,)
                    gb = part if gb is None else gb + part
                interleaved = need_x and self._interleaved_grad_x(x, nb)
                if need_w or not interleaved:                     # gY of the chunk: (G, O_g, nb*L),
                    g = gy4[n0:n1].transpose(1, 2, 0, 3).reshape(G, O // G, nb * L)   # a copy if nb > 1
                if need_w:
                    col = self.kept[n0] if self.kept is not None else self._columns(x, n0, n1)
                    part = xp.matmul(col, g.transpose(0, 2, 1)) if transposed else \
                        xp.matmul(g, col.transpose(0, 2, 1))      # (G, K_g, O_g) or (G, O_g, K_g)
                    if gw is None:
                        gw = part                                 # no zeros to add to
                    else:
                        gw += part
                if need_x and self.plain_gemm and nb == 1:        # col2im is the identity
                    xp.matmul(wT, g, out=gx[n0].reshape(G, Kg, L))
                elif interleaved:                                 # images innermost (see above)
                    g_inner = _images_last(gy4[n0:n1].reshape(nb, O * L))   # (O*L, nb) = (G, O_g, L*nb)
                    gcol = _col_buffer(xp, (G, Kg, L * nb), x.dtype)
                    xp.matmul(wT, g_inner.reshape(G, O // G, L * nb), out=gcol)
                    _col2im(gcol.reshape(G * Kg, L * nb), gx[n0:n1], geo, interleaved=True)
                elif need_x:                                      # CPU: col's memory, reused
                    gcol = _col_buffer(xp, (G, Kg, nb * L), x.dtype)
                    xp.matmul(wT, g, out=gcol)                    # (G, K_g, nb*L)
                    if self.plain_gemm:                           # (C, nb, L) -> (nb, C, H, W)
                        gx[n0:n1] = gcol.reshape(C, nb, *x.shape[2:]).transpose(1, 0, 2, 3)
                    else:
                        _col2im(gcol.reshape(G * Kg, nb * L), gx[n0:n1], geo)
            return gw, gb

        # each worker's sums of gw and gb, added in the order of the workers (reproducible)
        sums = self._share_out(run)
        gw, gb = (_sum_in_order(part[i] for part in sums) for i in (0, 1))
        if need_w and gw is None:                                 # no images: N == 0
            gw = xp.zeros_like(w)
        elif need_w:
            gw = (xp.ascontiguousarray(gw.transpose(0, 2, 1)) if transposed else gw).reshape(w.shape)
        if need_b and gb is None:
            gb = xp.zeros(O, dtype=gy.dtype)
        return (gx, gw, gb) if self.has_bias else (gx, gw)


def _sum_in_order(arrays):
    """The sum of the arrays that are not None, added first to last (None if none)."""
    total = None
    for a in arrays:
        if a is not None:
            total = a if total is None else total + a
    return total


# ----------------------------------------------------------------------------
# the public function: argument checks, then the op
# ----------------------------------------------------------------------------
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution of x (N, C, H, W) with weight (O, C/groups, kh, kw).

    stride, dilation: int or (h, w), >= 1. padding: int or (h, w) >= 0, or
    "valid" (0) or "same" (output size = input size; stride 1 only; with an
    even kernel the extra row/column goes to the bottom/right, as PyTorch).
    bias: (O,) or None. Returns (N, O, OH, OW); see the module docstring.
    """
    x, weight = as_tensor(x), as_tensor(weight)
    bias = None if bias is None else as_tensor(bias)
    geo = conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    for name, t in (("input", x), ("weight", weight), ("bias", bias)):
        if t is not None and t.dtype not in (np.float32, np.float64):
            raise TypeError(f"conv2d: {name} must be float32 or float64, got {t.dtype} "
                            f"(shape {tuple(t.shape)})")
        if t is not None and t.dtype != x.dtype:
            raise ValueError(f"conv2d: {name} dtype {t.dtype} (shape {tuple(t.shape)}) differs "
                             f"from input dtype {x.dtype} (shape {tuple(x.shape)}); convert one")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({weight.shape[0]},) (out_channels of "
                         f"weight {tuple(weight.shape)}), got {tuple(bias.shape)}")
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Conv2d(geo, groups, keep_columns=is_grad_enabled() and weight.requires_grad)(*inputs)


def conv_geometry(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1):
    """Check the arguments of conv2d and return its Geometry (ValueError/TypeError)."""
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    if len(x_shape) != 4:
        raise ValueError(f"conv2d: input must be 4-D (N, C, H, W), got shape {x_shape}")
    if len(w_shape) != 4:
        raise ValueError(f"conv2d: weight must be 4-D (out_channels, in_channels/groups, kH, kW), "
                         f"got shape {w_shape}")
    (_, C, H, W), (O, Cg, kh, kw) = x_shape, w_shape
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conv2d: groups must be an int >= 1, got {groups!r}")
    if C % groups:
        raise ValueError(f"conv2d: in_channels {C} (input shape {x_shape}) is not divisible "
                         f"by groups={groups}")
    if O % groups:
        raise ValueError(f"conv2d: out_channels {O} (weight shape {w_shape}) is not divisible "
                         f"by groups={groups}")
    if Cg != C // groups:
        raise ValueError(f"conv2d: weight shape {w_shape} has {Cg} channels per group, but input "
                         f"shape {x_shape} with groups={groups} needs {C // groups}")
    sh, sw = pair("conv2d", "stride", stride)
    dh, dw = pair("conv2d", "dilation", dilation)
    if min(sh, sw) < 1 or min(dh, dw) < 1:
        raise ValueError(f"conv2d: stride and dilation must be >= 1, got stride={stride!r}, "
                         f"dilation={dilation!r}")
    if padding == "same":
        if (sh, sw) != (1, 1):
            raise ValueError(f"conv2d: padding='same' needs stride 1, got stride={stride!r}")
        span_h, span_w = dh * (kh - 1), dw * (kw - 1)     # total padding; extra at bottom/right
        pads = (span_h // 2, span_h - span_h // 2, span_w // 2, span_w - span_w // 2)
    elif padding == "valid":
        pads = (0, 0, 0, 0)
    elif isinstance(padding, str):
        raise ValueError(f"conv2d: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        ph, pw = pair("conv2d", "padding", padding)
        if min(ph, pw) < 0:
            raise ValueError(f"conv2d: padding must be >= 0, got {padding!r}")
        pads = (ph, ph, pw, pw)
    Hp, Wp = H + pads[0] + pads[1], W + pads[2] + pads[3]
    if dh * (kh - 1) + 1 > Hp or dw * (kw - 1) + 1 > Wp or kh < 1 or kw < 1:
        raise ValueError(f"conv2d: kernel {kh}x{kw} (weight shape {w_shape}, dilation ({dh}, {dw})) "
                         f"spans {dh * (kh - 1) + 1}x{dw * (kw - 1) + 1}, larger than the padded "
                         f"input {Hp}x{Wp} (input shape {x_shape}, padding {padding!r})")
    OH, OW = (Hp - dh * (kh - 1) - 1) // sh + 1, (Wp - dw * (kw - 1) - 1) // sw + 1
    return Geometry(kh, kw, sh, sw, *pads, dh, dw, OH, OW)
