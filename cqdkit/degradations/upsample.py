"""Upsamplers for ``lowres``: how the small image is brought back to the input size.

An upsampler is a callable ``upsampler(small, size) -> image`` taking an ``h x w x 3`` ``uint8`` image and
returning a ``size x size x 3`` ``uint8`` one. Upsamplers are registered by name with a factory
``factory(weights=None) -> upsampler``; ``weights`` is the file a learned upsampler loads (the spec's
``weights=PATH``). A factory may be given as ``"module:attribute"`` so its module is imported only when a
spec uses it. The learned super-resolution upsampler ``srcnn`` (paper appendix, Table 4) is registered
that way, so torch loads only for specs such as ``lowres:size=56,upsample=srcnn,weights=sr.safetensors``
(:mod:`cqdkit.degradations.srcnn_upsampler`; train the weights with ``cqdkit sr-train``). Another one is added in
one line::

    register_upsampler("mysr", "mypackage.superres:make_mysr")

This module imports only the standard library (spec validation uses it); OpenCV loads on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import SpecError, closest_matches

Upsampler = Callable[[Any, int], Any]
UpsamplerFactory = Callable[..., Upsampler]


@dataclass(frozen=True)
class InterpolationUpsampler:
    """Plain OpenCV interpolation (``bicubic`` is the paper's choice)."""

    method: str  # an OpenCV INTER_* name without the prefix: "CUBIC", "LINEAR", ...

    def __call__(self, small: Any, size: int) -> Any:
        import cv2

        return cv2.resize(small, (size, size), interpolation=getattr(cv2, "INTER_" + self.method))


def _interpolation(method: str) -> UpsamplerFactory:
    def factory(weights: str | None = None) -> Upsampler:
        if weights is not None:
            raise SpecError(f"lowres: the {method.lower()} upsampler takes no weights (got {weights!r})")
        return InterpolationUpsampler(method)

    return factory


_REGISTRY: dict[str, UpsamplerFactory | str] = {
    "bicubic": _interpolation("CUBIC"),
    "bilinear": _interpolation("LINEAR"),
    "nearest": _interpolation("NEAREST"),
    "lanczos": _interpolation("LANCZOS4"),
    "srcnn": "cqdkit.degradations.srcnn_upsampler:make_srcnn",
}


def register_upsampler(name: str, factory: UpsamplerFactory | str) -> None:
    """Add an upsampler: a factory ``factory(weights=None)``, or its ``"module:attribute"`` path."""
    _REGISTRY[name] = factory


def upsampler_names() -> list[str]:
    """The registered upsampler names, sorted."""
    return sorted(_REGISTRY)


def upsampler_name(text: str) -> str:
    """Parse the ``upsample`` parameter of a spec: a registered upsampler name."""
    if text not in _REGISTRY:
        hint = closest_matches(text, _REGISTRY, n=1)
        suggestion = f"did you mean {hint[0]!r}? " if hint else ""
        raise ValueError(f"unknown upsampler; {suggestion}known: {', '.join(upsampler_names())}")
    return text


def make_upsampler(name: str, weights: str | None = None) -> Upsampler:
    """Build the upsampler registered as ``name``.

    Raises:
        SpecError: an unknown name, or options the upsampler does not accept.
    """
    try:
        factory = _REGISTRY[upsampler_name(name)]
    except ValueError as error:
        raise SpecError(f"lowres: upsample={name!r}: {error}") from None
    if isinstance(factory, str):
        module_name, _, attribute = factory.partition(":")
        factory = getattr(importlib.import_module(module_name), attribute)
    return factory(weights=weights)
