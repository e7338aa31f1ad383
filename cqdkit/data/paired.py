"""Paired views: each sample as a high-quality view x and its low-quality view z.

:class:`PairedDataset` is a ``torch.utils.data.Dataset`` of :class:`~cqdkit.data.sample.Sample`
``(x, z, label, index, box)``:

* ``x``, ``z``: ``C x size x size`` and ``3 x size x size`` uint8 tensors (the trainer normalises on the
  device); ``x`` is the box crop (``crop=True``) or the full image, and ``z`` is made from it by the
  degradation (an op that sets x itself, like ``localization``, makes z from the full image instead). ``C`` is 3, or more
  when the degradation appends privileged channels to x (``maker.x_channels``), e.g. the object's mask
  from the records' annotation images, which are then loaded with the images and kept aligned;
* ``label``: the class index; ``index``: the sample's position in ``records``;
* ``box``: float32 ``(x, y, width, height)`` of the object in z's pixel frame, NaN when unknown (no
  box, or a random augmentation moved it within a full-image z).

Random degradations draw from a per-sample seed derived from ``(seed, split, record id)`` with numpy's
SeedSequence: validation and test views are the same in every run and process; training views are too,
unless ``fixed_z=False``, which adds the epoch (:meth:`PairedDataset.set_epoch`). Decoded source images are
cached at working resolution (:class:`~cqdkit.data.cache.ImageCache`), and fixed pairs are cached as
well, so epochs after the first neither decode, resize nor degrade again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .cache import SOURCE_VERSION, ArrayStore, ImageCache, digest, prepare_source
from ..images import Box, decode_image, image_size
from .records import Record
from .sample import Sample

CacheOption = ImageCache | str | os.PathLike[str] | None


def sample_seed(seed: int, split: str, sample_id: str, epoch: int | None = None) -> int:
    """The seed of one sample's random degradation: stable across processes, runs and platforms.

    Example:
        >>> sample_seed(0, "test", "17") == sample_seed(0, "test", "17")
        True
    """
    words = [seed, _word(split), _word(sample_id)] + ([epoch] if epoch is not None else [])
    return int(np.random.SeedSequence(words).generate_state(1, np.uint32)[0])


def _word(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


class PairedDataset(Dataset):
    """A :class:`~cqdkit.data.sample.Sample` ``(x, z, label, index, box)`` for each record, with z made by a
    degradation.

    Args:
        records: the samples (one split: train, val or test).
        maker: a degradation spec string (``"lowres"``, ``"lowres:size=32+jpeg:severity=3"``, ...) or a
            :class:`cqdkit.degradations.PairMaker`; a PairMaker brings its own ``size``, ``crop`` and
            ``augment``.
        split: the split's name; part of every sample's seed.
        size: side of x and z in pixels.
        crop: x is the box crop (then every record needs a box).
        augment: random augmentation of x (and so of z), from the sample's seed.
        seed: base seed of the per-sample seeds.
        fixed_z: keep each training sample's views the same in every epoch (the paper's choice); False
            redraws them each epoch (see :meth:`set_epoch`). Other splits are always fixed.
        cache: ``"memory"`` (per process), a folder (``.npz`` files shared by workers and runs), an
            :class:`ImageCache`, or None (decode every time).
        manager: the plugin manager that resolves a spec string.
        dataset_name: the dataset's name, for error messages.

    Raises:
        DataError: the degradation reads an annotation image (``maker.needs_annotations``) that a record
            lacks.

    Example:
        >>> pairs = PairedDataset(dataset.test, "lowres", split="test", size=224, crop=True)  # doctest: +SKIP
        >>> x, z, label, index, box = pairs[0]  # doctest: +SKIP
    """

    def __init__(
        self,
        records: list[Record],
        maker: Any,
        *,
        split: str = "train",
        size: int = 224,
        crop: bool = False,
        augment: bool = False,
        seed: int = 0,
        fixed_z: bool = True,
        cache: CacheOption = "memory",
        manager: Any = None,
        dataset_name: str = "",
    ) -> None:
        if isinstance(maker, str):
            from ..degradations import PairMaker

            maker = PairMaker(maker, size=size, crop=crop, augment=augment, manager=manager)
        self.maker = maker
        self.size = int(getattr(maker, "size", size))
        self.crop = bool(getattr(maker, "crop", crop))
        self.records = list(records)
        self.split = split
        self.seed = seed
        self.redraw = not fixed_z and split == "train"
        # Shared memory, so that set_epoch reaches persistent DataLoader workers too.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.images = _image_cache(cache)
        self.pairs = ArrayStore(self.images.store.folder) if self.images is not None else None
        description = self.maker.describe()
        self._maker_key = json.dumps(description, sort_keys=True, default=str)
        self.z_full_image = bool(getattr(self.maker, "sets_x", False))  # z then shows the whole source
        self.needs_annotations: tuple[str, ...] = tuple(getattr(self.maker, "needs_annotations", ()))
        _check_annotations(self.records, self.needs_annotations, dataset_name, getattr(self.maker, "spec", ""))

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Use the views of ``epoch`` (changes training views only with ``fixed_z=False``).

        Works with persistent DataLoader workers: the epoch lives in shared memory.
        """
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def ids(self) -> list[str]:
        """The record ids, in order (what identifies this split's samples)."""
        return [record.id for record in self.records]

    def seed_of(self, index: int) -> int:
        """The seed the degradation gets for sample ``index`` (in the current epoch)."""
        epoch = self.epoch if self.redraw else None
        return sample_seed(self.seed, self.split, self.records[index].id, epoch)

    @property
    def fixed(self) -> bool:
        """Whether every sample's views are the same in every epoch (so they are cached)."""
        return not self.redraw

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} samples")
        record = self.records[index]
        x, z, box = self._views(index, record)
        return Sample(_chw(x), _chw(z), record.label, index, torch.from_numpy(box))

    def _views(self, index: int, record: Record) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        seed = self.seed_of(index)
        key = None
        if self.images is not None and self.pairs is not None and self.fixed:
            source_key = self.images.key(record, self.size, use_box=self.crop)
            if source_key is not None:  # (None: the file is missing, which _source reports)
                key = digest("pair", source_key, self._maker_key, seed, *self._annotation_keys(record))
                cached = self.pairs.get(key)
                if cached is not None:
                    return cached["x"], cached["z"], cached["box"]
        image, bbox = self._source(record)
        shape = image.shape[:2]
        annotations = {name: self._annotation(record, name, shape) for name in self.needs_annotations}
        try:
            if annotations:
                x, z = self.maker(image, bbox, seed=seed, annotations=annotations)
            else:
                x, z = self.maker(image, bbox, seed=seed)
        except DataError as error:  # e.g. no box to crop: say which sample, and where its box would be
            raise DataError(f"{record.describe()}: {error}") from None
        box = self._box_in_z(image, bbox)
        if key is not None:
            self.pairs.put(key, {"x": x, "z": z, "box": box})
        return x, z, box

    def _source(self, record: Record) -> tuple[np.ndarray, Box | None]:
        if self.images is not None:
            return self.images.get(record, self.size, use_box=self.crop)
        return prepare_source(record, self.size, use_box=self.crop)

    def _annotation_keys(self, record: Record) -> list[tuple[str, int, int]]:
        """What identifies the annotation files a pair depends on (they change: the pair does)."""
        return [_file_key(record.annotations[name]) for name in self.needs_annotations]

    def _annotation(self, record: Record, name: str, shape: tuple[int, int]) -> np.ndarray:
        """``record``'s annotation image ``name`` as ``H x W`` uint8, at the working ``shape`` of its image."""
        if self.images is None:
            return load_annotation(record, name, shape)
        key = digest("annotation", _file_key(record.annotations[name]), shape, f"source-v{SOURCE_VERSION}")
        cached = self.images.store.get(key)
        if cached is None:
            cached = {"annotation": load_annotation(record, name, shape)}
            self.images.store.put(key, cached)
        return cached["annotation"]

    def _box_in_z(self, image: np.ndarray, bbox: Box | None) -> np.ndarray:
        """The object's box in z's pixel frame: the whole of z when z is the box crop.

        NaN when unknown: no box, or a random augmentation moved the box within the full image.
        """
        if bbox is None:
            return np.full(4, np.nan, np.float32)
        if self.crop and not self.z_full_image:
            return np.array([0, 0, self.size, self.size], np.float32)
        if getattr(self.maker, "augment", False):
            return np.full(4, np.nan, np.float32)
        sx, sy = self.size / image.shape[1], self.size / image.shape[0]
        x, y, w, h = bbox
        return np.array([x * sx, y * sy, w * sx, h * sy], np.float32)


