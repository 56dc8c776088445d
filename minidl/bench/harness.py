"""How the benchmark measures: timing, environment, the SGEMM roofline, and
one subprocess per case.

Timing (``measure``), the timeit method: call the function ``warmup`` times
(Numba compiles, caches fill, CuPy's pool grows), pick an inner loop count
``number`` so that one sample lasts at least ``min_sample_s``, then take
``repeats`` samples with the garbage collector off and report the median,
min and max of (sample time / number). On the GPU ``sync`` (the device's
synchronize) runs inside the timed region so kernels are counted to their end.

Processes. The parent process (``runner``) only orchestrates: every
measurement runs in a fresh child ``python -c "...harness import child..."``
that gets a JSON spec and writes a JSON result file. So

* each case's peak memory is its own (``ru_maxrss`` of the child, in MB);
* ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` are removed from the child's
  environment before it imports NumPy (``clean_environment``): OpenBLAS picks
  its kernel for the real CPU, and the child reports which one it saw;
* a case that runs too long is killed (``timeout``); whatever it had written
  to its result file by then is kept.
"""
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

# variables that make OpenBLAS pick another CPU's kernel or cache size
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# variables that set the thread counts of BLAS and Numba
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS")


def clean_environment(threads=None):
    """Remove BLAS_OVERRIDES from os.environ (so children inherit the clean
    environment); set the thread variables if ``threads`` is given.
    Returns the removed {name: value}."""
    removed = {name: os.environ.pop(name) for name in BLAS_OVERRIDES if name in os.environ}
    if threads is not None:
        for name in THREAD_VARIABLES:
            os.environ[name] = str(threads)
    return removed


# ----------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------
def measure(fn, repeats=5, warmup=1, min_sample_s=0.01, sync=None):
    """Seconds per call of ``fn()``: {"median", "min", "max", "repeats", "number"}.

    min_sample_s = 0: one call per sample (for slow calls, no sizing calls)."""
    sync = sync or (lambda: None)
    for _ in range(max(warmup, 1)):
        fn()
    sync()
    number = 1
    if min_sample_s > 0:                     # the fastest of 3 calls sizes the inner loop
        once = min(time_once(fn, sync) for _ in range(3))
        number = max(1, int(min_sample_s / once)) if once > 0 else 1000
    samples = []
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            sync()
            samples.append((time.perf_counter() - t0) / number)
    finally:
        if was_enabled:
            gc.enable()
    return {"median": statistics.median(samples), "min": min(samples),
            "max": max(samples), "repeats": repeats, "number": number}


def time_once(fn, sync=None):
    """Seconds of a single call (for the naive references: no warm-up)."""
    t0 = time.perf_counter()
    fn()
    if sync:
        sync()
    return time.perf_counter() - t0


def peak_rss_mb():
    """Peak resident memory of this process so far (ru_maxrss is KB on Linux)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def traced_peak_mb(fn):
    """Peak of the memory newly allocated during ``fn()`` (tracemalloc sees
    NumPy's buffers too), in MB. Slow: never inside a timed region."""
    import tracemalloc
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


# ----------------------------------------------------------------------------
# environment: machine, versions, threads, the BLAS kernel
# ----------------------------------------------------------------------------
def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module_name):
    try:
        module = __import__(module_name)
        return getattr(module, "__version__", "?")
    except Exception:
        return None


