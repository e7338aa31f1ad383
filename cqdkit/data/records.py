"""What a loaded dataset is: labelled image records split into train and test.

Every reader (CUB, Stanford Cars, an image folder, the synthetic set) returns an :class:`ImageDataset`,
so everything downstream -- splits, paired views, ``cqdkit inspect`` -- works the same for all of them.

Boxes are always ``(x, y, width, height)`` in pixels of the image as displayed, 0-based, floats: ``x`` and
``y`` are the left and top edges, so the box covers columns ``x .. x + width`` (CUB's convention; Stanford
Cars' inclusive 1-based corners are converted on reading). The displayed image is the stored one turned by
its EXIF orientation, if it has one (:mod:`cqdkit.images`).

Annotation images (:attr:`Record.annotations`) are per-pixel annotations stored as gray images of the same
size as the record's image, by name: ``"mask"`` is the object's segmentation (255 inside, 0 outside, soft
at the outline). Degradations that need one (e.g. a teacher that sees the mask as an extra channel) get it
through :class:`cqdkit.degradations.Views`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..images import Box


def printable(text: str) -> str:
    """``text`` with the bytes of a file name that are not UTF-8 shown as ``\\xNN`` escapes.

    Names read from disk or from annotation files keep such bytes as surrogate escapes (``os.fsdecode``),
    which find the file but cannot be printed, encoded as UTF-8 or hashed into a seed; class names, record
    ids and messages go through this function instead.

    Example:
        >>> import os
        >>> printable(os.fsdecode(b"caf\\xe9.png"))
        'caf\\\\xe9.png'
    """
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class Record:
    """One labelled image.

    Attributes:
        id: the dataset's own identifier of the image (CUB image id, Cars file name, folder path), unique
            within the dataset; per-sample random seeds derive from it.
        path: absolute path of the image file.
        label: class index, 0-based, into :attr:`ImageDataset.classes`.
        bbox: the object's box ``(x, y, width, height)``, or None when the dataset has none.
        origin: where the record was read from (``"images.txt line 12"``), for error messages.
        annotations: per-pixel annotation images by name (``{"mask": Path(...)}``), each a gray image of
            the same size as ``path``; empty when the dataset has none.
    """

    id: str
    path: Path
    label: int
    bbox: Box | None = None
    origin: str = ""
    annotations: Mapping[str, Path] = field(default_factory=dict, hash=False)

    def describe(self) -> str:
        """The file and, when known, the annotation it came from (for error messages)."""
        return f"{self.path} ({self.origin})" if self.origin else str(self.path)


@dataclass
class ImageDataset:
    """A labelled image dataset with its official train/test split.

    Attributes:
        name: the dataset name (``"cub"``, ``"cars"``, ``"folder"``, ``"synthetic"``).
        root: the folder it was read from.
        classes: class names; a record's ``label`` indexes this list.
        train, test: the official splits (a validation split is carved from ``train`` with
            :func:`cqdkit.data.split_train_val`; ``test`` is never used for choices).
        has_boxes: whether records carry object boxes.
        problems: bad samples skipped on reading (with ``skip_bad=True``), one message each.
    """

    name: str
    root: Path
    classes: list[str]
    train: list[Record]
    test: list[Record]
    has_boxes: bool
    problems: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)
