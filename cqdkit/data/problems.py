"""Collecting bad samples: raise at the first one, or skip and list them all (``skip_bad``)."""

from __future__ import annotations

import math

from ..errors import DataError
from .records import Box


class Problems:
    """Where readers report bad samples.

    With ``skip_bad=False`` the first report raises :class:`DataError`; with ``skip_bad=True`` reports
    are collected in :attr:`found` and the reader leaves the sample out.

    Example:
        >>> problems = Problems(skip_bad=True)
        >>> problems.report("images.txt line 3: expected 'id path', got 'x'")
        >>> problems.found
        ["images.txt line 3: expected 'id path', got 'x'"]
    """

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.found: list[str] = []

    def report(self, message: str) -> None:
        if not self.skip_bad:
            raise DataError(message)
        self.found.append(message)


def check_box(box: Box, where: str, problems: Problems) -> Box | None:
    """``box`` if it has a positive size and does not start left of or above the image; else report it.

    Whether it ends inside the image needs the image size: see :func:`box_outside`.
    """
    x, y, width, height = box
    if not all(math.isfinite(v) for v in box):
        problems.report(f"{where}: box {box} has a non-finite value")
    elif width <= 0 or height <= 0:
        problems.report(f"{where}: box {_show(box)} has zero size; expected a positive width and height")
    elif x < 0 or y < 0:
        problems.report(f"{where}: box {_show(box)} is outside the image; expected x >= 0 and y >= 0")
    else:
        return box
    return None


def box_outside(box: Box, width: int, height: int, tolerance: float = 1.0) -> str | None:
    """Why ``box`` does not fit a ``width x height`` image (``tolerance`` pixels allowed), or None."""
    x, y, w, h = box
    if x < -tolerance or y < -tolerance or x + w > width + tolerance or y + h > height + tolerance:
        return f"box {_show(box)} is outside the {width}x{height} image"
    return None


def _show(box: Box) -> str:
    x, y, width, height = box
    return f"(x={x:g}, y={y:g}, width={width:g}, height={height:g})"
