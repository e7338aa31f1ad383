"""Built-in degradation plugin: cqdkit's degradations, registered through the ``cqdkit_degradations`` hook.

Imports only the standard library and cqdkit's plugin core: each factory imports its implementation
module (numpy, OpenCV) when a spec is compiled, so listing plugins stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cqdkit.plugin import Degradation, Param, hookimpl

from ..images import REFERENCE_SIZE
from ..plugin.params import at_most, non_negative_float, optional_path, positive_int
from .upsample import upsampler_name

SEVERITIES = (1, 2, 3, 4, 5)


def _localization(**params: Any) -> Any:
    from .localization import Localization

    return Localization(**params)


def _lowres(**params: Any) -> Any:
    from .lowres import LowRes

    return LowRes(**params)


def _edges(**params: Any) -> Any:
    from .edges import Edges

    return Edges(**params)


def _tps(**params: Any) -> Any:
    from .tps import Tps

    return Tps(**params)


def _corruption(class_name: str) -> Any:
    def factory(**params: Any) -> Any:
        from . import corruptions

        return getattr(corruptions, class_name)(**params)

    factory.__name__ = factory.__qualname__ = f"make_{class_name.lower()}"
    return factory


def _severity(default: int) -> Param:
    return Param(name="severity", default=default, parse=int, help="ImageNet-C severity", choices=SEVERITIES)


#: The largest knot grid side: the spline solves a (grid² + 3)² system, 270 MB at 64.
MAX_TPS_GRID = 64


def _grid(text: str) -> int:
    """A knot grid side from 2 to :data:`MAX_TPS_GRID`."""
    value = int(text)
    if not 2 <= value <= MAX_TPS_GRID:
        raise ValueError(f"must be from 2 to {MAX_TPS_GRID}")
    return value


@hookimpl
def cqdkit_degradations() -> Iterator[Degradation]:
    yield Degradation(
        name="localization",
        summary="x = the object box crop, z = the whole image (paper Fig. 3a; needs boxes)",
        factory=_localization,
    )
    yield Degradation(
        name="lowres",
        summary="z = x shrunk to `size` px (at 224) and upsampled back, bicubic by default (Fig. 3b)",
        factory=_lowres,
        params=(
            Param(name="size", default=50, parse=positive_int, help="side of the small image at 224 px"),
            Param(name="upsample", default="bicubic", parse=upsampler_name, help="an upsampler name"),
            Param(name="weights", default=None, parse=optional_path, help="a learned upsampler's weights"),
        ),
    )
    yield Degradation(
        name="edges",
        summary="z = a line drawing of x, bright lines on black (Fig. 3c; structured forests or gradient)",
        factory=_edges,
        params=(
            Param(name="detector", default="auto", help="edge detector", choices=("auto", "sed", "gradient")),
            Param(name="model", default=None, parse=optional_path, help="structured-forest model file"),
        ),
    )
    yield Degradation(
        name="tps",
        summary="z = x warped by a random thin-plate spline through a jittered knot grid (Fig. 3d)",
        factory=_tps,
        params=(
            Param(name="grid", default=14, parse=_grid, help="knots per side"),
            Param(name="sigma", default=4.0, parse=at_most(non_negative_float, REFERENCE_SIZE, " (the image's side "
                  "at 224 px: more moves knots beyond the whole image)"), help="knot jitter std, px at 224 (0 to 224)"),
        ),
        random=True,
    )
    corruptions = [
        ("gray", "z = x desaturated (severity 5: grayscale)", 5, False),
        ("noise", "z = x plus Gaussian noise (ImageNet-C levels)", 3, True),
        ("blur", "z = x Gaussian-blurred (ImageNet-C levels)", 3, False),
        ("jpeg", "z = x JPEG-compressed (ImageNet-C levels)", 3, False),
        ("pixelate", "z = x pixelated (ImageNet-C levels)", 3, False),
    ]
    for name, summary, severity, random in corruptions:
        factory, params = _corruption(name.capitalize()), (_severity(severity),)
        yield Degradation(name=name, summary=summary, factory=factory, params=params, random=random)