def environment():
    """What the numbers depend on, seen from inside a (child) process."""
    import numba
    import numpy as np
    from threadpoolctl import threadpool_info

    from ..backend import cuda_is_available
    blas = [{k: lib.get(k) for k in ("internal_api", "architecture", "version",
                                       "num_threads", "threading_layer", "filepath")}
            for lib in threadpool_info() if lib.get("user_api") == "blas"]
    env = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "scipy": _version("scipy"),
        "cupy": _version("cupy"),
        "torch": _version("torch"),
        "chainer": _version("chainer"),
        "blas": blas,
        "blas_threads": blas[0]["num_threads"] if blas else None,
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer": numba.config.THREADING_LAYER,
        "blas_overrides_seen": {k: os.environ[k] for k in BLAS_OVERRIDES if k in os.environ},
        "thread_variables": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
        "gpu": None,
    }
    if cuda_is_available():
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(0)
        env["gpu"] = {"name": props["name"].decode() if isinstance(props["name"], bytes)
                      else str(props["name"]),
                      "memory_gb": props["totalGlobalMem"] / 2**30,
                      "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion()}
    return env


# ----------------------------------------------------------------------------
# the roofline: SGEMM peak of this run
# ----------------------------------------------------------------------------
def sgemm_peak(n=2048, repeats=5, gpu=False):
    """GFLOP/s of an (n, n) @ (n, n) float32 matmul (2 n^3 FLOPs): the ceiling
    every conv figure is a percentage of. CPU: NumPy's BLAS; GPU: cuBLAS."""
    from ..backend import get_array_module, require_cupy
    import numpy as np
    xp = require_cupy() if gpu else get_array_module(np.empty(0))
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((n, n), dtype=np.float32))   # (n, n)
    b = xp.asarray(rng.standard_normal((n, n), dtype=np.float32))   # (n, n)
    c = xp.empty((n, n), dtype=np.float32)
    sync = xp.cuda.Device().synchronize if gpu else None
    t = measure(lambda: xp.matmul(a, b, out=c), repeats=repeats, warmup=2,
                min_sample_s=0.0, sync=sync)
    flops = 2.0 * n ** 3
    return {"n": n, "time": t, "gflops": flops / t["median"] / 1e9,
            "gflops_best": flops / t["min"] / 1e9}


# ----------------------------------------------------------------------------
# one subprocess per case
# ----------------------------------------------------------------------------
CHILD_CODE = "from minidl.bench.harness import child; child()"


def run_child(spec, timeout, workdir):
    """Run ``spec`` (a JSON-able dict with "kind") in a fresh interpreter.

    Returns the child's result dict plus "wall_s" (the whole process,
    interpreter start included) and "error" if it failed or timed out."""
    out = Path(workdir) / f"result-{os.getpid()}-{time.monotonic_ns()}.json"
    package_root = str(Path(__file__).resolve().parents[2])      # the folder holding minidl/
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.update(spec.get("env", {}))
    t0 = time.perf_counter()
    error = None
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD_CODE, json.dumps(spec), str(out)],
                              env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            error = f"exit {proc.returncode}: " + " | ".join(tail)
    except subprocess.TimeoutExpired:
        error = f"timeout: killed after {timeout:.0f} s"
    wall = time.perf_counter() - t0
    result = json.loads(out.read_text()) if out.exists() else {}
    out.unlink(missing_ok=True)
    result["wall_s"] = wall
    if error and "error" not in result:
        result["error"] = error
    return result


class ResultFile:
    """The child's result: a dict rewritten to disk after every ``update``,
    so a case killed by its timeout still returns what it had measured."""

    def __init__(self, path):
        self.path, self.data = Path(path), {}

    def update(self, **values):
        self.data.update(values)
        self.data["peak_rss_mb"] = peak_rss_mb()
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, default=float))
        tmp.replace(self.path)


def child():
    """Entry point of a child process: argv = [spec JSON, result path]."""
    spec, result = json.loads(sys.argv[1]), ResultFile(sys.argv[2])
    try:
        kind = spec["kind"]
        if kind == "env":
            result.update(env=environment())
        elif kind == "sgemm":
            result.update(cpu=sgemm_peak(spec["n"], spec["repeats"]))
            if spec.get("gpu"):
                result.update(gpu=sgemm_peak(spec["gpu_n"], spec["repeats"], gpu=True))
        elif kind in ("kernel", "naive"):
            from . import kernels
            getattr(kernels, f"run_{kind}")(spec, result)
        elif kind == "network":
            from .networks import run_network
            run_network(spec, result)
        else:
            raise ValueError(f"unknown child kind {kind!r}")
    except Exception as e:
        result.update(error=f"{type(e).__name__}: {e}",
                      traceback=traceback.format_exc().splitlines()[-6:])
    sys.exit(0)
