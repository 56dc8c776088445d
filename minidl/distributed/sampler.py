"""Each rank its own part of the dataset, every rank the same number of steps.

Epoch e, dataset of n samples, R ranks, this rank r::

    order   = permutation of 0..n-1 drawn with seed + e   (identical on all ranks,
              or 0..n-1 without shuffle)                  since the seed is shared)
    order   = order + order[:pad]    padded by repeating from the start, so that
              R divides its length   (drop_last=False), or
    order   = order[:R * (n // R)]   cut (drop_last=True)
    shard_r = order[r::R]            every R-th index, starting at r

The shards are disjoint and together cover the (padded or cut) order, and
all have the same length, so no rank runs out of batches before the others
(a rank that stopped early would leave the others waiting in all-reduce).
Call ``set_epoch(e)`` at the start of each epoch: without it every epoch
repeats the same order.

With minidl's DataLoader (which takes a dataset, not a sampler), iterate over
``sampler.shard(dataset)``, a view whose item i is ``dataset[shard_r[i]]``
for the sampler's current epoch; make the loader once, with ``shuffle=False``
(the sampler shuffles) and a different ``seed`` per rank (its augmentation
streams are drawn from the position in the view)::

    sampler = DistributedSampler(train_set, seed=0)
    loader = DataLoader(sampler.shard(train_set), batch_size=B, shuffle=False,
                        seed=1000 + dist.rank())
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for x, y in loader:
            ...
"""
import numpy as np

from . import comm


class DistributedSampler:
    """The indices of this rank's shard of ``dataset`` for the current epoch.

    dataset: a dataset (anything with ``len()``) or its length. num_replicas
    and rank default to ``world_size()`` and ``rank()`` (``init()`` first).
    Iterating gives ``len(self)`` indices (ints).
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):
        n = dataset if isinstance(dataset, (int, np.integer)) else len(dataset)
        if num_replicas is None or rank is None:
            world = comm.require_init("DistributedSampler")
            num_replicas = world.size if num_replicas is None else num_replicas
            rank = world.rank if rank is None else rank
        self.num_replicas, self.rank = num_replicas, rank
        if not (isinstance(self.num_replicas, (int, np.integer)) and self.num_replicas >= 1):
            raise ValueError(f"DistributedSampler: num_replicas must be an int >= 1, "
                             f"got {self.num_replicas!r}")
        if not (isinstance(self.rank, (int, np.integer))
                and 0 <= self.rank < self.num_replicas):
            raise ValueError(f"DistributedSampler: rank must be an int in "
                             f"[0, {self.num_replicas}), got {self.rank!r}")
        if n < 1 or (drop_last and n < self.num_replicas):
            raise ValueError(f"DistributedSampler: a dataset of {n} samples cannot be "
                             f"split over {self.num_replicas} ranks"
                             + (" with drop_last=True" if drop_last else ""))
        self.dataset_len, self.shuffle, self.seed, self.drop_last = int(n), shuffle, seed, drop_last
        self.epoch = 0
        if drop_last:
            self.num_samples = n // self.num_replicas
        else:
            self.num_samples = -(-n // self.num_replicas)        # ceil(n / R)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch):
        """Use epoch ``epoch``'s order (call at the start of every epoch)."""
        self.epoch = int(epoch)

    def indices(self):
        """This rank's indices for the current epoch, as an int64 array."""
        n = self.dataset_len
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            order = np.arange(n)
        if self.total_size > n:                  # pad: repeat from the start
            order = np.resize(order, self.total_size)
        order = order[:self.total_size]          # (total_size,)
        return order[self.rank::self.num_replicas]          # (num_samples,)

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_samples

    def shard(self, dataset):
        """A dataset view of this rank's shard that follows ``set_epoch``."""
        if len(dataset) != self.dataset_len:
            raise ValueError(f"DistributedSampler.shard: the sampler was made for "
                             f"{self.dataset_len} samples, the dataset has {len(dataset)}")
        return DatasetShard(dataset, self)


class DatasetShard:
    """Item i is ``dataset[sampler.indices()[i]]`` for the sampler's current epoch.

    The indices are recomputed when the epoch changes; (epoch, indices) is
    kept as one tuple so loader threads always see a consistent pair.
    """

    def __init__(self, dataset, sampler):
        self.dataset, self.sampler = dataset, sampler
        self._cache = (None, None)          # (epoch, indices of that epoch)

    def __len__(self):
        return len(self.sampler)

    def __getitem__(self, i):
        epoch, indices = self._cache
        if epoch != self.sampler.epoch:
            epoch, indices = self.sampler.epoch, self.sampler.indices()
            self._cache = (epoch, indices)
        if not -len(indices) <= i < len(indices):
            raise IndexError(f"DatasetShard: index {i} out of range for a shard of "
                             f"{len(indices)} samples")
        return self.dataset[int(indices[i])]
