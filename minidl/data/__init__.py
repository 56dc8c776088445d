"""Data: datasets, the DataLoader (background threads) and augmentations.

    from minidl.data import DataLoader, Digits, transforms as T
    train = DataLoader(Digits("train"), batch_size=64, shuffle=True, seed=0,
                       transform=T.Compose([T.RandomCrop(32, padding=2),
                                            T.RandomRotation(10)]),
                       num_workers=2)
"""
from . import transforms
from .datasets import (Dataset, TensorDataset, Digits, load_digits, sample_images,
                       load_image, to_chw_float)
from .loader import DataLoader, collate
from .transforms import make_augmentation_grid

__all__ = ["transforms", "Dataset", "TensorDataset", "Digits", "load_digits",
           "sample_images", "load_image", "to_chw_float", "DataLoader", "collate",
           "make_augmentation_grid"]
