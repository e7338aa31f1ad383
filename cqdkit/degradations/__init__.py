"""Degradations: how the high-quality view x and the low-quality view z of a sample are made.

Entry points::

    from cqdkit.degradations import make_pair, PairMaker, parse_spec, to_rgb_uint8

    maker = PairMaker("lowres:size=32+jpeg:severity=3", size=224, crop=True)
    x, z = maker(image, bbox=(x, y, w, h), seed=index)

Writing a degradation: a plugin yields a :class:`cqdkit.plugin.Degradation` whose ``factory(**params)``
returns an op ``op(views, rng) -> views`` (:class:`Views`, :class:`DegradationOp`); the protocol is
described in :mod:`cqdkit.degradations.views` and docs/degradations.md, and
:func:`cqdkit.testing.check_degradation` checks an implementation.

Importing this package is cheap (the built-in plugin module lives here): the names below load their
modules (numpy, OpenCV) on first access.
"""

from __future__ import annotations

from cqdkit.lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "make_pair": ".pipeline",
    "make_x": ".pipeline",
    "PairMaker": ".pipeline",
    "parse_spec": ".spec",
    "split_specs": ".spec",
    "to_rgb_uint8": "cqdkit.images",
    "Views": ".views",
    "DegradationOp": ".views",
    "PairedAugmentation": ".augment",
    "register_upsampler": ".upsample",
    "make_upsampler": ".upsample",
    "upsampler_names": ".upsample",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = sorted(_LAZY)
