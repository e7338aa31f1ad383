"""Images and object boxes: reading files, normalising arrays, checking, clipping and cutting boxes.

Every image cqdkit handles is a numpy array in RGB order; everything it makes is ``H x W x 3`` ``uint8``.
A box is ``(x, y, width, height)`` in pixels of the image it belongs to, 0-based floats: it covers columns
``x .. x + width`` and rows ``y .. y + height`` (CUB's convention).

Reading (:func:`load_image`, :func:`decode_image`) goes through Pillow, so grayscale, palette, CMYK,
RGBA and 16-bit files all come back as 8-bit RGB; arrays from elsewhere are normalised the same way by
:func:`to_rgb_uint8`. Transparent pixels are composited over white in both (:func:`over_white`).

An image is always the image *as a viewer shows it*: a file's EXIF ``Orientation`` tag (2 to 8: a
mirror and/or a quarter or half turn) is applied when it is decoded, and :func:`image_size` gives the
size of the turned image, so a box is always in the pixels of the upright, displayed image. Only
regular files are read: a named pipe, socket, device or folder is refused at once
(:func:`cqdkit.files.open_regular`), never waited on.

Example:
    >>> image = to_rgb_uint8(np.zeros((30, 40), np.uint8))
    >>> fit_box((35, 5, 10, 10), image.shape)
    (35.0, 5.0, 5.0, 10.0)
    >>> crop(image, (35.0, 5.0, 5.0, 10.0)).shape
    (10, 5, 3)
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import DataError, SpecError
from .files import open_regular

if TYPE_CHECKING:
    from PIL import Image as PILImage

#: A bounding box ``(x, y, width, height)``, 0-based pixels of the image it belongs to.
Box = tuple[float, float, float, float]
#: An image's ``(width, height)``.
Size = tuple[int, int]

#: File name extensions the folder reader treats as images.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})

#: The smallest and largest input sides cqdkit accepts (``--image-size``; the paper's is 224): one 3 x 4096²
#: float view is already 200 MB.
MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 4096

#: Pixel-valued parameters (lowres ``size``, tps ``sigma``, blur ``sigma``) are given for this input size and
#: scale with the actual one, so a spec means the same degradation at every input size.
REFERENCE_SIZE = 224


# -- reading and writing files ------------------------------------------------------------------


#: The EXIF tag that says how the stored pixels are turned for display (1 = as stored).
ORIENTATION_TAG = 0x0112
#: EXIF orientations whose displayed image is the stored one turned a quarter: width and height swap.
QUARTER_TURNS = frozenset({5, 6, 7, 8})


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """The image at ``path`` as an ``H x W x 3`` uint8 RGB array, upright (EXIF orientation applied).

    Example:
        >>> load_image("images/001.Black_footed_Albatross/x.jpg").shape  # doctest: +SKIP
        (375, 500, 3)

    Raises:
        DataError: the file is missing, not a regular file, truncated, corrupt or not an image.
    """
    return decode_image(path)[0]


def decode_image(path: str | os.PathLike[str], draft: Callable[[Size], Size] | None = None) -> tuple[np.ndarray, Size]:
    """Decode ``path``; returns the upright RGB array and the displayed image's ``(width, height)``.

    The file's EXIF orientation is applied (the array is what a viewer shows), and the size is that of
    the displayed image: :func:`image_size` of the file.

    ``draft`` maps the displayed ``(width, height)`` to the smallest ``(width, height)`` the caller needs:
    JPEGs may then be decoded directly at 1/2, 1/4 or 1/8 scale (much faster), so the array can be
    smaller than the displayed size (it is turned the same way).

    Raises:
        DataError: the file is missing, not a regular file, truncated, corrupt or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    with open_regular(path, "an image file") as file:
        try:
            with Image.open(file) as image:
                orientation = _orientation(image)
                size = _displayed(image.size, orientation)
                if draft is not None and image.format == "JPEG":
                    image.draft("RGB", _displayed(draft(size), orientation))  # a quarter turn swaps back
                image.load()
                return pil_to_rgb(_upright(image, orientation)), size
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise DataError(f"{path}: cannot decode the image ({error}); expected a complete image file") from None


