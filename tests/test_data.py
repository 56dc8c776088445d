"""minidl.data: DataLoader (order, reproducibility, threads, errors) and datasets."""
import threading
import time
import traceback

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minidl
from minidl.data import DataLoader, Dataset, Digits, TensorDataset, load_digits
from minidl.data import sample_images, load_image, transforms as T


def collect(loader):
    """Every batch of one epoch as NumPy arrays."""
    return [tuple(t.numpy() for t in batch) for batch in loader]


def images_and_labels(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 6, 6)), np.arange(n)


# ----------------------------------------------------------------------------
# batching and order
# ----------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 23), batch_size=st.integers(1, 8), drop_last=st.booleans(),
       shuffle=st.booleans(), num_workers=st.sampled_from([0, 1, 3]))
def test_batches_cover_the_dataset(n, batch_size, drop_last, shuffle, num_workers):
    x, y = images_and_labels(n)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle,
                        drop_last=drop_last, num_workers=num_workers, seed=3)
    batches = collect(loader)
    expected_sizes = [batch_size] * (n // batch_size)
    if n % batch_size and not drop_last:
        expected_sizes.append(n % batch_size)
    assert [len(b[1]) for b in batches] == expected_sizes == [len(b[0]) for b in batches]
    assert len(loader) == len(expected_sizes)
    labels = np.concatenate([b[1] for b in batches]) if batches else np.zeros(0, int)
    if shuffle:
        assert len(set(labels)) == len(labels)
    else:
        np.testing.assert_array_equal(labels, np.arange(len(labels)))
    for xb, yb in batches:                       # image i travels with label i
        np.testing.assert_array_equal(xb, x[yb].astype(np.float32))


def test_dtypes_are_float32_images_int64_labels():
    x = np.zeros((4, 1, 2, 2))                               # float64
    y = np.arange(4, dtype=np.int32)
    xb, yb = next(iter(DataLoader(TensorDataset(minidl.Tensor(x), y), batch_size=4)))
    assert isinstance(xb, minidl.Tensor) and xb.dtype == np.float32 and xb.shape == (4, 1, 2, 2)
    assert yb.dtype == np.int64 and yb.shape == (4,)


def test_single_array_samples_give_single_tensors():
    batch = next(iter(DataLoader([np.ones(2)] * 3, batch_size=3)))   # a list is a dataset
    assert isinstance(batch, minidl.Tensor) and batch.shape == (3, 2)


# ----------------------------------------------------------------------------
# reproducibility whatever the number of workers
# ----------------------------------------------------------------------------
AUGMENT = T.Compose([T.RandomCrop(4, padding=1), T.RandomHorizontalFlip(), T.ColorShift(0.1)])


def epochs(num_workers, seed=7, batch_size=4, n=19, count=2):
    x, y = images_and_labels(n)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                        transform=AUGMENT, num_workers=num_workers, seed=seed)
    return [collect(loader) for _ in range(count)]


def assert_same(a, b):
    assert len(a) == len(b)
    for ea, eb in zip(a, b):
        assert len(ea) == len(eb)
        for ba, bb in zip(ea, eb):
            for ta, tb in zip(ba, bb):
                np.testing.assert_array_equal(ta, tb)


def test_same_seed_same_batches_for_0_1_3_workers():
    reference = epochs(0)
    assert_same(epochs(1), reference)
    assert_same(epochs(3), reference)
    assert_same(epochs(0), reference)                     # a fresh loader, same seed


def test_each_epoch_reshuffles_and_redraws_the_augmentation():
    first, second = epochs(0)
    order1 = np.concatenate([b[1] for b in first])
    order2 = np.concatenate([b[1] for b in second])
    assert not np.array_equal(order1, order2)
    assert sorted(order1) == sorted(order2) == list(range(19))
    other_seed = epochs(0, seed=8, count=1)[0]
    assert not np.array_equal(np.concatenate([b[1] for b in other_seed]), order1)


def test_augmentation_of_a_sample_does_not_depend_on_batching():
    x, y = images_and_labels(10)

    def per_sample(batch_size, num_workers):
        loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, transform=AUGMENT,
                            num_workers=num_workers, seed=1)
        return np.concatenate([b[0] for b in collect(loader)])

    np.testing.assert_array_equal(per_sample(1, 0), per_sample(4, 2))


def test_epoch_counter_can_be_set_to_replay_an_epoch():
    x, y = images_and_labels(9)
    loader = DataLoader(TensorDataset(x, y), batch_size=3, shuffle=True, transform=AUGMENT,
                        seed=5)
    first = collect(loader)
    collect(loader)
    loader.epoch = 0
    assert_same([collect(loader)], [first])


# ----------------------------------------------------------------------------
# threads: errors, early exit, bounded prefetch
# ----------------------------------------------------------------------------
class Failing(Dataset):
    def __len__(self):
        return 12

    def __getitem__(self, i):
        if i == 7:
            raise KeyError(f"sample {i} is broken")
        return np.zeros(2), i


@pytest.mark.parametrize("num_workers", [0, 1, 3])
def test_worker_exception_is_raised_in_main_thread_with_traceback(num_workers):
    before = threading.active_count()
    with pytest.raises(KeyError, match="sample 7 is broken") as info:
        collect(DataLoader(Failing(), batch_size=2, num_workers=num_workers))
    text = "".join(traceback.format_exception(info.value))
    assert "__getitem__" in text and "raise KeyError" in text     # the worker's frames
    if num_workers:
        assert "worker thread" in text and "batch 3" in text
    assert threading.active_count() == before


