"""Timing of conv2d (float32, CPU): ms, GFLOP/s and % of a measured SGEMM peak.

    python benchmarks/conv_timing.py               # the six cases below, wall clock
    OPENBLAS_NUM_THREADS=1 python benchmarks/conv_timing.py --cpu-time
                                                   # one thread, CPU time of this process
    python benchmarks/conv_timing.py --cold-start  # import + first conv2d, fresh process

For each case: forward+backward (gradients of input, weight and bias) time,
its GFLOP/s (3 GEMMs of 2*N*O*C_g*kh*kw*OH*OW flops), the ratio to the SGEMM
peak measured in the same run (a 2048^3 float32 matmul), and the share of
that time spent inside im2col + col2im (and the move of gy that
col2im_interleaved needs; timed by wrapping them, as `minidl bench`
does), and the GEMM floor: the conv's own matmuls timed alone, one-thread
BLAS, the largest sum over the worker threads (as `minidl bench`; the
best time over it in the last column). Times are the best of REPEATS
runs; the median is printed too.
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the environment
before NumPy loads OpenBLAS (they select a slower kernel).

Measured on the project's first machine: 2 cores (AMD EPYC, AVX-512;
OpenBLAS 0.3.31, SkylakeX kernel), shared with about five other
engineers' jobs that kept both cores busy nearly all the time. Two-thread
wall-clock times then swing 2-10x from
run to run (the 2048^3 SGEMM itself gave 60 to 190 GFLOP/s): a thread of
every GEMM waits for its partner to be scheduled. With one thread, the CPU
time of this process does not count the others' jobs and repeats within a
few % -- those are the figures to compare:

    OPENBLAS_NUM_THREADS=1 python benchmarks/conv_timing.py --cpu-time
    SGEMM peak (2048^3 float32 matmul): 103 GFLOP/s
    case              fwd+bwd ms   median  GFLOP/s  % peak  im2col+col2im
    LeNet conv2              1.9      2.0       49     48%            25%
    AlexNet conv1           58.1     58.3       87     84%             9%
    VGG conv3_1            463.0    464.8       96     93%             4%
    ResNet 1x1              30.2     30.4       82     79%             0%
    ResNet 3x3              64.1     65.8       87     84%             9%
    Inception 5x5            6.7      6.8       72     70%            16%

(Before the cache-sized chunks, the batched GEMM and the phase-plane
im2col/col2im of ops/im2col.py, the same command gave LeNet conv2 2.5 ms and
45%, AlexNet conv1 76.4 ms and 23%, ResNet 3x3 81.7 ms, Inception 5x5 9.0 ms;
RESULTS.md has both tables.)

On the current machine (AMD EPYC Zen 3, AVX2; OpenBLAS 0.3.31, Haswell
kernel), the same command in the ninth session, with the GEMM floor (the
second of two runs one after the other, which agreed within 0.1 ms on
LeNet and Inception and within 9% elsewhere; a third, a few minutes later
in a noisier spell, gave LeNet conv2 3.8 ms and Inception 5x5 12.0 ms
over floors of 1.8 and 8.1):

    SGEMM peak (2048^3 float32 matmul): 90-93 GFLOP/s in those runs
    case              fwd+bwd ms   median  GFLOP/s  % peak  im2col+col2im  GEMM floor ms  x floor
    LeNet conv2              2.4      2.5       38     40%            16%            1.6     1.56
    AlexNet conv1           68.8     70.7       74     78%            12%           62.4     1.10
    VGG conv3_1            538.3    540.7       82     87%             6%          508.1     1.06
    ResNet 1x1              35.8     36.3       69     73%             0%           36.8     0.97
    ResNet 3x3              78.4     80.4       71     75%            11%           75.3     1.04
    Inception 5x5            8.7      9.0       56     59%            17%            7.7     1.13

On one core minidl runs within 13% of its GEMM floor on all but LeNet
conv2, whose GEMMs (16 output channels) are short next to its copies.

Two threads, wall clock: the figures of `python benchmarks/run.py`, in
benchmarks/RESULTS.md (several runs, with their spread). Since the eighth
session conv2d shares a batch between the cores, each with a one-thread
BLAS (ops/parallel.py); the share printed is then per worker (the copy
time summed over the threads, over W times the wall time).

Cold start (--cold-start; import minidl + first conv2d forward+backward):
2.2-3.8 s with an empty Numba cache, 0.65-1.25 s with a warm one (most of it
importing NumPy and Numba and Numba's first-call set-up).
"""
import os
import sys

