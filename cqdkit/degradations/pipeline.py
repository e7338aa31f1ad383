"""From a raw sample to the pair (x, z) that CQD trains on.

The data path, in order::

    image, box --to_rgb_uint8--> source --paired augmentation (optional)--> source, box
        --crop (optional) and stretch--> x;  z = x --op 1--> ... --op k--> z

``PairMaker`` compiles a spec once (plugin lookup, parameter checks, op construction) and is then called
per sample; ``make_pair`` is the one-off shortcut.

Annotation images (a segmentation mask, ...) travel with the source: the paired augmentation moves them
with it, and an op that appends them to x as privileged channels (``x_channels``) cuts them as x was cut
(:meth:`Views.in_x_frame`), so x's extra channels stay aligned with its RGB ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import DataError, PluginError, SpecError
from ..plugin import get_plugin_manager
from ..plugin.guard import reraise
from .augment import PairedAugmentation
from ..images import Box, crop, fit_box, resize_square, to_rgb_uint8
from .spec import resolve_spec
from .views import NO_ANNOTATIONS, DegradationOp, Views

#: The names of x's first three channels.
RGB = ("red", "green", "blue")

Annotations = Mapping[str, np.ndarray]


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
        sets_x: whether an op defines x itself (``localization``); z is then made from the whole source.
        x_channels: the names of x's channels: red, green, blue, then those ops append (privileged
            channels such as ``"mask"``); z always has the three RGB channels.
        needs_annotations: the annotation images the ops read (pass them to the call).

    Raises:
        UnknownNameError, SpecError: a bad spec (see :func:`.spec.parse_spec`), a bad size, an op that
            sets x (``localization``) anywhere but first, or an op whose ``check_view_size(size)`` refuses
            the view size (``lowres`` with a size that does not shrink the view).
    """

    def __init__(
        self, spec: str, *, size: int = 224, crop: bool = False, augment: bool = False, manager: Any = None
    ) -> None:
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise SpecError(f"expected a positive integer size, got {size!r}")
        manager = manager if manager is not None else get_plugin_manager()
        resolved = resolve_spec(spec, manager)
        self.spec, self.size, self.crop, self.augment = spec, int(size), bool(crop), bool(augment)
        #: The plugin of each op, named when its code raises (see :mod:`cqdkit.plugin.guard`).
        self.op_plugins = [manager.provider("degradation", entry.name) for entry, _ in resolved]
        self.ops: list[DegradationOp] = []
        for (entry, params), plugin in zip(resolved, self.op_plugins):
            try:
                self.ops.append(entry.factory(**params))
            except Exception as error:
                reraise(plugin, "degradation factory", error)
        self.op_params = [(entry.name, params) for entry, params in resolved]
        for index, op in enumerate(self.ops):
            if index > 0 and getattr(op, "sets_x", False):
                raise SpecError(f"{resolved[index][0].name} defines x and must come first in spec {spec!r}")
            check_view_size = getattr(op, "check_view_size", None)
            if callable(check_view_size):
                try:
                    check_view_size(self.size)
                except SpecError as error:
                    raise SpecError(f"degradation spec {spec!r}: {error}") from None
        self.needs_box = any(getattr(op, "needs_box", False) for op in self.ops)
        self.sets_x = any(getattr(op, "sets_x", False) for op in self.ops)
        self.x_channels: tuple[str, ...] = RGB + tuple(
            str(channel) for op in self.ops for channel in getattr(op, "x_channels", ())
        )
        needed = (name for op in self.ops for name in getattr(op, "needs_annotations", ()))
        self.needs_annotations: tuple[str, ...] = tuple(dict.fromkeys(needed))
        self.augmentation = PairedAugmentation() if self.augment else None
        self.x_random = self.augment
        self.random = self.augment or any(entry.random for entry, _ in resolved)

    def __call__(
        self,
        image: np.ndarray,
        bbox: Sequence[float] | None = None,
        seed: int = 0,
        annotations: Annotations | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Make the pair ``(x, z)``: fresh ``size x size x C`` and ``size x size x 3`` ``uint8`` arrays.

        ``C`` is ``len(x_channels)``: 3 unless an op appends privileged channels to x. ``annotations`` are
        the sample's annotation images (``{"mask": H x W uint8}``, the size of ``image``); only those in
        :attr:`needs_annotations` are used.

        Raises:
            SpecError: an image that is not HxW, HxWx3 or HxWx4 uint8/uint16, or a negative seed.
            DataError: a bad box, no box where one is needed, or a missing or misshapen annotation.
        """
        source, box, extra = self._prepare(image, bbox, seed, annotations or {})
        if self.needs_box and box is None:
            names = self._ops_needing(lambda op: getattr(op, "needs_box", False))
            raise DataError(f"{', '.join(names)} needs an object box, and this sample has none")
        x = make_x(source, box, self.size, self.crop)
        views = Views(source, box, x, x, extra, box if self.crop else None)
        for index, op in enumerate(self.ops, start=1):
            try:
                views = op(views, np.random.default_rng([seed, index]))
            except Exception as error:  # a plugin's bug: one line naming it (cqdkit.plugin.guard)
                reraise(self.op_plugins[index - 1], "degradation op", error)
        x, z = views.x, views.z
        self._check_output(x, "x", len(self.x_channels))
        self._check_output(z, "z", 3)
        if np.may_share_memory(x, image):
            x = x.copy()
        if z is x or np.may_share_memory(z, image):
            z = z.copy()
        return x, z

    def source(
        self, image: np.ndarray, bbox: Sequence[float] | None = None, seed: int = 0
    ) -> tuple[np.ndarray, Box | None]:
        """The normalised (and, with ``augment``, augmented) source image and box that x and z come from."""
        source, box, _ = self._prepare(image, bbox, seed, None)
        return source, box

    def _prepare(
        self, image: np.ndarray, bbox: Sequence[float] | None, seed: int, annotations: Annotations | None
    ) -> tuple[np.ndarray, Box | None, Annotations]:
        """The source, its box and the needed annotations (None: skip them), augmented together."""
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise SpecError(f"expected a non-negative integer seed, got {seed!r}")
        source = to_rgb_uint8(image)
        box = None if bbox is None else fit_box(bbox, source.shape)
        extra = self._annotations(annotations, source.shape[:2]) if annotations is not None else {}
        if self.augmentation is not None:
            rng = np.random.default_rng([seed, 0])
            if not extra:
                source, box = self.augmentation(source, box, rng)
                return source, box, NO_ANNOTATIONS
            stacked, box = self.augmentation(np.dstack([source, *extra.values()]), box, rng)
            source = np.ascontiguousarray(stacked[:, :, :3])
            extra = {name: np.ascontiguousarray(stacked[:, :, 3 + k]) for k, name in enumerate(extra)}
        return source, box, extra if extra else NO_ANNOTATIONS

    def _annotations(self, given: Annotations, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        """The annotation images the ops need, checked against the image's ``(height, width)``."""
        chosen = {}
        for name in self.needs_annotations:
            if name not in given:
                names = self._ops_needing(lambda op: name in getattr(op, "needs_annotations", ()))
                have = ", ".join(sorted(given)) or "none"
                raise DataError(
                    f"{', '.join(names)} needs the {name!r} annotation, and this sample has none (it has: {have})"
                )
            array = given[name]
            if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.shape != tuple(shape):
                got = f"{array.shape} {array.dtype}" if isinstance(array, np.ndarray) else type(array).__name__
                raise DataError(f"annotation {name!r} is {got}; expected {tuple(shape)} uint8 like the image")
            chosen[name] = array
        return chosen

    def _ops_needing(self, predicate: Any) -> list[str]:
        return [name for (name, _), op in zip(self.op_params, self.ops) if predicate(op)]

    def _check_output(self, view: np.ndarray, which: str, channels: int) -> None:
        shape = (self.size, self.size, channels)
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
            "x_channels": list(self.x_channels),
        }

    def describe_x(self) -> dict[str, Any]:
        """What x depends on (z aside): its size, crop and augmentation, and the ops that set x or append
        channels to it. Two pipelines with equal descriptions make the same x from the same sample.

        An op that sets x describes its x with ``describe_x()`` (``localization``: ``{"crop": True}``, the
        box crop, as ``crop=True`` makes it); without that method the op itself is the description.
        """
        description: dict[str, Any] = {"image_size": self.size, "crop": self.crop, "augment": self.augment}
        ops = self.describe()["ops"]
        x_ops = []
        for described, op in zip(ops, self.ops):
            if getattr(op, "sets_x", False) and callable(getattr(op, "describe_x", None)):
                description.update(op.describe_x())
            elif getattr(op, "sets_x", False) or getattr(op, "x_channels", ()):
                x_ops.append(described)
        if x_ops or len(self.x_channels) != len(RGB):
            description["x_channels"] = list(self.x_channels)
            description["x_ops"] = x_ops
        return description

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
