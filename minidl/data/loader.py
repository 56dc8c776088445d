"""DataLoader: minibatches, shuffling, per-sample augmentation, background threads.

The lectures' recipe for training on distorted images: "a CPU thread loads
images, distorts each one, forms minibatches and passes them to training"
while the main thread trains. Here:

* the order of an epoch is ``permutation(len(dataset))`` drawn from
  (seed, epoch) when ``shuffle`` (else 0, 1, 2, ...), cut into batches;
* the transform gets the image of a sample and its own random Generator,
  made from (seed, epoch, sample index). So the augmentation of a sample
  does not depend on which thread made it, or in which order: the batches
  are IDENTICAL for any ``num_workers``;
* with ``num_workers = W >= 1``, worker thread w builds batches w, w+W,
  w+2W, ... and puts each into its own bounded ``queue.Queue``; the main
  thread takes batch b from queue b % W, so batches come out in order and
  at most ``prefetch`` finished batches wait in memory. NumPy (and SciPy's
  compiled routines, largely) release the GIL inside their C loops, so the
  threads overlap with training; the Python glue between them takes turns.

A worker's exception is raised again in the main thread (same exception,
its traceback still showing the worker's frames). Leaving the loop early
(``break``, or an exception in the training code) stops and joins the
workers: no thread outlives the iteration.
"""
import queue
import threading

import numpy as np

from ..tensor import Tensor

_SHUFFLE, _SAMPLE = 0, 1      # tags that keep the two kinds of random streams apart


class DataLoader:
    """Iterate over a dataset in minibatches of Tensors.

    Args:
        dataset: has ``__len__`` and ``__getitem__``; a sample is an array or
            a tuple ``(image, label, ...)``.
        batch_size: samples per batch (the last one may be smaller).
        shuffle: a new random order every epoch (reproducible from ``seed``).
        drop_last: drop the last batch if it is smaller than ``batch_size``.
        transform: ``transform(image, rng) -> image``, applied to the first
            field of each sample (see ``minidl.data.transforms``).
        num_workers: background threads (0: load in the main thread).
        seed: int; None draws one at random when the loader is made.
        prefetch: finished batches that may wait, in total (default
            ``2 * num_workers``; at least ``num_workers``).

    With workers, the dataset and the transform are called from several
    threads at once: they must only read shared state (the transforms here
    keep none; randomness comes from the ``rng`` argument).

    Each batch is a tuple with one Tensor per field (a single Tensor if the
    samples are single arrays), stacked along a new first axis: floating
    fields become float32, integer fields (labels) int64. Every ``iter()``
    is one epoch; ``epoch`` (starting at 0) counts them and may be set to
    resume the random streams of a given epoch.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False,
                 transform=None, num_workers=0, seed=None, prefetch=None):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"DataLoader: dataset must define __len__ and __getitem__, "
                            f"got {type(dataset).__name__}")
        _check_int("batch_size", batch_size, minimum=1)
        _check_int("num_workers", num_workers, minimum=0)
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform must be callable(image, rng), got "
                            f"{type(transform).__name__}")
        prefetch = 2 * num_workers if prefetch is None else prefetch
        if num_workers > 0:
            _check_int("prefetch", prefetch, minimum=num_workers)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        _check_int("seed", seed, minimum=0)
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.drop_last, self.transform = shuffle, drop_last, transform
        self.num_workers, self.prefetch, self.seed = num_workers, prefetch, seed
        self.epoch = 0

    def __len__(self):
        """Number of batches in one epoch."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batch_indices(self, epoch):
        """The list of index arrays (one per batch) of epoch ``epoch``."""
        n = len(self.dataset)
        order = (np.random.default_rng([self.seed, epoch, _SHUFFLE]).permutation(n)
                 if self.shuffle else np.arange(n))
        return [order[i:i + self.batch_size] for i in range(0, len(self) * self.batch_size,
                                                            self.batch_size)]

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        batches = self.batch_indices(epoch)
        if self.num_workers == 0:
            return (self._make_batch(idx, epoch) for idx in batches)
        return self._threaded(batches, epoch)

    # --- one batch ---------------------------------------------------------------
    def _make_batch(self, indices, epoch):
        """Load, transform and collate the samples ``indices``."""
        samples = []
        for i in indices:
            sample = self.dataset[int(i)]
            single = not isinstance(sample, (tuple, list))
            fields = [sample] if single else list(sample)
            if self.transform is not None:
                rng = np.random.default_rng([self.seed, epoch, _SAMPLE, int(i)])
                fields[0] = self.transform(fields[0], rng)
            samples.append(fields)
        batch = collate(samples)
        return batch[0] if single else batch

    # --- background threads -----------------------------------------------------
    def _threaded(self, batches, epoch):
        """Generator over ``batches`` built by ``num_workers`` threads."""
        nw = self.num_workers
        stop = threading.Event()
        queues = [queue.Queue(maxsize=self.prefetch // nw) for _ in range(nw)]

        def work(w):
            for b in range(w, len(batches), nw):
                if stop.is_set():
                    return
                try:
                    item = (True, self._make_batch(batches[b], epoch))
                except BaseException as e:  # noqa: BLE001  (handed to the main thread)
                    item = (False, _with_note(e, f"raised in DataLoader worker thread "
                                                 f"{w} while loading batch {b}"))
                queues[w].put(item)
                if not item[0]:
                    return

        threads = [threading.Thread(target=work, args=(w,), daemon=True,
                                    name=f"minidl-DataLoader-worker-{w}")
                   for w in range(nw)]
        for t in threads:
            t.start()
        try:
            for b in range(len(batches)):
                ok, value = queues[b % nw].get()
                if not ok:
                    raise value
                yield value
        finally:
            stop.set()
            for q in queues:           # unblock a worker waiting in put()
                while not q.empty():
                    q.get_nowait()
            for t in threads:
                t.join()


def _with_note(exc, note):
    if hasattr(exc, "add_note"):        # Python >= 3.11
        exc.add_note(note)
    return exc


def collate(samples):
    """A list of samples (lists of fields) -> a tuple of Tensors, one per field.

    Field k of the batch is ``stack([s[k] for s in samples])``: shape
    (batch, *field shape). Floating data become float32, integers int64.
    """
    n_fields = len(samples[0])
    if any(len(s) != n_fields for s in samples):
        raise ValueError(f"DataLoader: samples of one batch have different numbers of "
                         f"fields: {sorted({len(s) for s in samples})}")
    out = []
    for k in range(n_fields):
        arrays = [np.asarray(s[k]) for s in samples]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"DataLoader: field {k} of the samples has different shapes "
                             f"in one batch: {sorted(shapes)}; give the transform a fixed "
                             f"output size (e.g. RandomCrop) or use batch_size=1")
        arr = np.stack(arrays)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32, copy=False)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int64, copy=False)
        elif arr.dtype.kind != "b":
            raise TypeError(f"DataLoader: field {k} has dtype {arr.dtype}; samples must "
                            f"hold numbers")
        out.append(Tensor(arr))
    return tuple(out)


def _check_int(name, value, minimum):
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"DataLoader: {name} must be an integer >= {minimum}, got {value!r}")
