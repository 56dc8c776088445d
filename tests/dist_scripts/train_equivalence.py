"""k SGD steps of a model on N ranks with batch B each, or (--reference) in
one process without minidl.distributed with batch N*B; saves the weights.

usage: train_equivalence.py {tiny,lenet5} STEPS B NRANKS OUT.npz [--reference]

Step s uses the global batch s of a fixed random data set: rows
[s*N*B, (s+1)*N*B). Rank r takes rows r*B .. (r+1)*B of it; the reference
takes them all. Ranks start from different weights (seed + rank) so the
test also checks that DistributedDataParallel copies rank 0's to all.
"""
import sys

import numpy as np

import minidl
import minidl.nn.functional as F
from minidl.optim import SGD
from tiny_model import TinyNet

net, steps, per_rank, nranks, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), sys.argv[5]
reference = "--reference" in sys.argv
global_batch = per_rank * nranks


def make_model(seed):
    if net == "tiny":
        return TinyNet(seed=seed)
    from minidl.models import lenet5
    minidl.manual_seed(seed)
    return lenet5().double()


def make_data():
    rng = np.random.default_rng(0)
    shape = (6,) if net == "tiny" else (1, 32, 32)
    n = steps * global_batch
    return rng.standard_normal((n, *shape)), rng.integers(0, 3, n)


xs, ys = make_data()
if reference:
    model, rank, lo, hi = make_model(seed=1), 0, 0, global_batch
else:
    import minidl.distributed as dist
    dist.init()
    assert dist.world_size() == nranks, (dist.world_size(), nranks)
    rank = dist.rank()
    model = dist.DistributedDataParallel(make_model(seed=1 + rank), bucket_size_mb=1e-3)
    lo, hi = rank * per_rank, (rank + 1) * per_rank
opt = SGD(list(model.parameters()), lr=0.1, momentum=0.9)

for s in range(steps):
    x = xs[s * global_batch:(s + 1) * global_batch][lo:hi]      # (B or N*B, ...)
    y = ys[s * global_batch:(s + 1) * global_batch][lo:hi]
    loss = F.cross_entropy(model(minidl.Tensor(x)), minidl.Tensor(y))
    opt.zero_grad()
    loss.backward()
    if not reference:
        model.allreduce_gradients()
    opt.step()

weights = {name: p.numpy() for name, p in model.named_parameters()}
np.savez(out.replace(".npz", f".rank{rank}.npz"), **weights)