def image_size(path: str | os.PathLike[str]) -> Size:
    """The displayed ``(width, height)`` of an image file (EXIF orientation applied), from its header only.

    Raises:
        DataError: the file is missing, not a regular file, or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    with open_regular(path, "an image file") as file:
        try:
            with Image.open(file) as image:
                return _displayed(image.size, _orientation(image))
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
            raise DataError(f"{path}: cannot read the image's size ({error})") from None


def _orientation(image: PILImage.Image) -> int:
    """The EXIF orientation (1 to 8) stated before the pixel data; 1 when none, or when unreadable.

    The base ``Image.getexif`` reads what the header holds: it does not decode a PNG to look for an
    ``eXIf`` chunk after the pixels, so the header-only :func:`image_size` sees the same orientation
    as :func:`decode_image`. XMP ``tiff:Orientation`` counts when there is no EXIF one (as in Pillow).
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():  # "Corrupt EXIF data": ignored here, as viewers ignore it
            warnings.simplefilter("ignore")
            value = Image.Image.getexif(image).get(ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 -- a damaged EXIF block (many error types): viewers ignore it too
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _displayed(size: Size, orientation: int) -> Size:
    """The displayed ``(width, height)`` of a stored ``size`` (and back: a quarter turn swaps both ways)."""
    return (size[1], size[0]) if orientation in QUARTER_TURNS else (size[0], size[1])


def _upright(image: PILImage.Image, orientation: int) -> PILImage.Image:
    """``image`` turned as its EXIF ``orientation`` says a viewer shows it."""
    from PIL import Image

    turn = Image.Transpose
    method = {2: turn.FLIP_LEFT_RIGHT, 3: turn.ROTATE_180, 4: turn.FLIP_TOP_BOTTOM, 5: turn.TRANSPOSE,
              6: turn.ROTATE_270, 7: turn.TRANSVERSE, 8: turn.ROTATE_90}.get(orientation)
    return image if method is None else image.transpose(method)


def write_png(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Write an ``H x W x 3`` uint8 RGB array as a PNG file (atomically).

    Raises:
        DataError: the file cannot be written.
    """
    import cv2

    from .files import atomic_write_bytes

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(to_rgb_uint8(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError(f"cannot encode {str(path)!r} as PNG")
    try:
        atomic_write_bytes(Path(path), encoded.tobytes())
    except OSError as error:
        raise DataError(f"cannot write {str(path)!r}: {error.strerror or error}") from None


# -- normalising arrays -------------------------------------------------------------------------


def pil_to_rgb(image: PILImage.Image) -> np.ndarray:
    """A Pillow image of any mode as an ``H x W x 3`` uint8 RGB array."""
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        return _gray_to_rgb(_high_depth_to_uint8(np.asarray(image), mode))
    if mode in ("L", "1"):
        return _gray_to_rgb(np.asarray(image.convert("L")))
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        return over_white(np.asarray(image.convert("RGBA")))
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Normalise an image array to ``H x W x 3`` ``uint8`` RGB.

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
        return _gray_to_rgb(image)
    if image.shape[2] == 4:
        return over_white(image)
    return image


def over_white(rgba: np.ndarray) -> np.ndarray:
    """Composite an ``H x W x 4`` uint8 RGBA image over a white background: ``H x W x 3`` uint8."""
    alpha = rgba[:, :, 3:].astype(np.float32) / 255.0
    blended = rgba[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.rint(blended).astype(np.uint8)


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


# -- boxes --------------------------------------------------------------------------------------


def describe_box(box: Sequence[float]) -> str:
    """A box for messages: ``(x=1, y=2, width=3, height=4)``."""
    x, y, width, height = box
    return f"(x={x:g}, y={y:g}, width={width:g}, height={height:g})"


def box_problem(box: Sequence[float]) -> str | None:
    """Why ``box`` is not a usable box whatever the image (non-finite, or no positive size), or None."""
    if not all(math.isfinite(v) for v in box):
        return f"box {tuple(box)} has a non-finite value"
    if box[2] <= 0 or box[3] <= 0:
        return (f"box {describe_box(box)} has zero size (a width or height of 0 or less); "
                "expected a positive width and height")
    return None


def box_outside(box: Box, width: int, height: int, tolerance: float = 1.0) -> str | None:
    """Why ``box`` does not fit a ``width x height`` image, or None.

    A box fits when it is usable (:func:`box_problem`), keeps some of the image (:func:`clip_box` is not
    None: it does not start at or past the right or bottom edge), and overshoots the image by at most
    ``tolerance`` pixels on any side (rounding in hand-made annotations).
    """
    problem = box_problem(box)
    if problem:
        return problem
    x, y, w, h = box
    if x < -tolerance or y < -tolerance or x + w > width + tolerance or y + h > height + tolerance:
        return f"box {describe_box(box)} is outside the {width}x{height} image"
    if clip_box(box, width, height) is None:
        return (f"box {describe_box(box)} holds no pixel of the {width}x{height} image; expected it to start "
                f"inside it (x < {width}, y < {height}) and end past its top-left corner")
    return None


def clip_box(box: Box, width: float, height: float) -> Box | None:
    """The part of ``box`` inside a ``width x height`` image, or None when nothing of it is inside.

    Non-finite boxes have nothing inside.
    """
    x, y, w, h = box
    if not all(math.isfinite(v) for v in box):
        return None
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    if not (x1 > x0 and y1 > y0):
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def fit_box(bbox: Sequence[float], shape: tuple[int, ...]) -> Box:
    """Validate an object box ``(x, y, width, height)`` and clip it to an image of ``shape``.

    Raises:
        DataError: not four finite numbers, a non-positive width or height, or a box outside the image.
    """
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise DataError(f"expected a box (x, y, width, height) of four numbers, got {bbox!r}") from None
    if box_problem((x, y, w, h)):
        raise DataError(f"box {bbox!r} needs finite coordinates and a positive width and height")
    height, width = shape[:2]
    clipped = clip_box((x, y, w, h), width, height)
    if clipped is None:
        raise DataError(f"box {bbox!r} lies outside the {width}x{height} image")
    return clipped


def box_pixels(box: Box, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The integer pixel bounds ``(x0, y0, x1, y1)`` that cover ``box`` (at least one pixel)."""
    height, width = shape[:2]
    x, y, w, h = box
    x0, y0 = min(int(math.floor(x)), width - 1), min(int(math.floor(y)), height - 1)
    x1 = max(min(int(math.ceil(x + w)), width), x0 + 1)
    y1 = max(min(int(math.ceil(y + h)), height), y0 + 1)
    return x0, y0, x1, y1


# -- cutting and sizing -------------------------------------------------------------------------


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The pixels of ``image`` covered by ``box`` (a view, not a copy)."""
    x0, y0, x1, y1 = box_pixels(box, image.shape)
    return image[y0:y1, x0:x1]


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Stretch an image to ``size x size`` (no aspect preservation, as in the paper).

    Shrinking uses area averaging (no aliasing), enlarging bicubic interpolation. An image that already
    has the size is returned as is.
    """
    import cv2

    height, width = image.shape[:2]
    if height == size and width == size:
        return image
    shrink = height >= size and width >= size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def scaled_pixels(value: float, size: int) -> float:
    """A pixel length given at :data:`REFERENCE_SIZE`, scaled to an image of ``size`` pixels."""
    return value * size / REFERENCE_SIZE
