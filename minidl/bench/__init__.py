"""The benchmark suite: ``minidl bench`` (or ``python benchmarks/run.py``).

    minidl bench                      everything (about 10 minutes on 2 cores)
    minidl bench --quick              fewer repeats, small batches: checks the code
    minidl bench --only 'conv/*'      cases whose name matches (see --list)
    minidl bench --no-naive --out DIR

What it measures, per case, each in its own process: the kernels of the
case-study networks (naive NumPy reference, Numba CPU, CUDA GPU when there
is one, PyTorch / Chainer CPU when they import), whole-network training steps
and inference, memory, cold start, and the SGEMM peak every conv figure is a
percentage of. Writes results.json, RESULTS.md and PNG charts.

    harness.py   timing method, environment, SGEMM roofline, child processes
    cases.py     the case table (shapes, FLOPs) and the targets
    kernels.py   kernel cases: fast paths, naive references, cold start
    networks.py  network cases: train step, inference, GEMM floor, overhead
    peers.py     optional PyTorch / Chainer columns
    report.py    results.json, RESULTS.md, charts
    runner.py    the command line
"""
from .runner import main

__all__ = ["main"]
