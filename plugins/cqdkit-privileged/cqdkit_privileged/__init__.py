"""cqdkit-privileged: extra channels for the teacher that exist only at training time.

The ``privileged`` degradation appends channels to the high-quality view x -- the object's segmentation
``mask`` (from the dataset's annotation images), its filled ``box``, or a depth-like map of the mask --
and leaves the low-quality view z as the plain RGB image. The teacher (trained on x) is built with
``in_chans`` = 3 + the number of channels; the student sees RGB only and learns from the teacher by CQD
(Su & Maji, section 1.2: "privileged information"). Combine it with any other degradation of z::

    cqdkit run --degrade privileged:channels=mask --no-crop --method cqd
    cqdkit run --degrade privileged:channels=mask/depth+lowres --method cqd

This module stays light (it is imported whenever cqdkit lists its plugins); the op lives in
:mod:`cqdkit_privileged.channels` and is imported when a spec is compiled.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cqdkit.plugin import Degradation, Param, hookimpl

__version__ = "0.1.0"

#: The channels the degradation can add, and what each is.
CHANNELS: dict[str, str] = {
    "mask": "the object's segmentation mask (the dataset's 'mask' annotation images)",
    "box": "the object's box, filled (any dataset with boxes)",
    "depth": "a depth-like map: distance to the mask's outline, brightest at the object's core",
}

#: Joins several channels in one parameter value: ``channels=mask/depth`` ('+' joins degradations).
SEPARATOR = "/"


def parse_channels(text: str) -> tuple[str, ...]:
    """``"mask/depth"`` -> ``("mask", "depth")``; every name known, none twice.

    Example:
        >>> parse_channels("mask/box")
        ('mask', 'box')
    """
    names = tuple(name.strip() for name in text.split(SEPARATOR))
    for name in names:
        if name not in CHANNELS:
            raise ValueError(f"unknown channel {name!r}")
    if len(set(names)) != len(names):
        raise ValueError("a channel is named twice")
    return names


def _privileged(**params: Any) -> Any:
    from .channels import Privileged

    return Privileged(**params)


@hookimpl
def cqdkit_degradations() -> Iterator[Degradation]:
    yield Degradation(
        name="privileged",
        summary="x = RGB + channels only the teacher sees (mask, box, depth); z = RGB (privileged plugin)",
        factory=_privileged,
        params=(
            Param(
                name="channels",
                default=("mask",),
                parse=parse_channels,
                help=f"channels joined with {SEPARATOR!r}: " + "; ".join(f"{k} = {v}" for k, v in CHANNELS.items()),
            ),
        ),
        random=False,
    )
