"""Run on N ranks: every collective against values known in closed form.

Each check is an assert: a failure aborts the whole job (init's excepthook),
so the test sees a non-zero exit code and the traceback. Rank r ends by
printing "OK rank r"; rank 0 also prints one line through print0.
"""
import numpy as np

import minidl.distributed as dist
from minidl import Tensor
from minidl.distributed.parallel import make_buckets
from tiny_model import TinyNet

dist.init()
r, n = dist.rank(), dist.world_size()
ranks = np.arange(n)

# all_reduce of rank-dependent integers held in float64 / int64 is exact:
# sum_r (k * (r + 1) + r) = k * n(n+1)/2 + n(n-1)/2
k = np.arange(7, dtype=np.float64)
x = k * (r + 1) + r
dist.all_reduce(x)
assert np.array_equal(x, k * (ranks + 1).sum() + ranks.sum()), x
xi = np.full((2, 3), r + 1, dtype=np.int64)
dist.all_reduce(xi)
assert np.array_equal(xi, np.full((2, 3), n * (n + 1) // 2)), xi
t = Tensor(np.full(4, float(r), dtype=np.float32))
assert dist.all_reduce(t, average=True) is t
assert np.allclose(t.data, ranks.mean(), rtol=1e-6), t.data

# broadcast from the last rank, in place
b = np.full((3, 2), 10.0 * r)
dist.broadcast(b, root=n - 1)
assert np.array_equal(b, np.full((3, 2), 10.0 * (n - 1))), b
assert dist.broadcast_object({"r": r}, root=0) == {"r": 0}
assert dist.all_gather_object(r * r) == [q * q for q in range(n)]

# broadcast_parameters: every rank ends with rank 0's parameters AND buffers
model = TinyNet(seed=100 + r)
model.running_mean.data[...] = r
dist.broadcast_parameters(model)
w0 = TinyNet(seed=100).w1.data
assert np.array_equal(model.w1.data, w0)
assert np.array_equal(model.running_mean.data, np.zeros(5))

# average_buffers: floating buffers become the mean, integer ones are kept
model.running_mean.data[...] = np.arange(5) + 2.0 * r
model.num_batches_tracked.data[...] = 7 + r
dist.average_buffers(model)
assert np.allclose(model.running_mean.data, np.arange(5) + 2.0 * ranks.mean())
assert model.num_batches_tracked.data == 7 + r

# allreduce_gradients averages; a rank without a gradient counts zeros.
# Bucket sizes from "one bucket per parameter" to "all in one" agree.
for mb in (1e-6, 2e-4, 25):
    for i, p in enumerate(model.parameters()):
        p.grad = Tensor(np.full(p.shape, (r + 1.0) * (i + 1)))
    model.b2.grad = None if r == 0 else Tensor(np.full(3, 4.0 * r))
    assert len(make_buckets(list(model.parameters()), mb)) == {1e-6: 4, 2e-4: 2, 25: 1}[mb]
    dist.allreduce_gradients(model, bucket_size_mb=mb)
    for i, p in enumerate(list(model.parameters())[:3]):
        assert np.allclose(p.grad.data, (ranks + 1.0).mean() * (i + 1)), (mb, i, p.grad.data)
    assert np.allclose(model.b2.grad.data, (4.0 * ranks).mean())

# DistributedSampler with the job's rank and size: disjoint shards covering all
sampler = dist.DistributedSampler(23, shuffle=True, seed=5)
sampler.set_epoch(3)
shards = dist.all_gather_object(list(sampler))
everything = sum(shards, [])
assert set(everything) == set(range(23)) and len(everything) == n * len(sampler)
assert all(len(s) == len(sampler) for s in shards)

dist.barrier()
dist.print0(f"print0 from rank {r}")
print(f"OK rank {r}", flush=True)
