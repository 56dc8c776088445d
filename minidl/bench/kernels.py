"""Kernel cases: conv2d, max/avg pooling and LRN, fast paths and naive references.

Each function here runs inside a child process (see harness.py) and writes
into its ``ResultFile``:

* ``run_kernel``: the public op (``minidl.nn.functional``) on NumPy arrays
  (the Numba CPU kernels), forward alone and forward + backward (gradients of
  every input), then the same on the GPU if there is one, then the optional
  peers (PyTorch, Chainer); for conv also the share of the time spent in
  im2col + col2im and the GEMM floor (its matmuls timed alone), and the
  memory of the case;
* ``run_naive``: the naive NumPy references of ``minidl.ops`` (plain loops),
  ONE run each. Where the full case would take minutes, they run on a slice
  of the problem (fewer images, fewer output channels) and the time is scaled
  by the ratio of work, which is exact for these loops: every (image, output
  channel) costs the same. The method is recorded beside the number.
"""
import threading
import time

import numpy as np

from .cases import kernel_case
from .harness import measure, peak_rss_mb, time_once, traced_peak_mb

SEED = 0


def make_arrays(case):
    """Random float32 inputs of ``case`` as NumPy arrays: x, and w, b for conv."""
    rng = np.random.default_rng(SEED)
    N, C, H, W = case.x_shape
    arrays = {"x": rng.standard_normal(case.x_shape, dtype=np.float32)}   # (N, C, H, W)
    if case.op == "conv":
        fan_in = C * case.k * case.k
        arrays["w"] = (rng.standard_normal((case.out, C, case.k, case.k), dtype=np.float32)
                       / np.float32(np.sqrt(fan_in)))                        # (O, C, k, k)
        arrays["b"] = rng.standard_normal(case.out, dtype=np.float32)      # (O,)
    return arrays


def fast_op(case):
    """The public minidl op of ``case``: a function of the Tensors of make_arrays."""
    import minidl.nn.functional as F
    if case.op == "conv":
        return lambda x, w, b: F.conv2d(x, w, b, stride=case.s, padding=case.p)
    if case.op == "maxpool":
        return lambda x: F.max_pool2d(x, case.k, case.s)
    if case.op == "avgpool":
        return lambda x: F.avg_pool2d(x, case.k, case.s)
    return lambda x: F.local_response_norm(x, case.k)


# ----------------------------------------------------------------------------
# the fast path: Numba on the CPU, CUDA on the GPU
# ----------------------------------------------------------------------------
def _passes(case, arrays, to_device, sync, repeats):
    """Time forward and forward + backward; returns ({pass: timing}, step fn)."""
    from minidl import Tensor
    op = fast_op(case)
    plain = {k: Tensor(to_device(v)) for k, v in arrays.items()}
    timings = {"fwd": measure(lambda: op(**plain), repeats=repeats, sync=sync)}
    leaves = {k: Tensor(to_device(v), requires_grad=True) for k, v in arrays.items()}
    gy = to_device(np.random.default_rng(SEED + 1).standard_normal(case.out_shape,
                                                                    dtype=np.float32))

    def step():                                  # forward + backward, grads cleared
        op(**leaves).backward(gy)
        for t in leaves.values():
            t.grad = None

    timings["fwd+bwd"] = measure(step, repeats=repeats, sync=sync)
    return timings, step


def _numba_layer():
    """The threading layer Numba chose (known once a parallel kernel ran)."""
    import numba
    try:
        return numba.threading_layer()
    except ValueError:
        return None


