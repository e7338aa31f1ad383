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
- ``needs_annotations = ("mask",)``: the op reads these annotation images (:attr:`Views.annotations`); a
  sample without one of them is an error.
- ``sets_x = True``: the op defines the high-quality view x itself (``localization`` does), makes z from
  the whole source, and sets :attr:`Views.region` to the part of the source that x shows; it must come
  first. It may define ``describe_x() -> dict`` describing its x for sharing teachers between pipelines
  (``localization``: ``{"crop": True}``); without it, a teacher is shared only with the same op. Every
  other op must leave x untouched, except for appending channels:
- ``x_channels = ("mask",)``: the op appends these channels, in this order, to x (``H x W x 3`` becomes
  ``H x W x (3 + k)``); x's first three channels stay RGB and z stays RGB. Privileged information for the
  teacher: the student, which sees z, never gets it. Cut the channel with :meth:`Views.in_x_frame` so it
  stays aligned with x's pixels::

      class Mask:
          needs_annotations = ("mask",)
          x_channels = ("mask",)

          def __call__(self, views: Views, rng: np.random.Generator) -> Views:
              mask = views.in_x_frame(views.annotations["mask"])
              return views._replace(x=np.dstack([views.x, mask]))
- ``describe() -> dict``: JSON-able facts beyond the spec's parameters (e.g. which edge detector ran); they
  appear in :meth:`cqdkit.degradations.PairMaker.describe` and in a run's config.json.

Ops must be picklable (DataLoader workers receive them).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple, Protocol

import numpy as np

from ..images import Box, crop, resize_square

#: No annotations (read-only, so that no op can add to a shared default).
NO_ANNOTATIONS: Mapping[str, np.ndarray] = MappingProxyType({})


class Views(NamedTuple):
    """The state of one sample while its pair is made.

    Attributes:
        source: the whole image, ``H x W x 3`` ``uint8``, after the paired augmentation (if any).
        box: the object box ``(x, y, width, height)`` in ``source`` pixels, or None.
        x: the high-quality view, ``size x size x C`` ``uint8``: RGB, then any channels ops appended.
        z: the low-quality view being built, ``size x size x 3`` ``uint8``; before the first op it is x.
        annotations: the sample's annotation images by name (``"mask"``), each ``H x W`` ``uint8`` aligned
            with ``source`` (augmented with it); empty unless an op declares ``needs_annotations``.
        region: the part of ``source`` that x shows, stretched to ``size x size``: the box when x is the
            box crop, None when x is the whole source.
    """

    source: np.ndarray
    box: Box | None
    x: np.ndarray
    z: np.ndarray
    annotations: Mapping[str, np.ndarray] = NO_ANNOTATIONS
    region: Box | None = None

    @property
    def size(self) -> int:
        """The side of the square views x and z."""
        return self.x.shape[0]

    def in_x_frame(self, array: np.ndarray) -> np.ndarray:
        """An ``H x W`` array aligned with ``source``, cut and stretched exactly as x's RGB was.

        Example:
            >>> views = Views(np.zeros((4, 6, 3), np.uint8), None, np.zeros((2, 2, 3), np.uint8), None)
            >>> views.in_x_frame(np.full((4, 6), 7, np.uint8)).tolist()
            [[7, 7], [7, 7]]
        """
        return resize_square(crop(array, self.region) if self.region is not None else array, self.size)


class DegradationOp(Protocol):
    """A compiled degradation: turns the current views into new ones (see the module docstring)."""

    def __call__(self, views: Views, rng: np.random.Generator) -> Views: ...
