"""cqdkit-sepia: a sepia-tone degradation, as an example of a third-party cqdkit plugin.

The plugin yields one :class:`cqdkit.plugin.Degradation` from the ``cqdkit_degradations`` hook. Its factory
returns an *op*: a picklable callable ``op(views, rng) -> views`` that makes the low-quality view z from the
current one and leaves the high-quality view x alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cqdkit.plugin import Degradation, Param, hookimpl

__version__ = "0.1.0"

#: The classic sepia matrix (rows: output R, G, B; columns: input R, G, B).
SEPIA = np.array(
    [[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]],
    dtype=np.float32,
)


class Sepia:
    """Blend z with its sepia-toned version: ``strength`` 0 keeps z, 1 is full sepia."""

    def __init__(self, strength: float = 1.0) -> None:
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        mix = (1.0 - strength) * np.eye(3, dtype=np.float32) + strength * SEPIA
        self.matrix = mix.T.copy()  # applied to row vectors of pixels

    def __call__(self, views, rng: np.random.Generator):
        toned = views.z.astype(np.float32) @ self.matrix
        return views._replace(z=np.clip(toned + 0.5, 0, 255).astype(np.uint8))


def _strength(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"expected a number in [0, 1], got {text}")
    return value


@hookimpl
def cqdkit_degradations() -> Iterator[Degradation]:
    yield Degradation(
        name="sepia",
        summary="Sepia-toned photograph (example plugin)",
        factory=Sepia,
        params=(Param(name="strength", default=1.0, parse=_strength, help="0 = unchanged, 1 = full sepia"),),
        random=False,
    )
