"""Datasets: the Dataset protocol, TensorDataset, and the bundled real data.

A dataset is anything with ``__len__`` and ``__getitem__(i) -> sample``; a
sample is a tuple ``(image, label, ...)`` of NumPy arrays or numbers. The
DataLoader (loader.py) applies the transform to the image and collates
samples into batches.

Bundled data (no download; the files ship with scikit-learn):

* ``Digits`` / ``load_digits``: scikit-learn's 1,797 handwritten digits
  (8x8, values 0..16), scaled to [0, 1] and resized to 32x32 for LeNet-5,
  with a fixed stratified 1,437 / 360 train/test split;
* ``sample_images()``: the photographs china.jpg and flower.jpg (427x640)
  for augmentation and multi-crop demos.

Images are returned in the transforms' convention: float32, CHW, in [0, 1].
"""
import functools

import numpy as np

from ..tensor import Tensor

DIGITS_TEST_SIZE = 360    # 20% of 1,797; the train split holds 1,437


class Dataset:
    """Base class: subclasses define ``__len__`` and ``__getitem__``."""

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")


class TensorDataset(Dataset):
    """Samples are rows of equally long arrays: ``ds[i] = (a[i], b[i], ...)``.

    ``TensorDataset(images, labels)`` with images (N, C, H, W) and labels
    (N,); Tensors are converted to NumPy arrays (copied from the GPU).
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        self.arrays = tuple(a.numpy() if isinstance(a, Tensor) else np.asarray(a)
                            for a in arrays)
        for i, a in enumerate(self.arrays):
            if a.ndim == 0:
                raise ValueError(f"TensorDataset: array {i} is a scalar; every array "
                                 f"needs a first (sample) dimension")
        lengths = [len(a) for a in self.arrays]
        if len(set(lengths)) > 1:
            shapes = ", ".join(str(a.shape) for a in self.arrays)
            raise ValueError(f"TensorDataset: all arrays must have the same first "
                             f"dimension (number of samples), got shapes {shapes}")

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)


# ----------------------------------------------------------------------------
# scikit-learn's handwritten digits, resized for LeNet-5
# ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _digits_splits(size):
    """(train_x, train_y, test_x, test_y), read-only; computed once per size."""
    from scipy import ndimage
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    x = (bunch.images / 16.0).astype(np.float32)            # (1797, 8, 8) in [0, 1]
    y = bunch.target.astype(np.int64)                        # (1797,)
    # bilinear, pixels as little squares (grid_mode): like PIL's BILINEAR resize
    x = np.stack([ndimage.zoom(im, size / 8, order=1, grid_mode=True, mode="nearest")
                  for im in x])                              # (1797, size, size)
    x = x[:, None]                                           # (1797, 1, size, size)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=DIGITS_TEST_SIZE,
                                          stratify=y, random_state=0)
    for a in (xtr, ytr, xte, yte):
        a.flags.writeable = False
    return xtr, ytr, xte, yte


def load_digits(size=32, split="train"):
    """The handwritten digits as ``(images, labels)`` NumPy arrays.

    images: (N, 1, size, size) float32 in [0, 1] (the 0..16 grey levels
    divided by 16, then resized bilinearly from 8x8); labels: (N,) int64 in
    0..9. N is 1,437 for ``split="train"`` and 360 for ``"test"``: a fixed
    split, stratified by class (``train_test_split(stratify=y,
    random_state=0)``). No mean/std normalisation is applied; add
    ``transforms.Normalize`` with the training set's statistics if wanted.
    The resized arrays are cached, so only the first call pays; each call
    returns fresh copies.
    """
    if split not in ("train", "test"):
        raise ValueError(f"load_digits: split must be 'train' or 'test', got {split!r}")
    if int(size) != size or size < 8:
        raise ValueError(f"load_digits: size must be an integer >= 8, got {size!r}")
    xtr, ytr, xte, yte = _digits_splits(int(size))
    x, y = (xtr, ytr) if split == "train" else (xte, yte)
    return x.copy(), y.copy()


class Digits(Dataset):
    """The digits as a Dataset: ``ds[i] = (image (1, size, size) float32, label int64)``.

    ``images`` and ``targets`` hold the whole split (see ``load_digits``).
    """

    def __init__(self, split="train", size=32):
        self.images, self.targets = load_digits(size=size, split=split)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return self.images[index], self.targets[index]


# ----------------------------------------------------------------------------
# photographs
# ----------------------------------------------------------------------------
def to_chw_float(img):
    """An HWC uint8 picture (or HW grey) -> CHW float32 in [0, 1]."""
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ValueError(f"to_chw_float: img must be an HWC or HW uint8 array, got "
                         f"dtype {img.dtype} and shape {img.shape}")
    if img.ndim == 2:
        img = img[:, :, None]
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / 255


def sample_images():
    """scikit-learn's two photographs: ``{"china": ..., "flower": ...}``.

    Each is (3, 427, 640) float32 in [0, 1] (RGB, CHW).
    """
    from sklearn.datasets import load_sample_images
    bunch = load_sample_images()
    names = [path.replace("\\", "/").rsplit("/", 1)[-1].split(".")[0]
             for path in bunch.filenames]
    return {name: to_chw_float(img) for name, img in zip(names, bunch.images)}


def load_image(path):
    """Read a picture file (PNG, JPEG...) as (3, H, W) float32 RGB in [0, 1]."""
    from PIL import Image
    with Image.open(path) as im:
        return to_chw_float(np.asarray(im.convert("RGB")))
