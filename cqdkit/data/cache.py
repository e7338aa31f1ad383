"""Caches: where cqdkit keeps generated data, and decoded images kept for the next epoch.

The cache folder is ``$CQDKIT_CACHE`` if set, else ``~/.cache/cqdkit`` (:func:`cqdkit.files.default_cache_dir`). :class:`ArrayStore` keeps named
uint8 arrays in memory or as uncompressed ``.npz`` files (written atomically, read without pickle);
:class:`ImageCache` keeps each source image decoded and downscaled to a *working resolution*, so that
epochs after the first neither decode nor resize the originals again.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import atomic_write
from ..images import Box, Size, box_outside, box_problem, clip_box, decode_image, describe_box
from .records import Record

Arrays = dict[str, np.ndarray]

#: Part of every working image's key: raised whenever what a file decodes to changes, so that a cache
#: folder filled by an older cqdkit is not reused. 2: images are turned upright by their EXIF orientation.
SOURCE_VERSION = 2


def digest(*parts: object) -> str:
    """A stable hex key for ``parts`` (the same in every process and run, unlike ``hash``)."""
    return hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=16).hexdigest()


class ArrayStore:
    """Named arrays by key, in memory (``folder=None``) or as ``.npz`` files under ``folder``.

    The memory store lives in one process (each DataLoader worker fills its own copy, kept across epochs
    with ``persistent_workers=True``); the folder store is shared by workers, processes and runs.

    Example:
        >>> store = ArrayStore()
        >>> store.put("ab12", {"image": np.zeros((2, 2, 3), np.uint8)})
        >>> store.get("ab12")["image"].shape
        (2, 2, 3)
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else None
        self._memory: dict[str, Arrays] = {}

    def get(self, key: str) -> Arrays | None:
        if self.folder is None:
            return self._memory.get(key)
        try:
            with np.load(self._path(key), allow_pickle=False) as arrays:
                return {name: arrays[name] for name in arrays.files}
        except (OSError, ValueError, KeyError):  # absent, or damaged: recompute
            return None

    def put(self, key: str, arrays: Arrays) -> None:
        if self.folder is None:
            self._memory[key] = arrays
            return
        def write(temporary: str) -> None:
            with open(temporary, "wb") as file:
                np.savez(file, **arrays)

        atomic_write(self._path(key), write)

    def __len__(self) -> int:
        if self.folder is None:
            return len(self._memory)
        return sum(1 for _ in self.folder.glob("*/*.npz")) if self.folder.is_dir() else 0

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.npz"


def working_scale(image_size: Size, box: Box | None, size: int) -> float:
    """How much a source image can shrink and still give ``size``-pixel views: at most 1 (never enlarged).

    The region that becomes a view -- the box when there is one, else the whole image -- keeps at
    least ``size`` pixels on each side, so nothing finer than the output is lost.
    """
    width, height = (box[2], box[3]) if box is not None else image_size
    return min(1.0, max(size / width, size / height))


class ImageCache:
    """Source images decoded and shrunk to their working resolution, cached in an :class:`ArrayStore`.

    ``get`` gives the same result on a hit and a miss: the cache only saves the decoding and resizing.

    Args:
        folder: keep the images as ``.npz`` files there (shared by workers and runs); None keeps them in
            this process's memory.
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.store = ArrayStore(folder)

    def get(self, record: Record, size: int, *, use_box: bool) -> tuple[np.ndarray, Box | None]:
        """The image of ``record`` at working resolution for ``size``-pixel views, and its box there.

        ``use_box`` says whether views are cut from the box (the box then sets the working resolution).

        Raises:
            DataError: the image cannot be decoded, or the box does not fit it.
        """
        key = self.key(record, size, use_box=use_box)
        cached = self.store.get(key) if key else None
        if cached is not None:
            box = cached["box"]
            return cached["image"], None if np.isnan(box).any() else tuple(float(v) for v in box)  # type: ignore[return-value]
        image, box = prepare_source(record, size, use_box=use_box)
        if key:
            self.store.put(key, {"image": image, "box": np.array(box if box is not None else [np.nan] * 4)})
        return image, box

    @staticmethod
    def key(record: Record, size: int, *, use_box: bool) -> str | None:
        """The cache key of ``record``'s working image: changes when the file does. None if it is missing."""
        try:
            stat = record.path.stat()
        except OSError:
            return None  # prepare_source reports the missing file
        return digest(str(record.path), stat.st_mtime_ns, stat.st_size, record.bbox, size, use_box,
                      f"source-v{SOURCE_VERSION}")


def prepare_source(record: Record, size: int, *, use_box: bool) -> tuple[np.ndarray, Box | None]:
    """Decode ``record``'s image (upright), check its box, and shrink both to the working resolution.

    The box is in the pixels of the displayed image (EXIF orientation applied), the frame of
    :func:`~cqdkit.images.decode_image`.

    Raises:
        DataError: the image cannot be decoded, or the box does not fit it (naming the record's file, its
            annotation line and the box).
    """
    import cv2

    if record.bbox is not None and box_problem(record.bbox):  # nothing to size the working image by
        raise DataError(f"{record.describe()}: {box_problem(record.bbox)}")
    region = record.bbox if use_box else None
    image, stored = decode_image(record.path, draft=lambda wh: _target(wh, working_scale(wh, region, size)))
    target = _target(stored, working_scale(stored, region, size))
    if (image.shape[1], image.shape[0]) != target:
        image = cv2.resize(image, target, interpolation=cv2.INTER_AREA)
    image = np.ascontiguousarray(image)
    if record.bbox is None:
        return image, None
    reason = box_outside(record.bbox, *stored)
    clipped = clip_box(record.bbox, *stored)
    if reason or clipped is None:
        reason = reason or f"box {describe_box(record.bbox)} holds no pixel of the {stored[0]}x{stored[1]} image"
        raise DataError(f"{record.describe()}: {reason}")
    sx, sy = target[0] / stored[0], target[1] / stored[1]
    x, y, width, height = clipped
    return image, (x * sx, y * sy, width * sx, height * sy)


def _target(stored: Size, scale: float) -> Size:
    return max(1, math.ceil(stored[0] * scale - 1e-6)), max(1, math.ceil(stored[1] * scale - 1e-6))
