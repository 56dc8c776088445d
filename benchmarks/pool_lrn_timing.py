"""Timing of pooling and LRN (float32, CPU): Numba path vs the naive reference.

    python benchmarks/pool_lrn_timing.py

For each case: forward, backward and forward+backward ms of the op (the
Numba kernels through the autograd Function, allocation included), best of
REPEATS after a warm-up, and the forward+backward ms of the naive reference
(loops over output positions / channels, NumPy over the other axes), timed
once. Numba uses as many threads as cores (NUMBA_NUM_THREADS).

Reference figures for fwd+bwd on this kind of machine: max-pool 3x3/2 on
8,96,55,55: PyTorch 8.2 ms; LRN size 5 on 8,96,55,55: PyTorch 46 ms,
Chainer 20 ms. The machine is shared, so every figure is noisy.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import minidl  # noqa: E402
import minidl.nn.functional as F  # noqa: E402
import numba  # noqa: E402
from minidl.ops import lrn, pool  # noqa: E402

REPEATS = 7


def max_pool_naive(x, gy, k, s):
    t = minidl.Tensor(x)
    geometry = pool._geometry("max_pool2d", t, k, s, 0, False)
    _, argmax = pool.max_pool2d_naive(x, *geometry)
    pool.max_pool2d_backward_naive(gy, argmax, *x.shape[2:])


def avg_pool_naive(x, gy, k, s):
    geometry = pool._geometry("avg_pool2d", minidl.Tensor(x), k, s, 0, False)
    pool.avg_pool2d_naive(x, *geometry, True)
    pool.avg_pool2d_backward_naive(gy, *geometry[:6], *x.shape[2:], True)


def lrn_naive(x, gy, size):
    lrn.lrn_naive(x, size, 1e-4, 0.75, 2.0)
    lrn.lrn_backward_naive(x, gy, size, 1e-4, 0.75, 2.0)


# name: (input shape, the op, the naive reference on (x, gy))
CASES = {
    "max-pool 3x3/2  8,96,55,55": ((8, 96, 55, 55), lambda t: F.max_pool2d(t, 3, 2),
                                   lambda x, gy: max_pool_naive(x, gy, 3, 2)),
    "max-pool 2x2/2  8,64,224,224": ((8, 64, 224, 224), lambda t: F.max_pool2d(t, 2, 2),
                                     lambda x, gy: max_pool_naive(x, gy, 2, 2)),
    "avg-pool 2x2/2  64,6,28,28": ((64, 6, 28, 28), lambda t: F.avg_pool2d(t, 2, 2),
                                   lambda x, gy: avg_pool_naive(x, gy, 2, 2)),
    "LRN size 5      8,96,55,55": ((8, 96, 55, 55), lambda t: F.local_response_norm(t, 5),
                                   lambda x, gy: lrn_naive(x, gy, 5)),
}


def time_fast(op, x, gy):
    """Best (forward, backward, total) seconds of op on a leaf holding x."""
    t = minidl.Tensor(x, requires_grad=True)
    best = None
    for _ in range(REPEATS + 1):                     # the first run is the warm-up
        t.grad = None
        t0 = time.perf_counter()
        y = op(t)
        t1 = time.perf_counter()
        y.backward(gy)
        t2 = time.perf_counter()
        run = (t1 - t0, t2 - t1, t2 - t0)
        best = run if best is None else tuple(min(a, b) for a, b in zip(best, run))
    return best


def main():
    rng = np.random.default_rng(0)
    print(f"float32, Numba {numba.__version__} with {numba.get_num_threads()} threads, "
          f"NumPy {np.__version__}; best of {REPEATS} (naive: one run)")
    print(f"{'case':30s} {'fwd':>8s} {'bwd':>8s} {'fwd+bwd':>8s} {'naive':>9s} {'speed-up':>8s}")
    for name, (shape, op, naive) in CASES.items():
        x = rng.standard_normal(shape).astype(np.float32)
        gy = rng.standard_normal(op(minidl.Tensor(x)).shape).astype(np.float32)
        fwd, bwd, total = time_fast(op, x, gy)
        t0 = time.perf_counter()
        naive(x, gy)
        slow = time.perf_counter() - t0
        print(f"{name:30s} {fwd * 1e3:8.1f} {bwd * 1e3:8.1f} {total * 1e3:8.1f} "
              f"{slow * 1e3:9.0f} {slow / total:7.0f}x")


if __name__ == "__main__":
    main()
