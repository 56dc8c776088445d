"""Network cases: a training step and inference of the case-study networks.

A training step is what a training loop does per batch::

    opt.zero_grad(); loss = cross_entropy(model(x), target); loss.backward(); opt.step()

with SGD (lr 0.01, momentum 0.9) on random float32 images and labels;
GoogLeNet's loss adds its two auxiliary heads (``googlenet_loss``).
Inference is ``model.eval()`` and a forward pass under ``no_grad``;
throughput = N / (median time of one batch).

Two diagnostics answer the targets of the issue:

* ``gemm_sum`` (ResNet-50): the GEMMs a step cannot avoid, timed alone.
  One step is run with ``Function.__call__`` wrapped to record the shapes of
  every conv and linear op; conv (N, C, H, W) -> (N, O, OH, OW), kernel
  kh x kw, groups G, is G matmuls (M, K) @ (K, L) of each shape

      forward    w (O/G, K_g) @ col (K_g, L)       K_g = C/G*kh*kw, L = N*OH*OW
      grad w     gy (O/G, L) @ col^T (L, K_g)
      grad x     w^T (K_g, O/G) @ gy (O/G, L)      (only if x requires grad)

  and linear x (B, in) -> (B, out) is x @ w^T, gy^T @ x and gy @ w. An
  operand marked ^T is a transposed view of a row-major array, as in the
  ops, so BLAS runs the same kind of kernel (NN, NT or TN). Each distinct
  (shape, layout) is timed as one float32 NumPy matmul; the sum over the
  step is the floor the step's time is compared with (step / GEMM sum; the
  step is timed again right after the GEMMs, to see the same machine load).
* ``overhead`` (LeNet-5): the share of the step spent outside the kernels.
  Every Function's forward and backward (the array work) and the optimizer's
  step are timed by wrapping them; the rest of the step is the framework's
  own overhead: Python calls of modules, graph recording, the backward
  engine, gradient bookkeeping.
"""
import time

import numpy as np

from .cases import network_case
from .harness import measure, peak_rss_mb

SEED = 0


def build(case, batch):
    """(model, x, target) for ``case``: random images (N, C, S, S) and labels (N,)."""
    import minidl
    from .. import models
    minidl.manual_seed(SEED)
    model = models.get(case.model, num_classes=case.num_classes)
    rng = np.random.default_rng(SEED)
    x = minidl.Tensor(rng.standard_normal((batch, case.channels, case.size, case.size),
                                          dtype=np.float32))
    target = rng.integers(0, case.num_classes, size=batch)
    return model, x, target


def loss_of(outputs, target):
    """Cross-entropy; GoogLeNet's (logits, aux2, aux1) adds 0.3 x each aux loss."""
    from ..models import googlenet_loss
    return googlenet_loss(outputs, target)


def train_step(model, x, target, opt):
    """One step: forward, loss, backward, SGD update."""
    def step():
        opt.zero_grad()
        loss_of(model(x), target).backward()
        opt.step()
    return step


def _timings(model, x, target, repeats, sync=None):
    """Inference and training-step timings of ``model`` on (x, target)."""
    import minidl
    from ..optim import SGD
    batch = x.shape[0]
    model.eval()
    with minidl.no_grad():
        infer = measure(lambda: model(x), repeats=repeats, min_sample_s=0, sync=sync)
    model.train()
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = train_step(model, x, target, opt)
    train = measure(step, repeats=repeats, min_sample_s=0, sync=sync)
    return ({"inference": {"time": infer, "images_per_s": batch / infer["median"]},
             "train": {"time": train, "images_per_s": batch / train["median"]}}, step, opt)


