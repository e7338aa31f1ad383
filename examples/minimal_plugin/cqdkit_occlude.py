"""cqdkit-occlude: a minimal cqdkit degradation plugin. z = x with a random gray square hiding part of it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from cqdkit.plugin import Degradation, Param, hookimpl

if TYPE_CHECKING:  # for type hints only: every cqdkit command imports this module at startup
    from cqdkit.degradations import Views


class Occlude:
    """The op: hide a square of side ``fraction * size`` at a random place in z under flat gray."""

    def __init__(self, fraction: float = 0.3) -> None:
        self.fraction = fraction

    def __call__(self, views: Views, rng: np.random.Generator) -> Views:
        side = max(1, round(self.fraction * views.size))
        top, left = rng.integers(0, views.size - side, size=2, endpoint=True)  # random: from rng only
        z = views.z.copy()  # never modify the arrays you are given
        z[top : top + side, left : left + side] = 128
        return views._replace(z=z)


def fraction(text: str) -> float:
    """Parse the ``fraction`` parameter; a ValueError becomes a clear error naming the spec."""
    value = float(text)
    if not 0.0 < value <= 0.5:
        raise ValueError(f"expected a number in (0, 0.5], got {text}")
    return value


#: The spec parameter: ``occlude:fraction=0.4``.
FRACTION = Param(
    name="fraction", default=0.3, parse=fraction, help="the square's side over z's side, in (0, 0.5]"
)


@hookimpl
def cqdkit_degradations() -> Iterator[Degradation]:
    yield Degradation(
        name="occlude",
        summary="z = x with a random gray square over it (minimal example plugin)",
        factory=Occlude,
        params=(FRACTION,),
        random=True,
    )
