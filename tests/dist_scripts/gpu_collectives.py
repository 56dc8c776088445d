"""Run on N ranks, one GPU each (or alone on one GPU): the collectives on
CuPy arrays (NCCL, or MPI through the host without NCCL) and one
DistributedDataParallel step on the GPU against the same step on the CPU.
"""
import cupy as cp
import numpy as np

import minidl
import minidl.distributed as dist
import minidl.nn.functional as F
from tiny_model import TinyNet

dist.init()
r, n = dist.rank(), dist.world_size()
ranks = np.arange(n)

k = cp.arange(7, dtype=cp.float64)
x = k * (r + 1) + r
dist.all_reduce(x)
assert cp.array_equal(x, k * int((ranks + 1).sum()) + int(ranks.sum())), x
b = cp.full((3, 2), 10.0 * r, dtype=cp.float32)
dist.broadcast(b, root=n - 1)
assert cp.array_equal(b, cp.full((3, 2), 10.0 * (n - 1), dtype=cp.float32)), b


def loss_and_grads(device, rows):
    """Gradients of the loss of TinyNet(seed 3) on data rows ``rows``, on device."""
    model = TinyNet(seed=3)
    for p in list(model.parameters()) + [model.running_mean]:
        p.data = minidl.backend.to_device(p.data, device)
    rng = np.random.default_rng(0)
    xs, ys = rng.standard_normal((4 * n, 6)), rng.integers(0, 3, 4 * n)
    xt = minidl.Tensor(minidl.backend.to_device(xs[rows], device))
    yt = minidl.Tensor(minidl.backend.to_device(ys[rows], device))
    F.cross_entropy(model(xt), yt).backward()
    return model


gpu = dist.DistributedDataParallel(loss_and_grads("cuda", slice(4 * r, 4 * r + 4)))
gpu.allreduce_gradients()
cpu = loss_and_grads("cpu", slice(0, 4 * n))        # one process, the global batch
for (name, pg), (_, pc) in zip(gpu.named_parameters(), cpu.named_parameters()):
    assert np.allclose(pg.grad.numpy(), pc.grad.numpy(), rtol=1e-10, atol=1e-12), name
print(f"OK rank {r}", flush=True)
