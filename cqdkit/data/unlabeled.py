"""Unlabelled training images: paired views that only the distillation terms learn from.

The distillation terms of Equation 1 compare the student on z with the teacher on the same sample's x and need
no label, so images without labels -- many paired images of a new sensor, few of them annotated -- still teach
the student. Two sources, both giving records whose ``label`` is :data:`UNLABELLED`:

- :func:`read_unlabeled`: every image under a folder (``--unlabeled ROOT``; no classes, no split);
- :func:`hide_labels`: all but a fraction of each class's training labels (``--label-fraction F``), to measure
  on a labelled benchmark what unlabelled pairs give.

Example:
    >>> from cqdkit.data.records import Record
    >>> records = [Record(str(i), Path(f"{i}.png"), label=i % 2) for i in range(10)]
    >>> kept, hidden = hide_labels(records, 0.2, seed=0)
    >>> len(kept), len(hidden), {r.label for r in hidden}
    (2, 8, {-1})
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..images import IMAGE_EXTENSIONS, image_size
from .records import Record, printable

#: The label of an image without one (cross-entropy ignores it; distillation terms use it).
UNLABELLED = -1


def read_unlabeled(root: str | os.PathLike[str], *, skip_bad: bool = False) -> tuple[list[Record], list[str]]:
    """Every image file under ``root`` (any depth, sorted by path) as an unlabelled record without a box, each
    one's header read now; and the problems of the files left out (with ``skip_bad``).

    Raises:
        DataError: ``root`` is not a folder or holds no image file, or (without ``skip_bad``) a file is not an
            image that can be read, named.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"--unlabeled {root}: not a folder; expected a folder of images (any layout, no classes)")
    # Folders are layout; anything else named like an image is read, so a named pipe or a link to nothing
    # called x.jpg is reported (image_size refuses what is not a regular file at once), not skipped.
    paths = sorted(path for path in root.rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS and not path.is_dir())
    if not paths:
        raise DataError(f"--unlabeled {root}: no image files in it (expected {', '.join(sorted(IMAGE_EXTENSIONS))})")
    records, problems = [], []
    for path in paths:
        try:
            image_size(path)
        except DataError as error:
            if not skip_bad:
                raise DataError(f"--unlabeled: {error} (--skip-bad leaves such files out)") from None
            problems.append(f"--unlabeled: {error}")
            continue
        records.append(Record(f"unlabeled/{printable(path.relative_to(root).as_posix())}", path, UNLABELLED, None,
                              f"--unlabeled {root}"))
    return records, problems


def hide_labels(records: list[Record], keep: float, seed: int) -> tuple[list[Record], list[Record]]:
    """``(labelled, unlabelled)``: ``keep`` of each class's records keep their label (at least one per class),
    chosen with ``seed``; the others are returned with their label set to :data:`UNLABELLED`. Both lists keep
    the input order.

    Raises:
        DataError: ``keep`` is not in (0, 1].
    """
    if not 0.0 < keep <= 1.0:
        raise DataError(f"--label-fraction {keep}: expected a number in (0, 1]")
    by_class: dict[int, list[int]] = defaultdict(list)
    for position, record in enumerate(records):
        by_class[record.label].append(position)
    kept: set[int] = set()
    for label in sorted(by_class):
        positions = by_class[label]
        count = max(1, round(keep * len(positions)))
        kept.update(np.random.default_rng([seed, label, 7]).choice(positions, size=count, replace=False).tolist())
    labelled = [record for i, record in enumerate(records) if i in kept]
    hidden = [dataclasses.replace(record, label=UNLABELLED) for i, record in enumerate(records) if i not in kept]
    return labelled, hidden


def check_boxes(records: list[Record], needs_boxes: bool, where: str) -> None:
    """Refuse unlabelled images without boxes when x is the box crop (nothing to crop them to).

    Raises:
        DataError: naming the first such image and the ways out.
    """
    if not needs_boxes:
        return
    for record in records:
        if record.bbox is None:
            raise DataError(f"{where}: {record.path} has no box, and x is the object's box crop (--crop, or a "
                            "degradation that needs boxes); give images with boxes, or train with --no-crop")