for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):   # before numpy loads OpenBLAS
    os.environ.pop(_var, None)

import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import minidl  # noqa: E402
from minidl.bench.kernels import gemm_floor, im2col_share  # noqa: E402
from minidl.ops import conv  # noqa: E402

REPEATS = 5
clock = time.process_time if "--cpu-time" in sys.argv else time.perf_counter
# name: (N, C, H, W, O, k, stride, padding)
CASES = {
    "LeNet conv2":     (64, 6, 14, 14, 16, 5, 1, 0),
    "AlexNet conv1":   (8, 3, 227, 227, 96, 11, 4, 0),
    "VGG conv3_1":     (8, 128, 56, 56, 256, 3, 1, 1),
    "ResNet 1x1":      (8, 256, 56, 56, 64, 1, 1, 0),
    "ResNet 3x3":      (8, 64, 56, 56, 64, 3, 1, 1),
    "Inception 5x5":   (8, 16, 28, 28, 32, 5, 1, 2),
}


def best_time(fn, repeats=REPEATS):
    """(best, median) seconds of fn() after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times), float(np.median(times))


def sgemm_peak():
    """GFLOP/s of a 2048^3 float32 matmul (best of 10)."""
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    best, _ = best_time(lambda: a @ a, repeats=10)
    return 2 * 2048**3 / best / 1e9


def time_case(N, C, H, W, O, k, stride, padding):
    """(fwd+bwd best s, median s, GFLOP, im2col+col2im share, GEMM floor s)
    for one conv; the floor: minidl.bench.kernels.gemm_floor."""
    rng = np.random.default_rng(0)
    x = minidl.Tensor(rng.standard_normal((N, C, H, W)).astype(np.float32), requires_grad=True)
    w = minidl.Tensor(rng.standard_normal((O, C, k, k)).astype(np.float32), requires_grad=True)
    b = minidl.Tensor(rng.standard_normal(O).astype(np.float32), requires_grad=True)
    geo = conv.conv_geometry(x.shape, w.shape, stride, padding)
    gy = rng.standard_normal((N, O, geo.OH, geo.OW)).astype(np.float32)

    def step():
        conv.conv2d(x, w, b, stride, padding).backward(gy)
        x.grad = w.grad = b.grad = None

    best, median = best_time(step)
    gflop = 3 * 2 * N * O * C * k * k * geo.OH * geo.OW / 1e9
    return best, median, gflop, im2col_share(step, REPEATS), gemm_floor(step, REPEATS)["seconds"]


def cold_start():
    """Seconds of `import minidl` + first conv2d forward+backward in a fresh
    process, with an empty Numba cache and then with the cache it filled."""
    code = ("import time; t = time.perf_counter(); import numpy as np; import minidl; "
            "import minidl.nn.functional as F; "
            "x = minidl.randn(2, 3, 8, 8, requires_grad=True); w = minidl.randn(4, 3, 3, 3, requires_grad=True); "
            "F.conv2d(x, w, padding=1).sum().backward(); print(time.perf_counter() - t)")
    repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=repo)
        runs = [float(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                     capture_output=True, text=True).stdout) for _ in range(3)]
    print(f"import minidl + first conv2d fwd+bwd: empty Numba cache {runs[0]:.2f} s, "
          f"warm cache {min(runs[1:]):.2f} s")


def main():
    if "--cold-start" in sys.argv:
        cold_start()
        return
    print(f"clock: {'CPU time of this process' if clock is time.process_time else 'wall'}; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset (one per core)')}")
    peak = sgemm_peak()
    print(f"SGEMM peak (2048^3 float32 matmul): {peak:.0f} GFLOP/s")
    print(f"{'case':16s} {'fwd+bwd ms':>11s} {'median':>8s} {'GFLOP/s':>8s} {'% peak':>7s} "
          f"{'im2col+col2im':>14s} {'GEMM floor ms':>14s} {'x floor':>8s}")
    for name, case in CASES.items():
        best, median, gflop, share, floor = time_case(*case)
        print(f"{name:16s} {best * 1e3:11.1f} {median * 1e3:8.1f} {gflop / best:8.0f} "
              f"{100 * gflop / best / peak:6.0f}% {100 * share:13.0f}% {floor * 1e3:14.1f} "
              f"{best / floor:8.2f}")


if __name__ == "__main__":
    main()
