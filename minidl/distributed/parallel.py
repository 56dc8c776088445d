"""Data parallelism: the same model on every rank, a different batch on each.

One training step on N ranks, each with its own batch of B samples::

    loss_r = mean over rank r's B samples          (forward, on every rank)
    g_r    = d loss_r / d w                         (loss.backward())
    g      = (g_0 + ... + g_{N-1}) / N              (allreduce_gradients)
    w     <- optimizer step with g                  (the same on every rank)

Because every loss is a mean over B samples, g is exactly the gradient of the
mean loss over all N*B samples: N ranks with batch B take the same step as one
process with batch N*B (up to float rounding), so the weights, started equal
by ``broadcast_parameters``, stay equal on every rank without ever being sent
again. Only gradients travel, once per step.

Bucketing: sending one message per parameter pays the network latency once
per tensor (ResNet-18 has 62). Instead the gradients are copied into a few
flat buffers ("buckets") of about ``bucket_size_mb`` MiB and each bucket is
all-reduced as one message.

BatchNorm: each rank normalises with its own batch statistics (as PyTorch
without SyncBatchNorm) and updates its own running_mean / running_var
(PyTorch's DDP instead copies rank 0's buffers at every forward).
Call ``average_buffers(model)`` (e.g. at the end of each epoch, before
evaluating or saving) to make them the average over ranks. The average of the
per-rank running variances ignores the spread between the ranks' means; with
shuffled shards of one dataset that spread is small.
"""
import itertools

from ..backend import device_of, get_array_module
from ..tensor import Tensor
from . import comm

DEFAULT_BUCKET_SIZE_MB = 25


# ----------------------------------------------------------------------------
# the model's tensors
# ----------------------------------------------------------------------------
def _named_parameters(model, caller):
    if not hasattr(model, "named_parameters"):
        raise TypeError(f"{caller}: model must be a minidl.nn.Module (something with "
                        f"named_parameters()), got {type(model).__name__}")
    return list(model.named_parameters())


def _named_buffers(model):
    """(name, Tensor) of the model's buffers; none if it has no named_buffers()."""
    return list(model.named_buffers()) if hasattr(model, "named_buffers") else []


def _data(t):
    """The ndarray of a Tensor (a buffer may also be a bare ndarray)."""
    return t.data if isinstance(t, Tensor) else t


# ----------------------------------------------------------------------------
# the same model everywhere
# ----------------------------------------------------------------------------
def broadcast_parameters(model, root=0):
    """Copy rank ``root``'s parameters and buffers into every rank's model.

    First checks that every rank has the same tensors: the (name, shape,
    dtype) lists of all ranks are gathered, so every rank sees the same
    differences and raises the same ValueError (no rank is left waiting).
    """
    tensors = ([("parameter", n, p) for n, p in _named_parameters(model, "broadcast_parameters")]
               + [("buffer", n, b) for n, b in _named_buffers(model)])
    described = [(kind, name, tuple(_data(t).shape), str(_data(t).dtype))
                 for kind, name, t in tensors]
    problems = _differences(comm.all_gather_object(described), root)
    if problems:
        shown = "\n  ".join(problems[:10]) + ("\n  ..." if len(problems) > 10 else "")
        raise ValueError(f"broadcast_parameters: the ranks built different models "
                         f"(compared with root rank {root}):\n  {shown}")
    for _, _, t in sorted(tensors, key=lambda entry: entry[1]):   # same order everywhere
        arr = _data(t)
        if arr.flags.c_contiguous:
            comm.broadcast(arr, root)
        else:                                   # MPI needs one contiguous block
            arr[...] = comm.broadcast(get_array_module(arr).ascontiguousarray(arr), root)


def _differences(everyone, root):
    """Lines describing how each rank's (kind, name, shape, dtype) list differs
    from the root's; [] when all are equal."""
    ref = {name: (kind, shape, dtype) for kind, name, shape, dtype in everyone[root]}
    problems = []
    for r, described in enumerate(everyone):
        mine = {name: (kind, shape, dtype) for kind, name, shape, dtype in described}
        for name in ref.keys() - mine.keys():
            problems.append(f"rank {r} has no {ref[name][0]} {name!r} "
                            f"(shape {ref[name][1]} on rank {root})")
        for name in mine.keys() - ref.keys():
            problems.append(f"rank {r} has an extra {mine[name][0]} {name!r} "
                            f"(shape {mine[name][1]}) that rank {root} lacks")
        for name in ref.keys() & mine.keys():
            (kind, s0, d0), (_, s1, d1) = ref[name], mine[name]
            if (s0, d0) != (s1, d1):
                problems.append(f"{kind} {name!r} is {s0} {d0} on rank {root} "
                                f"but {s1} {d1} on rank {r}")
    return sorted(problems)


def average_buffers(model):
    """Replace every floating buffer (BatchNorm's running_mean, running_var) by
    its mean over the ranks. Integer buffers (num_batches_tracked) are left
    alone: they count steps, equal on every rank that ran the same steps."""
    for _, b in _named_buffers(model):
        if _data(b).dtype.kind == "f":
            comm.all_reduce(_data(b), average=True)


