"""Reading an image file as an ``H x W x 3`` uint8 RGB array, whatever its mode.

Grayscale, palette, CMYK, RGBA (composited over white) and 16-bit images all come back as 8-bit RGB.
A missing, truncated or corrupt file raises :class:`~cqdkit.errors.DataError` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

#: File name extensions the folder reader treats as images.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})

Size = tuple[int, int]  # (width, height)


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """The image at ``path`` as an ``H x W x 3`` uint8 RGB array.

    Example:
        >>> load_image("images/001.Black_footed_Albatross/x.jpg").shape  # doctest: +SKIP
        (375, 500, 3)

    Raises:
        DataError: the file is missing, truncated, corrupt or not an image.
    """
    return decode_image(path)[0]


def decode_image(
    path: str | os.PathLike[str], draft: Callable[[Size], Size] | None = None
) -> tuple[np.ndarray, Size]:
    """Decode ``path``; returns the RGB array and the stored image's ``(width, height)``.

    ``draft`` maps the stored ``(width, height)`` to the smallest ``(width, height)`` the caller needs:
    JPEGs may then be decoded directly at 1/2, 1/4 or 1/8 scale (much faster), so the array can be
    smaller than the stored size.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            size = image.size
            if draft is not None and image.format == "JPEG":
                image.draft("RGB", draft(size))
            image.load()
            return to_rgb(image), size
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: expected an image file, found a folder") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"{path}: cannot decode the image ({error}); expected a complete image file") from None


def to_rgb(image: Image.Image) -> np.ndarray:
    """A PIL image of any mode as an ``H x W x 3`` uint8 RGB array."""
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        return _gray_to_rgb(_high_depth_to_uint8(np.asarray(image), mode))
    if mode in ("L", "1"):
        return _gray_to_rgb(np.asarray(image.convert("L")))
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:] / 255.0
        return np.rint(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def _high_depth_to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    """16-bit and 32-bit gray to 8 bits: 16-bit values are scaled by 255/65535, floats in [0, 1] by 255."""
    values = array.astype(np.float64)
    if mode.startswith("I;16") or (mode == "I" and values.max(initial=0) > 255):
        values = values / 257.0
    elif mode == "F" and values.max(initial=0) <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)
