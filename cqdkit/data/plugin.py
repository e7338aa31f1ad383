"""Built-in dataset plugin: registers cqdkit's dataset readers through the ``cqdkit_datasets`` hook.

Each factory imports its reader when called, so listing datasets imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cqdkit.plugin import DatasetSource, hookimpl

#: The synthetic dataset's options and their defaults (see :class:`cqdkit.data.synthetic.SyntheticSpec`).
SYNTHETIC_OPTIONS: dict[str, Any] = {
    "classes": 12,
    "train_per_class": 40,
    "test_per_class": 25,
    "image_size": 128,
    "seed": 0,
}


def _cub(root: Path, *, skip_bad: bool = False) -> Any:
    from .cub import read_cub

    return read_cub(root, skip_bad=skip_bad)


def _cars(root: Path, *, skip_bad: bool = False) -> Any:
    from .cars import read_cars

    return read_cars(root, skip_bad=skip_bad)


def _folder(root: Path, *, skip_bad: bool = False) -> Any:
    from .folder import read_folder

    return read_folder(root, skip_bad=skip_bad)


def _synthetic(root: Path | None = None, *, skip_bad: bool = False, **options: int) -> Any:
    from .synthetic import load_synthetic

    return load_synthetic(root, skip_bad=skip_bad, **options)


@hookimpl
def cqdkit_datasets():
    yield DatasetSource(name="cub", summary="CUB-200-2011 birds (images.txt, bounding_boxes.txt, ...)", factory=_cub)
    yield DatasetSource(
        name="cars", summary="Stanford Cars (devkit .mat files or cars_annos.mat)", factory=_cars
    )
    yield DatasetSource(
        name="folder", summary="Image folder: ROOT/train/<class>/*, ROOT/test/<class>/*, optional bboxes.csv",
        factory=_folder,
    )
    yield DatasetSource(
        name="synthetic",
        summary="Embedded procedural fine-grained set with boxes (generated once into the cache; the default)",
        factory=_synthetic,
        needs_root=False,
        options=dict(SYNTHETIC_OPTIONS),
    )
