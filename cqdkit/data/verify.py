"""A full check of a dataset: decode every image and check every box against the image size.

The size is the displayed one (EXIF orientation applied), as everywhere; a box must keep some of the
image (:func:`cqdkit.images.box_outside`), so one starting at or past the right or bottom edge is found here.

Loading only checks annotations and that files exist (fast, even for large datasets); this deep check
is what ``cqdkit inspect --deep``, ``load_dataset(..., deep=True)`` and every load with ``skip_bad=True``
(``--skip-bad``) run. JPEGs are decoded at 1/8 scale: the whole file is still read and entropy-decoded,
so a truncated or corrupt one is found, at a fraction of the cost of a full decode.
"""

from __future__ import annotations

import dataclasses

from ..errors import DataError
from ..images import box_outside, decode_image
from .problems import Problems
from .records import ImageDataset, Record


def verify_images(dataset: ImageDataset, *, skip_bad: bool = False) -> ImageDataset:
    """``dataset`` after decoding every image; bad ones raise, or are dropped and listed with ``skip_bad``.

    Raises:
        DataError: an image that cannot be decoded, or whose box does not fit it (``skip_bad=False``).
    """
    problems = Problems(skip_bad)
    splits = [[r for r in records if _is_good(r, problems)] for records in (dataset.train, dataset.test)]
    return dataclasses.replace(
        dataset, train=splits[0], test=splits[1], problems=[*dataset.problems, *problems.found]
    )


def _smallest_draft(size: tuple[int, int]) -> tuple[int, int]:
    """The draft size that decodes a JPEG at its smallest scale (1/8)."""
    return (1, 1)


def _is_good(record: Record, problems: Problems) -> bool:
    try:
        _, (width, height) = decode_image(record.path, draft=_smallest_draft)
    except DataError as error:
        problems.report(str(error))
        return False
    if record.bbox is not None:
        reason = box_outside(record.bbox, width, height)
        if reason:
            problems.report(f"{record.describe()}: {reason}")
            return False
    return True