def run_network(spec, result):
    """CPU (and GPU, peers) timings, memory and diagnostics of one network."""
    case, batch, repeats = network_case(spec["case"]), spec["batch"], spec["repeats"]
    baseline = peak_rss_mb()
    model, x, target = build(case, batch)
    cpu, step, opt = _timings(model, x, target, repeats)
    result.update(batch=batch, cpu=cpu,
                  memory={"baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb()})
    if case.model == "resnet50":
        result.update(gemm=gemm_sum(step, repeats))
    if case.model == "lenet5":
        result.update(overhead=overhead(step, opt, repeats))
    if spec.get("gpu"):
        from .. import Tensor
        from ..backend import require_cupy
        sync = require_cupy().cuda.Device().synchronize
        model, x, target = build(case, batch)
        target = Tensor(target).to("cuda")                      # labels on the device too
        gpu, _, _ = _timings(model.to("cuda"), x.to("cuda"), target, repeats, sync)
        result.update(gpu=gpu)
    for peer in spec.get("peers", []):
        from . import peers
        try:
            result.update(**{peer: peers.network(peer, case, batch, repeats, spec["threads"])})
        except Exception as e:
            result.update(**{peer: {"error": f"{type(e).__name__}: {e}"}})


# ----------------------------------------------------------------------------
# ResNet-50: the sum of its GEMM times
# ----------------------------------------------------------------------------
def record_gemms(step):
    """Run ``step`` once; return {(M, K, L, a_transposed, b_transposed): count}
    of the matmuls its conv and linear ops must do (module docstring)."""
    from ..ops.conv import Conv2d
    from ..ops.layers import Linear
    from ..tensor import Function
    gemms = {}

    def add(gemm, count=1):
        gemms[gemm] = gemms.get(gemm, 0) + count

    original = Function.__call__

    def recording(self, *inputs):
        out = original(self, *inputs)
        if isinstance(self, Conv2d):
            (N, C, _, _), (O, Cg, kh, kw) = inputs[0].shape, inputs[1].shape
            G, K, L = C // Cg, Cg * kh * kw, N * out.shape[2] * out.shape[3]
            add((O // G, K, L, False, False), G)             # forward  w @ col
            add((O // G, L, K, False, True), G)              # grad w   gy @ col^T
            if inputs[0].requires_grad:
                add((K, O // G, L, True, False), G)          # grad x   w^T @ gy
        elif isinstance(self, Linear):
            (B, n_in), n_out = inputs[0].shape, inputs[1].shape[0]
            add((B, n_in, n_out, False, True))               # forward  x @ w^T
            add((n_out, B, n_in, True, False))               # grad w   gy^T @ x
            if inputs[0].requires_grad:
                add((B, n_out, n_in, False, False))          # grad x   gy @ w
        return out

    Function.__call__ = recording
    try:
        step()
    finally:
        Function.__call__ = original
    return gemms


def _operand(rng, rows, cols, transposed):
    """A (rows, cols) float32 matrix, or the transposed view of a (cols, rows) one."""
    if transposed:
        return rng.standard_normal((cols, rows), dtype=np.float32).T
    return rng.standard_normal((rows, cols), dtype=np.float32)


def gemm_sum(step, repeats):
    """Seconds of the step's GEMMs timed alone, and the ratio step / GEMM sum
    (of the medians, and of the minimums)."""
    gemms = record_gemms(step)
    rng = np.random.default_rng(SEED)
    median, best, flops = 0.0, 0.0, 0.0
    for (M, K, L, ta, tb), count in gemms.items():
        a, b = _operand(rng, M, K, ta), _operand(rng, K, L, tb)   # (M, K), (K, L)
        c = np.empty((M, L), dtype=np.float32)
        t = measure(lambda: np.matmul(a, b, out=c), repeats=repeats, min_sample_s=0.005)
        median += count * t["median"]
        best += count * t["min"]
        flops += count * 2.0 * M * K * L
    t = measure(step, repeats=repeats, min_sample_s=0)
    return {"gemm_sum_s": median, "gemm_sum_min_s": best, "gemms": sum(gemms.values()),
            "shapes": len(gemms), "gemm_gflops": flops / median / 1e9, "step": t,
            "step_s": t["median"], "ratio": t["median"] / median, "ratio_min": t["min"] / best}


# ----------------------------------------------------------------------------
# LeNet-5: the framework's own overhead
# ----------------------------------------------------------------------------
def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def overhead(step, opt, repeats):
    """Split ``repeats`` steps into kernels (Function.forward/backward, also
    per op), optimizer (opt.step) and the rest, the framework's overhead."""
    from ..tensor import Function
    spent = {"kernels": 0.0, "optimizer": 0.0}
    per_op = {}                       # "Conv2d.backward" -> seconds
    depth = [0]                       # a forward calling super().forward counts once

    def timed(fn, bucket, op=None):
        def wrapper(*args, **kwargs):
            depth[0] += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[bucket] += time.perf_counter() - t0
                    if op:
                        per_op[op] = per_op.get(op, 0.0) + time.perf_counter() - t0
        return wrapper

    patched = [(cls, name, cls.__dict__[name]) for cls in _subclasses(Function)
               for name in ("forward", "backward") if name in cls.__dict__]
    for cls, name, fn in patched:
        setattr(cls, name, timed(fn, "kernels", f"{cls.__name__}.{name}"))
    opt.step = timed(opt.step, "optimizer")
    try:
        step()                                       # warm
        spent.update(kernels=0.0, optimizer=0.0)
        per_op.clear()
        t0 = time.perf_counter()
        for _ in range(repeats):
            step()
        total = (time.perf_counter() - t0) / repeats
    finally:
        for cls, name, fn in patched:
            setattr(cls, name, fn)
        del opt.step                                 # back to the class's method
    kernels, optimizer = spent["kernels"] / repeats, spent["optimizer"] / repeats
    rest = total - kernels - optimizer
    top = sorted(per_op.items(), key=lambda kv: -kv[1])[:6]
    return {"step_s": total, "kernels_s": kernels, "optimizer_s": optimizer,
            "overhead_s": rest, "share": rest / total,
            "top_kernels_s": {op: t / repeats for op, t in top}}


def loop(name, batch=None, seconds=10.0):
    """Run training steps of network case ``name`` for ``seconds`` (a target
    for py-spy, as kernels.loop)."""
    from ..optim import SGD
    case = network_case(name)
    model, x, target = build(case, batch or case.batch)
    step = train_step(model, x, target, SGD(model.parameters(), lr=0.01, momentum=0.9))
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
