"""The ``privileged`` op: x gains channels rendered from the sample's annotations; z stays RGB.

Each channel is rendered in the source image's frame (where the annotations and the box live) and then
cut and stretched exactly as x's RGB channels were (:meth:`cqdkit.degradations.Views.in_x_frame`), so
the paired augmentation, the box crop and the resize keep it aligned with x's pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from cqdkit.degradations import Views
from cqdkit.images import box_pixels

from . import CHANNELS


def mask_channel(views: Views) -> np.ndarray:
    """The dataset's segmentation mask, as given."""
    return views.annotations["mask"]


def box_channel(views: Views) -> np.ndarray:
    """255 inside the object's box (the pixels that cover it), 0 outside."""
    assert views.box is not None  # PairMaker refuses samples without a box (needs_box)
    x0, y0, x1, y1 = box_pixels(views.box, views.source.shape)
    plane = np.zeros(views.source.shape[:2], np.uint8)
    plane[y0:y1, x0:x1] = 255
    return plane


def depth_channel(views: Views) -> np.ndarray:
    """Euclidean distance to the mask's outline inside the object, scaled so its deepest point is 255."""
    inside = (views.annotations["mask"] >= 128).astype(np.uint8)
    distance = cv2.distanceTransform(inside, cv2.DIST_L2, 5)
    deepest = float(distance.max())
    if deepest == 0.0:
        return np.zeros_like(inside)
    return np.rint(distance * (255.0 / deepest)).astype(np.uint8)


RENDERERS: dict[str, Callable[[Views], np.ndarray]] = {
    "mask": mask_channel,
    "box": box_channel,
    "depth": depth_channel,
}


class Privileged:
    """Append ``channels`` (names from :data:`cqdkit_privileged.CHANNELS`) to x, in order; z is untouched.

    Example:
        >>> from cqdkit.degradations import PairMaker  # doctest: +SKIP
        >>> maker = PairMaker("privileged:channels=mask/box", size=64)  # doctest: +SKIP
        >>> x, z = maker(image, bbox=box, annotations={"mask": mask})  # doctest: +SKIP
        >>> x.shape, z.shape  # doctest: +SKIP
        ((64, 64, 5), (64, 64, 3))
    """

    def __init__(self, channels: Sequence[str] = ("mask",)) -> None:
        unknown = [name for name in channels if name not in CHANNELS]
        if unknown or not channels:
            raise ValueError(f"channels must be some of {', '.join(CHANNELS)}, got {list(channels)}")
        self.x_channels = tuple(channels)
        self.needs_box = "box" in self.x_channels
        self.needs_annotations = ("mask",) if {"mask", "depth"} & set(self.x_channels) else ()

    def __call__(self, views: Views, rng: np.random.Generator) -> Views:
        planes = [views.in_x_frame(RENDERERS[name](views)) for name in self.x_channels]
        return views._replace(x=np.dstack([views.x, *planes]))
