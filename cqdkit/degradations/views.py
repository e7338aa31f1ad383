"""The op protocol: what a degradation plugin's factory returns.

A :class:`~cqdkit.plugin.Degradation` entry's ``factory(**params)`` returns a *degradation op*: any
callable ``op(views, rng) -> views``. :class:`Views` carries the sample being built; an op returns a new
``Views`` (``views._replace(z=...)``) and never modifies the arrays it was given. ``rng`` is a
:class:`numpy.random.Generator` seeded from the sample's seed: draw every random number from it, so that
a pair is reproducible.

Most ops transform the low-quality view z only::

    class Sepia:
        def __call__(self, views: Views, rng: np.random.Generator) -> Views:
            z = (views.z.astype(np.float32) @ SEPIA.T).clip(0, 255).astype(np.uint8)
            return views._replace(z=z)

Optional attributes an op may define:

- ``needs_box = True``: the op needs the sample's object box; a sample without one is an error.
- ``sets_x = True``: the op defines the high-quality view x itself (``localization`` does); every other
  op must leave x untouched.
- ``describe() -> dict``: JSON-able facts beyond the spec's parameters (e.g. which edge detector ran); they
  appear in :meth:`cqdkit.degradations.PairMaker.describe` and in a run's config.json.

Ops must be picklable (DataLoader workers receive them).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from .image import Box


class Views(NamedTuple):
    """The state of one sample while its pair is made.

    Attributes:
        source: the whole image, ``H x W x 3`` ``uint8``, after the paired augmentation (if any).
        box: the object box ``(x, y, width, height)`` in ``source`` pixels, or None.
        x: the high-quality view, ``size x size x 3`` ``uint8``.
        z: the low-quality view being built, ``size x size x 3`` ``uint8``; before the first op it is x.
    """

    source: np.ndarray
    box: Box | None
    x: np.ndarray
    z: np.ndarray

    @property
    def size(self) -> int:
        """The side of the square views x and z."""
        return self.x.shape[0]


class DegradationOp(Protocol):
    """A compiled degradation: turns the current views into new ones (see the module docstring)."""

    def __call__(self, views: Views, rng: np.random.Generator) -> Views: ...
