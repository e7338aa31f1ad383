"""Collecting bad samples: raise at the first one, or skip and list them all (``skip_bad``)."""

from __future__ import annotations

from ..errors import DataError
from ..images import Box, box_problem, describe_box
from .records import printable


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
        message = printable(message)  # a file name that is not UTF-8 shows its bytes as \xNN
        if not self.skip_bad:
            raise DataError(message)
        self.found.append(message)

    def check_box(self, box: Box, where: str) -> Box | None:
        """``box`` if it has a positive size and does not start left of or above the image; else report it.

        Whether it ends inside the image needs the image size: see :func:`cqdkit.images.box_outside`.
        """
        problem = box_problem(box)
        if problem is None and (box[0] < 0 or box[1] < 0):
            problem = f"box {describe_box(box)} is outside the image; expected x >= 0 and y >= 0"
        if problem is None:
            return box
        self.report(f"{where}: {problem}")
        return None