def im2col_share(step, repeats):
    """Fraction of ``step``'s time spent in ``ops.conv._im2col`` / ``_col2im``
    (the dispatchers every conv calls) and ``_images_last`` (the move of gy
    into the layout that col2im_interleaved reads), timed by wrapping them;
    None if the conv module has no such functions. With W workers (the
    chunks of the batch on W threads at once, ops/parallel.py) it is their
    time summed over the threads over W times the wall time: the share of
    the workers' time."""
    from ..ops import conv
    names = [n for n in ("_im2col", "_col2im", "_images_last") if callable(getattr(conv, n, None))]
    if not names:
        return None
    originals = {n: getattr(conv, n) for n in names}
    spent, threads, lock = [0.0], set(), threading.Lock()

    def timed(fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            with lock:                                    # workers add at once
                spent[0] += time.perf_counter() - t0
                threads.add(threading.get_ident())
            return out
        return wrapper

    try:
        for n in names:
            setattr(conv, n, timed(originals[n]))
        step()
        spent[0], runs, t0 = 0.0, 0, time.perf_counter()
        threads.clear()
        while runs < repeats or time.perf_counter() - t0 < 0.2:   # at least 0.2 s
            step()
            runs += 1
        return spent[0] / (time.perf_counter() - t0) / max(1, len(threads))
    finally:
        for n, fn in originals.items():
            setattr(conv, n, fn)


def _layout(a):
    """What a replay needs to rebuild an operand: shape, strides, dtype."""
    return tuple(a.shape), tuple(a.strides), a.dtype.str


def _strided(rng, layout):
    """A random array with ``layout``'s shape, strides and dtype (a view of
    a buffer just long enough): a transposed view stays a transposed view."""
    shape, strides, dtype = layout
    itemsize = np.dtype(dtype).itemsize
    span = 1 + sum((n - 1) * step // itemsize for n, step in zip(shape, strides))
    buffer = rng.standard_normal(span).astype(dtype)
    return np.lib.stride_tricks.as_strided(buffer, shape, strides)


def gemm_floor(step, repeats):
    """The GEMM floor of a conv step: seconds of the matmuls it runs, each
    timed alone. One run of ``step`` records every ``np.matmul`` call
    (operand layouts, and which thread made it); each distinct call is then
    replayed on random operands of the same layouts, with a one-thread BLAS
    (the median of ``repeats`` samples), and the times are summed thread by
    thread. The workers run at once, so the floor is the largest of those
    sums: what the step would take if everything outside its GEMMs were
    free. {"seconds", "calls", "threads"}; None if no matmul ran."""
    from ..ops.parallel import one_thread_blas
    original, calls = np.matmul, []

    def recording(a, b, *args, **kwargs):
        out = kwargs.get("out")
        calls.append((threading.get_ident(), _layout(a), _layout(b),
                      None if out is None else _layout(out)))
        return original(a, b, *args, **kwargs)

    np.matmul = recording
    try:
        step()
    finally:
        np.matmul = original
    if not calls:
        return None
    rng, timed, per_thread = np.random.default_rng(SEED), {}, {}
    with one_thread_blas():
        for thread, *layouts in calls:
            key = tuple(layouts)
            if key not in timed:
                a, b = _strided(rng, layouts[0]), _strided(rng, layouts[1])
                out = None if layouts[2] is None else _strided(rng, layouts[2])
                timed[key] = measure(lambda: np.matmul(a, b, out=out), repeats=repeats,
                                     min_sample_s=0.002)["median"]
            per_thread[thread] = per_thread.get(thread, 0.0) + timed[key]
    return {"seconds": max(per_thread.values()), "calls": len(calls), "threads": len(per_thread)}


def run_kernel(spec, result):
    """Numba CPU (and CUDA, peers) timings of one kernel case."""
    import minidl  # noqa: F401  (imports counted in the baseline memory)
    case, repeats = kernel_case(spec["case"]), spec["repeats"]
    baseline = peak_rss_mb()
    arrays = make_arrays(case)
    cpu, step = _passes(case, arrays, lambda a: a, None, repeats)
    result.update(cpu=cpu)
    memory = {"baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb(),
              "traced_step_mb": traced_peak_mb(step),
              "inputs_mb": sum(a.nbytes for a in arrays.values()) / 2**20}
    result.update(memory=memory, numba_threading_layer=_numba_layer())
    if case.op == "conv":
        plain = {k: minidl.Tensor(v) for k, v in arrays.items()}

        def fwd_only():
            fast_op(case)(**plain)
        result.update(im2col_share={"fwd": im2col_share(fwd_only, repeats),
                                    "fwd+bwd": im2col_share(step, repeats)},
                      gemm_floor={"fwd": gemm_floor(fwd_only, repeats),
                                  "fwd+bwd": gemm_floor(step, repeats)})
    if spec.get("gpu"):
        from ..backend import require_cupy
        cp = require_cupy()
        gpu, _ = _passes(case, arrays, cp.asarray, cp.cuda.Device().synchronize, repeats)
        result.update(gpu=gpu)
    for peer in spec.get("peers", []):
        from . import peers
        try:
            result.update(**{peer: peers.kernel(peer, case, arrays, repeats, spec["threads"])})
        except Exception as e:
            result.update(**{peer: {"error": f"{type(e).__name__}: {e}"}})


# ----------------------------------------------------------------------------
# the naive references, one run, on a slice of the problem if it is big
# ----------------------------------------------------------------------------
def _naive_entry(seconds, scale, part=""):
    """One naive timing: ``part`` names the slice that ran ("" = the whole case)."""
    method = f"1 run on {part}, x{scale:.4g}" if part else "1 run, whole case"
    return {"seconds": seconds * scale, "measured_s": seconds, "scale": scale, "part": part,
            "method": method}


def _check(result, fast, naive):
    """Record how far the fast forward is from the naive one on the same input."""
    result.update(check={"max_abs_diff": float(np.abs(fast - naive).max()),
                         "max_abs_ref": float(np.abs(naive).max())})


def run_naive(spec, result):
    """Time the naive references of ``spec["case"]``: at most about
    ``spec["budget"]`` innermost Python iterations per run, then scaled; and
    check the fast forward against the naive output."""
    from minidl import Tensor
    case, budget = kernel_case(spec["case"]), spec["budget"]
    arrays = make_arrays(case)
    x = arrays["x"]
    N, C, H, W = x.shape
    OH, OW = case.out_hw
    gy = np.random.default_rng(SEED + 1).standard_normal(case.out_shape, dtype=np.float32)
    if case.op == "conv":
        return _naive_conv(case, arrays, gy, budget, result)
    out = {}                                   # the naive forward output
    if case.op == "maxpool":
        from ..ops.pool import max_pool2d_backward_naive, max_pool2d_naive
        geo = (case.k, case.k, case.s, case.s, 0, 0, OH, OW)
        t = time_once(lambda: out.update(zip(("y", "argmax"), max_pool2d_naive(x, *geo))))
        n = max(1, min(N, budget // (C * OH * OW)))        # its loops run over n, c, oh, ow
        tb = time_once(lambda: max_pool2d_backward_naive(gy[:n], out["argmax"][:n], H, W))
        bwd = _naive_entry(tb, N / n, f"N={n}" if n < N else "")
    elif case.op == "avgpool":
        from ..ops.pool import avg_pool2d_backward_naive, avg_pool2d_naive
        window = (case.k, case.k, case.s, case.s, 0, 0)    # kh, kw, sh, sw, ph, pw
        t = time_once(lambda: out.update(y=avg_pool2d_naive(x, *window, OH, OW, True)))
        tb = time_once(lambda: avg_pool2d_backward_naive(gy, *window, H, W, True))
        bwd = _naive_entry(tb, 1)
    else:
        from ..ops.lrn import lrn_backward_naive, lrn_naive
        settings = (case.k, 1e-4, 0.75, 2.0)                  # size, alpha, beta, k
        t = time_once(lambda: out.update(y=lrn_naive(x, *settings)))
        tb = time_once(lambda: lrn_backward_naive(x, gy, *settings))
        bwd = _naive_entry(tb, 1)
    result.update(fwd=_naive_entry(t, 1), bwd=bwd)
    _check(result, fast_op(case)(Tensor(x)).data, out["y"])


def _naive_conv(case, arrays, gy, budget, result):
    """conv2d_naive and conv2d_naive_backward on n images x o output channels,
    scaled by N*O / (n*o); the fast op's forward on the same slice is checked
    against the naive output (max abs difference recorded)."""
    from minidl import Tensor
    from ..ops.conv import conv2d_naive, conv2d_naive_backward, conv_geometry
    x, w, b = arrays["x"], arrays["w"], arrays["b"]
    N, C = x.shape[:2]
    O = w.shape[0]
    OH, OW = case.out_hw
    units = max(1, budget // (OH * OW * C * case.k * case.k))   # (image, channel) pairs
    o = min(O, units)
    n = min(N, max(1, units // o))
    scale = N * O / (n * o)
    part = f"N={n}, O={o}" if scale > 1 else ""
    xs, ws, bs = x[:n], w[:o], b[:o]
    geo = conv_geometry(xs.shape, ws.shape, stride=case.s, padding=case.p)
    y = [None]
    t = time_once(lambda: y.__setitem__(0, conv2d_naive(xs, ws, bs, geo, 1)))
    result.update(fwd=_naive_entry(t, scale, part))
    _check(result, fast_op(case)(Tensor(xs), Tensor(ws), Tensor(bs)).data, y[0])
    tb = time_once(lambda: conv2d_naive_backward(xs, ws, gy[:n, :o], geo, 1))
    result.update(bwd=_naive_entry(tb, scale, part))


# ----------------------------------------------------------------------------
# cold start: a fresh interpreter, import + first conv2d forward and backward
# ----------------------------------------------------------------------------
COLD_START_CODE = """
import json, time
t0 = time.perf_counter()
import numpy as np
import minidl
import minidl.nn.functional as F
t1 = time.perf_counter()
rng = np.random.default_rng(0)
x = minidl.Tensor(rng.standard_normal((8, 16, 28, 28), dtype=np.float32), requires_grad=True)
w = minidl.Tensor(rng.standard_normal((32, 16, 5, 5), dtype=np.float32), requires_grad=True)
def step():
    F.conv2d(x, w, padding=2).sum().backward()
step()
t2 = time.perf_counter()
step()
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_conv_s": t2 - t1, "second_conv_s": t3 - t2}))
"""
COLD_START_SHAPE = "conv2d fwd+bwd 8x16x28x28 -> 32, k5 p2 (Inception 5x5)"


def loop(name, seconds=10.0):
    """Run the fwd+bwd step of kernel case ``name`` for ``seconds``: a target
    for a sampling profiler, e.g.::

        py-spy record --native -- python -c \
            "from minidl.bench.kernels import loop; loop('conv/resnet_3x3')"
    """
    from minidl import Tensor
    case = kernel_case(name)
    leaves = {k: Tensor(v, requires_grad=True) for k, v in make_arrays(case).items()}
    gy = np.ones(case.out_shape, dtype=np.float32)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fast_op(case)(**leaves).backward(gy)
        for t in leaves.values():
            t.grad = None
