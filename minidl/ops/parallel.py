"""Share the chunks of a batch between the cores, each core with a one-thread
BLAS (conv2d's CPU path, ops/conv.py).

conv2d works through a batch in chunks of images: im2col, GEMMs, col2im.
Left to a multi-threaded BLAS, only the GEMMs use every core; the copies of
im2col and col2im run on one core while the others wait. Instead the chunks
are shared out between W workers, the calling thread and W - 1 helper
threads, and each worker runs the whole sequence on its own chunks with a
one-thread BLAS: the copies run on every core too, and no GEMM thread waits
for a partner. The workers run at once because the Numba loops release the
GIL (jit.py) and so does NumPy's matmul.

W is the number of threads the BLAS library was set to use (OpenBLAS: one
per core unless OPENBLAS_NUM_THREADS says otherwise), read through
threadpoolctl. While workers run, every BLAS library is limited to one
thread, and set back when the last of them is done (the limit is for
the whole process: a GEMM another thread runs meanwhile gets one thread
too). Where threadpoolctl finds no BLAS whose threads it can set (Apple's
Accelerate), W is 1 and conv2d runs as before, on the BLAS's own threads.
What it bought: ops/conv.py's docstring.

One catch: after a multi-threaded call, OpenBLAS's threads wait for the
next one by spinning, for about 0.1 s (OPENBLAS_THREAD_TIMEOUT), and take a
core from the workers meanwhile (up to 2x on a conv). So minidl's other
products (Linear, matmul) go through ``matmul`` below, with a one-thread
BLAS too. Your own multi-threaded ``a @ b`` between layers, or a conv of a
single image (one part, on the BLAS's threads), still wakes them.

Another: the workers assume the cores are free. Each call ends when its
slowest part does, so a thread of yours that keeps a core busy (a
DataLoader augmenting in the background on 2 cores) makes the scheduler
set a worker aside and the others wait: there one worker was faster
(LeNet conv2 at batch 32 beside a busy NumPy thread: 1.41-1.50 ms
forward+backward with two, 1.11-1.15 with one; benchmarks/RESULTS.md).
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

import numpy as np

# A matmul of at least this many flops (2*M*K*N) is shared out between the
# workers; a smaller one runs on the calling thread (a one-thread GEMM of
# 8 MFLOP takes about 0.1 ms here, and handing parts to the helpers about
# 0.04 ms).
SPLIT_FROM_FLOPS = 8e6

_lock = threading.Lock()
_blas = None          # threadpoolctl's controllers of the loaded BLAS libraries (found once)
_limited = 0          # how many in_parallel calls are running (they may come from several threads)
_saved = None         # the BLAS thread counts to set back when the last of them ends
_helpers = []         # one single-thread executor per part after the first, made at first use
_this_thread = threading.local()      # .is_helper: True on the helper threads


def _blas_libraries():
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:              # no threadpoolctl, or a library it cannot read
            _blas = []
    return _blas


def cpu_workers():
    """W: how many workers share a batch on the CPU, the smallest thread
    count the BLAS libraries are set to (1 if none can be set)."""
    libs = _blas_libraries()
    if not libs:
        return 1
    with _lock:
        if _limited:                   # limited by a call running in another thread
            return min(_saved)
        return max(1, min(lib.num_threads for lib in libs))


@contextmanager
def one_thread_blas():
    """Every BLAS library limited to one thread inside the block."""
    _limit_blas()
    try:
        yield
    finally:
        _restore_blas()


def in_parallel(fn, parts):
    """[fn(part) for part in parts], computed at once: parts[0] on this
    thread, part k on helper thread k, every BLAS limited to one thread
    meanwhile. A part's exception is raised here, after all parts ended.
    Called from a helper thread (fn nesting in_parallel), it runs the parts
    one after the other instead."""
    if len(parts) == 1 or getattr(_this_thread, "is_helper", False):
        return [fn(part) for part in parts]
    with one_thread_blas():
        futures = []
        try:
            futures = [helper.submit(fn, part)
                       for helper, part in zip(_helper_threads(len(parts) - 1), parts[1:])]
            first = fn(parts[0])
            return [first] + [f.result() for f in futures]
        finally:
            wait(futures)              # none still running when the BLAS is set back


def matmul(a, b):
    """a @ b. Two 2-D NumPy arrays are multiplied as conv2d's chunks are:
    with a one-thread BLAS, the rows of the product (or its columns, when
    it has more of them) shared out between the W workers if it is big
    enough (SPLIT_FROM_FLOPS), on this thread if not. Other operands (CuPy,
    batches of matrices) go to ``a @ b`` as they are.

    Why not leave it to the BLAS: the spinning threads of the module
    docstring. A conv of GoogLeNet (4x96x28x28 -> 128, 3x3, 2 workers) took
    15-18 ms forward+backward after a one-thread 64x400 @ 400x120 product
    (a Linear layer of LeNet-5), and 25-32 ms after the same product on
    two threads (medians of 60, alternated in one process)."""
    workers = cpu_workers()
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.ndim == b.ndim == 2
            and a.shape[1] == b.shape[0]) or workers == 1:
        return a @ b                     # NumPy's own errors for mismatched shapes
    (M, K), N = a.shape, b.shape[1]
    if 2 * M * K * N < SPLIT_FROM_FLOPS or max(M, N) < 2:
        with one_thread_blas():
            return a @ b
    out = np.empty((M, N), dtype=np.result_type(a, b))       # (M, N)
    W = min(workers, max(M, N))
    if M >= N:                                               # W bands of rows
        parts = [(slice(k * M // W, (k + 1) * M // W), slice(None)) for k in range(W)]
    else:                                                    # W bands of columns
        parts = [(slice(None), slice(k * N // W, (k + 1) * N // W)) for k in range(W)]

    def run(part):
        rows, cols = part
        np.matmul(a[rows], b[:, cols], out=out[rows, cols])

    in_parallel(run, parts)
    return out


def _helper_threads(count):
    """The first ``count`` helper threads. Part k >= 1 always runs on helper k,
    so a worker finds in its thread's workspace the chunk it left there
    (conv.py: backward takes forward's last chunk from it)."""
    with _lock:
        while len(_helpers) < count:
            _helpers.append(ThreadPoolExecutor(max_workers=1, initializer=_mark_helper,
                                               thread_name_prefix=f"minidl-worker{len(_helpers) + 1}"))
        return _helpers[:count]


def _mark_helper():
    _this_thread.is_helper = True


def _limit_blas():
    global _limited, _saved
    with _lock:
        if _limited == 0:
            _saved = [lib.num_threads for lib in _blas_libraries()]
            for lib in _blas_libraries():
                lib.set_num_threads(1)
        _limited += 1


def _restore_blas():
    global _limited
    with _lock:
        _limited -= 1
        if _limited == 0:
            for lib, threads in zip(_blas_libraries(), _saved):
                lib.set_num_threads(threads)


def _after_fork_in_child():
    """A forked child has none of the parent's helper threads: start afresh."""
    global _lock, _helpers, _limited
    _lock, _helpers, _limited = threading.Lock(), [], 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