class Slow(Dataset):
    """Counts the samples loaded; each takes ``delay`` seconds."""

    def __init__(self, n, delay=0.0):
        self.n, self.delay, self.loaded = n, delay, 0
        self.lock = threading.Lock()

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        time.sleep(self.delay)
        with self.lock:
            self.loaded += 1
        return np.full(3, float(i)), i


def test_early_break_stops_the_workers():
    before = threading.active_count()
    start = time.perf_counter()
    for k, _ in enumerate(DataLoader(Slow(1000, 0.002), batch_size=2, num_workers=3)):
        if k == 2:
            break
    assert threading.active_count() == before
    assert time.perf_counter() - start < 5


def test_exception_in_the_training_loop_stops_the_workers():
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="training failed"):
        for _ in DataLoader(Slow(1000), batch_size=2, num_workers=2):
            raise RuntimeError("training failed")
    assert threading.active_count() == before


def test_prefetch_queue_is_bounded():
    ds = Slow(400)
    it = iter(DataLoader(ds, batch_size=2, num_workers=2, prefetch=4))
    next(it)
    time.sleep(0.3)                        # let the workers fill their queues
    # taken 1, `prefetch` waiting, one more per worker blocked in put()
    assert 2 * 2 < ds.loaded <= (1 + 4 + 2) * 2
    it.close()


def test_workers_run_in_background_threads():
    ds = Slow(16, 0.01)
    loader = DataLoader(ds, batch_size=4, num_workers=4)
    start = time.perf_counter()
    assert len(collect(loader)) == 4
    assert time.perf_counter() - start < 16 * 0.01          # sleeps overlapped


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------
def test_tensor_dataset_length_mismatch_names_the_shapes():
    with pytest.raises(ValueError, match=r"\(5, 2\), \(4,\)"):
        TensorDataset(np.zeros((5, 2)), np.zeros(4))


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=0), "batch_size"), (dict(num_workers=-1), "num_workers"),
    (dict(num_workers=3, prefetch=2), "prefetch"), (dict(transform=3), "transform"),
    (dict(seed=-1), "seed"),
])
def test_bad_loader_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        DataLoader(TensorDataset(np.zeros(4)), **kwargs)


def test_not_a_dataset_raises():
    with pytest.raises(TypeError, match="__len__"):
        DataLoader(5)


def test_samples_of_different_shapes_give_a_clear_error():
    ds = [(np.zeros(2), 0), (np.zeros(3), 1)]
    with pytest.raises(ValueError, match=r"field 0.*\(2,\), \(3,\)"):
        next(iter(DataLoader(ds, batch_size=2)))


# ----------------------------------------------------------------------------
# bundled data
# ----------------------------------------------------------------------------
def test_digits_split_sizes_range_and_stratification():
    from sklearn.datasets import load_digits as sk_digits
    xtr, ytr = load_digits(split="train")
    xte, yte = load_digits(split="test")
    assert xtr.shape == (1437, 1, 32, 32) and xte.shape == (360, 1, 32, 32)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    assert 0 <= xtr.min() and xtr.max() <= 1 and xtr.max() > 0.99
    all_counts = np.bincount(sk_digits().target, minlength=10)
    np.testing.assert_array_equal(np.bincount(ytr, minlength=10) + np.bincount(yte, minlength=10),
                                  all_counts)
    assert np.all(np.abs(np.bincount(yte, minlength=10) - all_counts * 360 / 1797) <= 1)


def test_digits_split_is_fixed_and_copies_are_returned():
    x1, y1 = load_digits(split="test")
    x1[:] = -1
    x2, y2 = load_digits(split="test")
    x3, y3 = Digits("test").images, Digits("test").targets
    assert x2.min() >= 0
    np.testing.assert_array_equal(x2, x3)
    np.testing.assert_array_equal(y1, y2)


def test_digits_resize_matches_pil_bilinear():
    from PIL import Image
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split
    bunch = sk_digits()
    idx_train, _ = train_test_split(np.arange(1797), test_size=360, stratify=bunch.target,
                                    random_state=0)
    xtr, ytr = load_digits(size=24, split="train")
    for k in (0, 100, 1000):
        src = (bunch.images[idx_train[k]] / 16).astype(np.float32)
        expected = np.asarray(Image.fromarray(src, mode="F").resize((24, 24), Image.BILINEAR))
        np.testing.assert_allclose(xtr[k, 0], expected, atol=1e-6)
        assert ytr[k] == bunch.target[idx_train[k]]


def test_digits_dataset_and_bad_split():
    ds = Digits("test", size=16)
    img, label = ds[3]
    assert len(ds) == 360 and img.shape == (1, 16, 16) and 0 <= label <= 9
    with pytest.raises(ValueError, match="split"):
        load_digits(split="val")


def test_training_pipeline_on_digits_with_threads():
    loader = DataLoader(Digits("test"), batch_size=64, shuffle=True, num_workers=2, seed=0,
                        transform=T.Compose([T.RandomCrop(32, padding=2), T.RandomRotation(10)]))
    shapes = [(xb.shape, yb.shape) for xb, yb in loader]
    assert len(shapes) == 6 and shapes[0] == ((64, 1, 32, 32), (64,))


def test_sample_images_are_the_sklearn_photographs():
    from sklearn.datasets import load_sample_images
    imgs = sample_images()
    raw = load_sample_images().images
    assert sorted(imgs) == ["china", "flower"]
    for name, src in zip(["china", "flower"], raw):
        assert imgs[name].shape == (3, 427, 640) and imgs[name].dtype == np.float32
        np.testing.assert_allclose(imgs[name], src.transpose(2, 0, 1) / 255, atol=1e-6)


def test_load_image_reads_a_png(tmp_path):
    from PIL import Image
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    np.testing.assert_allclose(load_image(tmp_path / "x.png"), rgb.transpose(2, 0, 1) / 255,
                               atol=1e-6)
