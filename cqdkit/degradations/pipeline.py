"""From a raw sample to the pair (x, z) that CQD trains on.

The data path, in order::

    image, box --to_rgb_uint8--> source --paired augmentation (optional)--> source, box
        --crop (optional) and stretch--> x;  z = x --op 1--> ... --op k--> z

``PairMaker`` compiles a spec once (plugin lookup, parameter checks, op construction) and is then called
per sample; ``make_pair`` is the one-off shortcut.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError, PluginError, SpecError
from .augment import PairedAugmentation
from .image import Box, check_box, crop, resize_square, to_rgb_uint8
from .spec import resolve_spec
from .views import DegradationOp, Views


def make_x(source: np.ndarray, box: Box | None, size: int, crop_to_box: bool) -> np.ndarray:
    """The high-quality view before any op: the box crop (``crop_to_box``) or the whole source, stretched."""
    if crop_to_box:
        if box is None:
            raise DataError("crop=True needs an object box, and this sample has none")
        source = crop(source, box)
    return resize_square(source, size)


class PairMaker:
    """A compiled degradation spec: ``maker(image, bbox=None, seed=0) -> (x, z)``.

    Args:
        spec: a spec string, e.g. ``"lowres:size=32+jpeg:severity=3"`` (see :mod:`.spec`).
        size: side of the square views x and z.
        crop: x (and so z) is made from the object box crop instead of the whole image (the paper's
            "localized" images for lowres, edges and tps on CUB).
        augment: apply a random paired flip and crop (drawn from the seed) to the source first.
        manager: the plugin manager to look names up in; the process-wide one by default.

    Attributes:
        random: whether x or z changes with the seed.
        x_random: whether x itself changes with the seed (only the augmentation does that).

    Raises:
        UnknownNameError, SpecError: a bad spec (see :func:`.spec.parse_spec`), a bad size, or an op that
            sets x (``localization``) anywhere but first.
    """

    def __init__(
        self, spec: str, *, size: int = 224, crop: bool = False, augment: bool = False, manager: Any = None
    ) -> None:
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise SpecError(f"expected a positive integer size, got {size!r}")
        resolved = resolve_spec(spec, manager)
        self.spec, self.size, self.crop, self.augment = spec, int(size), bool(crop), bool(augment)
        self.ops: list[DegradationOp] = [entry.factory(**params) for entry, params in resolved]
        self.op_params = [(entry.name, params) for entry, params in resolved]
        for index, op in enumerate(self.ops):
            if index > 0 and getattr(op, "sets_x", False):
                raise SpecError(f"{resolved[index][0].name} defines x and must come first in spec {spec!r}")
        self.needs_box = any(getattr(op, "needs_box", False) for op in self.ops)
        self.augmentation = PairedAugmentation() if self.augment else None
        self.x_random = self.augment
        self.random = self.augment or any(entry.random for entry, _ in resolved)

    def __call__(
        self, image: np.ndarray, bbox: Sequence[float] | None = None, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Make the pair ``(x, z)``: two fresh ``size x size x 3`` ``uint8`` arrays.

        Raises:
            SpecError: an image that is not HxW, HxWx3 or HxWx4 uint8/uint16, or a negative seed.
            DataError: a bad box, or no box where one is needed.
        """
        source, box = self.source(image, bbox, seed)
        if self.needs_box and box is None:
            needing = zip(self.op_params, self.ops)
            names = [name for (name, _), op in needing if getattr(op, "needs_box", False)]
            raise DataError(f"{', '.join(names)} needs an object box, and this sample has none")
        x = make_x(source, box, self.size, self.crop)
        views = Views(source, box, x, x)
        for index, op in enumerate(self.ops, start=1):
            views = op(views, np.random.default_rng([seed, index]))
        x, z = views.x, views.z
        self._check_output(x, "x")
        self._check_output(z, "z")
        if np.may_share_memory(x, image):
            x = x.copy()
        if z is x or np.may_share_memory(z, image):
            z = z.copy()
        return x, z

    def source(
        self, image: np.ndarray, bbox: Sequence[float] | None = None, seed: int = 0
    ) -> tuple[np.ndarray, Box | None]:
        """The normalised (and, with ``augment``, augmented) source image and box that x and z come from."""
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise SpecError(f"expected a non-negative integer seed, got {seed!r}")
        source = to_rgb_uint8(image)
        box = None if bbox is None else check_box(bbox, source.shape)
        if self.augmentation is not None:
            source, box = self.augmentation(source, box, np.random.default_rng([seed, 0]))
        return source, box

    def _check_output(self, view: np.ndarray, which: str) -> None:
        shape = (self.size, self.size, 3)
        if not isinstance(view, np.ndarray) or view.shape != shape or view.dtype != np.uint8:
            got = f"{view.shape} {view.dtype}" if isinstance(view, np.ndarray) else type(view).__name__
            raise PluginError(
                f"degradation spec {self.spec!r} produced {which} of {got}; expected {shape} uint8"
            )

    def describe(self) -> dict[str, Any]:
        """A JSON-able record of the pipeline: every op with all its parameters, and what ran."""
        ops = []
        for (name, params), op in zip(self.op_params, self.ops):
            facts = op.describe() if callable(getattr(op, "describe", None)) else {}
            ops.append({"name": name, "params": dict(params), **facts})
        return {
            "spec": self.spec,
            "ops": ops,
            "size": self.size,
            "crop": self.crop,
            "augment": self.augment,
            "augmentation": dataclasses.asdict(self.augmentation) if self.augmentation else None,
            "random": self.random,
            "x_random": self.x_random,
        }

    def __repr__(self) -> str:
        return f"PairMaker({self.spec!r}, size={self.size}, crop={self.crop}, augment={self.augment})"


def make_pair(
    spec: str,
    image: np.ndarray,
    *,
    bbox: Sequence[float] | None = None,
    size: int = 224,
    seed: int = 0,
    crop: bool = False,
    augment: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Make one pair ``(x, z)``; builds a :class:`PairMaker` (reuse one for many samples).

    Example:
        >>> image = np.zeros((120, 160, 3), np.uint8)
        >>> x, z = make_pair("lowres", image, size=64)
        >>> x.shape, z.shape
        ((64, 64, 3), (64, 64, 3))
    """
    return PairMaker(spec, size=size, crop=crop, augment=augment)(image, bbox=bbox, seed=seed)
