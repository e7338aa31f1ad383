"""The named sample that every dataset of paired views yields, and that the trainer reads.

A :class:`Sample` is one sample's views, or a batch of them: ``DataLoader``'s default collation keeps the
type, stacking each field. Pixels are ``uint8`` 0..255, channels first (the pixel contract of
:mod:`cqdkit.models.preprocessing`).

Example:
    >>> import torch
    >>> sample = Sample(torch.zeros(3, 8, 8, dtype=torch.uint8), torch.ones(3, 8, 8, dtype=torch.uint8),
    ...                 label=2, index=0, box=torch.full((4,), float("nan")))
    >>> int(sample.view("z").max())
    1
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..errors import SpecError

#: The two views of a sample: the high-quality x and the low-quality z.
VIEWS = ("x", "z")


def check_view(view: str) -> str:
    """``view`` if it is ``"x"`` or ``"z"``; else a :class:`~cqdkit.errors.SpecError` (a ValueError)."""
    if view not in VIEWS:
        raise SpecError(f"view must be 'x' or 'z', got {view!r}")
    return view


class Sample(NamedTuple):
    """One sample (or a batch) of paired views.

    Attributes:
        x: the high-quality view, ``(C, S, S)`` uint8 (``(N, C, S, S)`` in a batch): RGB, then any
            privileged channels.
        z: the low-quality view, ``(3, S, S)`` uint8: what the student sees, at train and at test time.
        label: the class index.
        index: the sample's position in its dataset (the key of cached teacher logits).
        box: float32 ``(x, y, width, height)`` of the object in z's pixel frame; NaN when unknown.
    """

    x: torch.Tensor
    z: torch.Tensor
    label: int | torch.Tensor
    index: int | torch.Tensor
    box: torch.Tensor

    def view(self, name: str) -> torch.Tensor:
        """The images of view ``name`` (``"x"`` or ``"z"``)."""
        return self.x if check_view(name) == "x" else self.z
