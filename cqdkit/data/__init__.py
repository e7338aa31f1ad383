"""Datasets: readers for CUB-200-2011, Stanford Cars, image folders and the embedded synthetic set.

Everything a trainer needs::

    from cqdkit.data import load_dataset, split_train_val, PairedDataset

    dataset = load_dataset("synthetic")                 # or load_dataset("cub", "~/data/CUB_200_2011")
    train, val = split_train_val(dataset.train, 0.1, seed=0)
    pairs = PairedDataset(train, "lowres", size=224, split="train")
    sample = pairs[0]                                  # a Sample: sample.x, sample.z, sample.label, ...

Importing this package is cheap (numpy, PIL, OpenCV and torch load on first use of a name below).
"""

from __future__ import annotations

from cqdkit.lazy import lazy_attributes

from .records import Box, ImageDataset, Record

# Public names and the module that defines each, imported on first access (PEP 562).
_LAZY: dict[str, str] = {
    "ArrayStore": ".cache",
    "DEFAULT_DATASET": ".load",
    "DEFAULT_VAL_FRACTION": ".split",
    "ImageCache": ".cache",
    "PairedDataset": ".paired",
    "Sample": ".sample",
    "SyntheticSpec": ".synthetic",
    "decode_image": "cqdkit.images",
    "default_cache_dir": "cqdkit.files",
    "load_dataset": ".load",
    "load_image": "cqdkit.images",
    "read_cars": ".cars",
    "read_cub": ".cub",
    "read_folder": ".folder",
    "load_synthetic": ".synthetic",
    "sample_seed": ".paired",
    "split_train_val": ".split",
    "split_folds": ".split",
    "verify_images": ".verify",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = ["Box", "ImageDataset", "Record", *_LAZY]