# ----------------------------------------------------------------------------
# gradients, in buckets
# ----------------------------------------------------------------------------
class _Bucket:
    """Parameters (one device, one dtype) whose gradients travel as one message.

    ``flat`` (size,) is the message, allocated once: parameter i's gradient
    occupies ``flat[offsets[i] : offsets[i] + params[i].size]``.
    """

    def __init__(self, params):
        self.params = params
        ends = list(itertools.accumulate(p.data.size for p in params))
        self.offsets = [0] + ends[:-1]
        xp = get_array_module(params[0].data)
        self.flat = xp.empty(ends[-1], dtype=params[0].data.dtype)       # (size,)

    def allreduce_mean(self):
        """p.grad <- mean over ranks of p.grad, for every parameter here.

        Each gradient is copied in already divided by N, so the all-reduce's
        sum is the mean. A parameter without a gradient on this rank (unused
        in this forward) contributes zeros. Afterwards every ``p.grad`` is a
        view into ``flat`` (no copy out, as PyTorch's gradient_as_bucket_view):
        the next call overwrites it, so copy a gradient to keep it longer.
        """
        xp = get_array_module(self.flat)
        scale = 1.0 / comm.require_init("allreduce_gradients").size
        for p, off in zip(self.params, self.offsets):
            part = self.flat[off:off + p.data.size]                      # (p.size,)
            if p.grad is None:
                part[...] = 0
            else:
                xp.multiply(p.grad.data.reshape(-1), scale, out=part)
        comm.all_reduce(self.flat)                                       # sum over ranks
        for p, off in zip(self.params, self.offsets):
            p.grad = Tensor(self.flat[off:off + p.data.size].reshape(p.data.shape))


def make_buckets(params, bucket_size_mb=DEFAULT_BUCKET_SIZE_MB):
    """Split ``params`` (in order) into buckets of at most ``bucket_size_mb`` MiB.

    A bucket holds consecutive parameters of one device and dtype; a
    parameter larger than the limit gets a bucket of its own. A parameter
    listed twice (shared weights) is reduced once.
    """
    if not bucket_size_mb > 0:
        raise ValueError(f"bucket_size_mb must be > 0, got {bucket_size_mb}")
    limit = bucket_size_mb * 2 ** 20
    buckets, current, nbytes, seen = [], [], 0, set()
    for p in params:
        if id(p) in seen:
            continue
        seen.add(id(p))
        kind = (device_of(p.data), p.data.dtype)
        if current and (kind != (device_of(current[0].data), current[0].data.dtype)
                        or nbytes + p.data.nbytes > limit):
            buckets.append(_Bucket(current))
            current, nbytes = [], 0
        current.append(p)
        nbytes += p.data.nbytes
    if current:
        buckets.append(_Bucket(current))
    return buckets


def _trainable(model, caller):
    return [p for _, p in _named_parameters(model, caller) if p.requires_grad]


def allreduce_gradients(model, bucket_size_mb=DEFAULT_BUCKET_SIZE_MB):
    """Average every trainable parameter's gradient over the ranks.

    Call after ``loss.backward()`` and before ``optimizer.step()``, on every
    rank. ``DistributedDataParallel`` does the same with buckets made once
    (faster: their flat buffers are not allocated again at every step).
    """
    for bucket in make_buckets(_trainable(model, "allreduce_gradients"), bucket_size_mb):
        bucket.allreduce_mean()


class DistributedDataParallel:
    """A model replicated on every rank, its gradients averaged in buckets.

    Usage (every rank runs this)::

        dist.init()
        model = DistributedDataParallel(lenet5())   # rank 0's weights everywhere
        opt = optim.SGD(model.parameters(), lr=0.1)
        for x, y in loader:                         # each rank its own shard
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            model.allreduce_gradients()             # explicit: nothing is hooked
            opt.step()

    The all-reduce is an explicit call, not a hook inside ``backward()``: the
    communication is visible in the training loop and can be timed on its
    own. (PyTorch starts each bucket's all-reduce from a hook while backward
    is still running, hiding communication behind computation; here it runs
    after backward.)

    bucket_size_mb=25 (PyTorch's default). Small buckets pay off only when
    communication overlaps backward (PyTorch's reason for them); here it does
    not, and every message is a meeting point that all ranks must reach, so
    fewer messages win. Measured (benchmarks/bench_distributed.py) on
    ResNet-18's 43 MiB of float32 gradients, 2 ranks on one 2-core machine
    shared with other jobs: with the cores busy, 25 MiB (2 messages) took
    about 90 ms per all-reduce against 250-350 ms for 1 MiB (20), 4 MiB (12)
    or one message per parameter (62); in a quiet moment every size from
    1 MiB up took 10-25 ms. LeNet-5 (0.24 MiB) is a single bucket anyway.
    Each bucket keeps a flat buffer of its size, allocated once on the
    parameters' device: move the model to its device before wrapping it.

    Every other attribute (``parameters()``, ``state_dict()``, ``train()``,
    ``eval()``, ...) is the wrapped model's, so names carry no ``module.``
    prefix and checkpoints load into a plain model.
    """

    def __init__(self, module, bucket_size_mb=DEFAULT_BUCKET_SIZE_MB):
        comm.require_init("DistributedDataParallel")
        self.module = module
        broadcast_parameters(module, root=0)
        self.buckets = make_buckets(_trainable(module, "DistributedDataParallel"),
                                    bucket_size_mb)

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def allreduce_gradients(self):
        """Average the gradients over the ranks (after backward, before step)."""
        for bucket in self.buckets:
            bucket.allreduce_mean()

    def average_buffers(self):
        """Average BatchNorm running statistics over the ranks."""
        average_buffers(self.module)

    def __getattr__(self, name):
        if name == "module":                    # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.module, name)
