"""tau: the fraction of a saliency map that lies inside the object's box (paper section 3.2).

The paper's measure sums the per-pixel gradient norms::

    tau = sum_{i in box} ||G_i||_2 / sum_{i in image} ||G_i||_2

:func:`box_fraction` computes that fraction for any non-negative map, so the same function also gives
the *gradient energy* fraction, where the energy of a region is the sum of its squared per-pixel norms
``sum ||G_i||_2^2``: pass ``maps ** 2``. A model that reads only pixels inside the box has tau = 1 under
both; a uniform map has tau = box area / image area.

Boxes are ``(x0, y0, x1, y1)`` in pixel coordinates of the map, pixel ``(row r, column c)`` covering the
square ``[c, c + 1) x [r, r + 1)``. A pixel the box edge cuts through counts with the fraction of its area
inside the box, so a box at fractional coordinates is measured exactly. Boxes are clipped to the map.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..errors import CqdkitError


def box_fraction(maps: npt.ArrayLike, boxes: npt.ArrayLike) -> np.ndarray:
    """For each map, the share of its total that falls inside its box.

    Args:
        maps: ``(B, H, W)`` non-negative values (saliency maps, or their squares for energy).
        boxes: ``(B, 4)`` boxes ``(x0, y0, x1, y1)`` in pixels (see the module docstring).

    Returns:
        ``(B,)`` float64 fractions in ``[0, 1]``. NaN where the box has a NaN coordinate (no box: the
        image is skipped, see ``np.nanmean``) or where the map is zero everywhere (nothing to share).

    Raises:
        CqdkitError: shapes that do not match, a negative map value, or a box with ``x1 < x0`` or
            ``y1 < y0``.

    Example:
        >>> box_fraction(np.ones((1, 4, 4)), [[0, 0, 2, 2]])  # a quarter of a uniform map
        array([0.25])
        >>> box_fraction(np.ones((1, 4, 4)), [[0.5, 0, 1.5, 1]])  # two half pixels
        array([0.0625])
    """
    maps = np.asarray(maps, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64)
    if maps.ndim != 3:
        raise CqdkitError(f"tau: maps must be (B, H, W), got shape {maps.shape}")
    if boxes.shape != (maps.shape[0], 4):
        raise CqdkitError(f"tau: boxes must be ({maps.shape[0]}, 4) as (x0, y0, x1, y1), got shape {boxes.shape}")
    if (maps < 0).any():
        raise CqdkitError("tau: maps must be non-negative (use gradient norms or their squares)")
    missing = np.isnan(boxes).any(axis=1)
    known = boxes[~missing]
    backwards = (known[:, 2] < known[:, 0]) | (known[:, 3] < known[:, 1])
    if backwards.any():
        bad = known[np.argmax(backwards)].tolist()
        raise CqdkitError(f"tau: box {bad} has x1 < x0 or y1 < y0; expected (x0, y0, x1, y1) with x0 <= x1, y0 <= y1")
    filled = np.where(missing[:, None], 0.0, boxes)
    _, height, width = maps.shape
    rows = _coverage(filled[:, 1], filled[:, 3], height)
    columns = _coverage(filled[:, 0], filled[:, 2], width)
    inside = np.einsum("bh,bhw,bw->b", rows, maps, columns)
    total = maps.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.clip(inside / total, 0.0, 1.0)
    fraction[missing | (total <= 0)] = np.nan
    return fraction


def _coverage(start: np.ndarray, end: np.ndarray, length: int) -> np.ndarray:
    """``(B, length)``: how much of each unit pixel ``[k, k + 1)`` lies within ``[start, end]``."""
    k = np.arange(length, dtype=np.float64)
    low = np.maximum(start[:, None], k)
    high = np.minimum(end[:, None], k + 1)
    return np.clip(high - low, 0.0, 1.0)