def load_annotation(record: Record, name: str, shape: tuple[int, int]) -> np.ndarray:
    """Read ``record.annotations[name]`` as gray ``uint8`` and stretch it to ``shape`` ``(height, width)``.

    Both files are taken upright (EXIF orientation applied, as every image is), so their displayed sizes
    must agree.

    Raises:
        DataError: the file cannot be read, or its size differs from the record's image.
    """
    import cv2

    path = record.annotations[name]
    rgb, stored = decode_image(path)
    expected = image_size(record.path)
    if stored != expected:
        raise DataError(
            f"{path}: the {name!r} annotation of {record.describe()} is {stored[0]}x{stored[1]} pixels; "
            f"expected the image's {expected[0]}x{expected[1]}"
        )
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if gray.shape != tuple(shape):
        shrink = gray.shape[0] >= shape[0] and gray.shape[1] >= shape[1]
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        gray = cv2.resize(gray, (shape[1], shape[0]), interpolation=interpolation)
    return np.ascontiguousarray(gray)


def _file_key(path: Path) -> tuple[str, int, int]:
    """A file's path, modification time and size (-1, -1 when it is missing: reading it reports that)."""
    try:
        stat = path.stat()
    except OSError:
        return str(path), -1, -1
    return str(path), stat.st_mtime_ns, stat.st_size


def _check_annotations(records: list[Record], names: tuple[str, ...], dataset: str, spec: str) -> None:
    """Fail before any training when a record lacks an annotation image the degradation reads."""
    for name in names:
        for record in records:
            if name not in record.annotations:
                which = f"dataset {dataset!r}" if dataset else "the dataset"
                has = ", ".join(sorted(record.annotations)) or "none"
                raise DataError(
                    f"{which} has no {name!r} annotation for record {record.id} ({record.describe()}); "
                    f"degradation {spec!r} needs one for every image (this record's annotations: {has})"
                )


def _chw(view: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(view.transpose(2, 0, 1)))


def _image_cache(cache: CacheOption) -> ImageCache | None:
    if cache is None or isinstance(cache, ImageCache):
        return cache
    if isinstance(cache, str) and cache == "memory":
        return ImageCache()
    return ImageCache(cache)
