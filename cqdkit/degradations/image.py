"""Image helpers shared by every degradation: normalising inputs, checking boxes, cropping, resizing.

Images are numpy arrays in RGB order. Everything cqdkit makes is ``H x W x 3`` ``uint8``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from ..errors import DataError, SpecError

#: An object box ``(x, y, width, height)`` in pixels of the image it belongs to.
Box = tuple[float, float, float, float]

#: Pixel-valued parameters (lowres ``size``, tps ``sigma``, blur ``sigma``) are given for this input size and
#: scale with the actual one, so a spec means the same degradation at every input size.
REFERENCE_SIZE = 224


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Normalise an image to ``H x W x 3`` ``uint8`` RGB.

    Gray (``H x W`` or ``H x W x 1``) is repeated to three channels; RGBA is composited on white;
    ``uint16`` is scaled to ``uint8`` (65535 -> 255). The input is returned as is when it is already
    ``H x W x 3`` ``uint8``.

    Example:
        >>> to_rgb_uint8(np.full((2, 3), 65535, np.uint16))[0, 0].tolist()
        [255, 255, 255]

    Raises:
        SpecError: not a numpy array, an empty image, or a dtype or shape other than those above.
    """
    if not isinstance(image, np.ndarray):
        raise SpecError(f"expected an image as a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise SpecError(f"expected an image of shape HxW, HxWx3 or HxWx4, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise SpecError(f"expected a non-empty image, got shape {image.shape}")
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise SpecError(f"expected a uint8 or uint16 image, got dtype {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        alpha = image[:, :, 3:].astype(np.float32) / 255.0
        blended = image[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.rint(blended).astype(np.uint8)
    return image


def check_box(bbox: Sequence[float], shape: tuple[int, ...]) -> Box:
    """Validate an object box ``(x, y, width, height)`` and clip it to an image of ``shape``.

    Raises:
        DataError: not four finite numbers, a non-positive width or height, or a box outside the image.
    """
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise DataError(f"expected a box (x, y, width, height) of four numbers, got {bbox!r}") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise DataError(f"box {bbox!r} needs finite coordinates and a positive width and height")
    height, width = shape[:2]
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    if x1 <= x0 or y1 <= y0:
        raise DataError(f"box {bbox!r} lies outside the {width}x{height} image")
    return (x0, y0, x1 - x0, y1 - y0)


def box_pixels(box: Box, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The integer pixel bounds ``(x0, y0, x1, y1)`` that cover ``box`` (at least one pixel)."""
    height, width = shape[:2]
    x, y, w, h = box
    x0, y0 = min(int(math.floor(x)), width - 1), min(int(math.floor(y)), height - 1)
    x1 = max(min(int(math.ceil(x + w)), width), x0 + 1)
    y1 = max(min(int(math.ceil(y + h)), height), y0 + 1)
    return x0, y0, x1, y1


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The pixels of ``image`` covered by ``box`` (a view, not a copy)."""
    x0, y0, x1, y1 = box_pixels(box, image.shape)
    return image[y0:y1, x0:x1]


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Stretch an image to ``size x size`` (no aspect preservation, as in the paper).

    Shrinking uses area averaging (no aliasing), enlarging bicubic interpolation. An image that already
    has the size is returned as is.
    """
    height, width = image.shape[:2]
    if height == size and width == size:
        return image
    shrink = height >= size and width >= size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def scaled_pixels(value: float, size: int) -> float:
    """A pixel length given at :data:`REFERENCE_SIZE`, scaled to an image of ``size`` pixels."""
    return value * size / REFERENCE_SIZE
