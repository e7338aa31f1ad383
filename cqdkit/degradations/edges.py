"""``edges``: the line-drawing view (paper section 2.1, Figure 3c).

z is a line drawing of x: bright lines on black (the edge strength times 255), the same in all three
channels, as the authors' MATLAB code saved it. (The paper's Figure 3c shows the lines dark on white for
print; the network saw light lines on black.)

Detectors:

- ``sed``: the structured-forest detector of Dollar and Zitnick used in the paper
  (``cv2.ximgproc.createStructuredEdgeDetection``), single scale, no non-maximum suppression, as in the
  authors' code; z = 255 * edge probability. It needs a model file (OpenCV's ``model.yml.gz``):
  ``edges:model=PATH`` or the environment variable ``CQDKIT_SED_MODEL``.
- ``gradient``: the fallback when no model is available: the gradient magnitude of the gray image,
  smoothed by a Gaussian of :data:`GRADIENT_SIGMA` px at 224 (scaled with the input size, like every
  pixel-valued parameter), so that a view of 64 px and one of 224 px get the same line drawing up to
  resampling. The gain is set per size so that a sharp step of :data:`GRADIENT_STEP` gray levels or more
  draws a full-strength (255) line, weaker edges dimmer ones.
- ``auto`` (default): ``sed`` when a model is given, otherwise ``gradient``.

Which detector ran is logged when the op is built and reported by ``describe()`` (so it is stored in a
run's config.json).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import DataError, SpecError
from ..images import scaled_pixels
from .views import Views

MODEL_ENV = "CQDKIT_SED_MODEL"
DETECTORS = ("auto", "sed", "gradient")

#: Smoothing of the gradient fallback, the standard deviation of a Gaussian in px at 224 (scaled with the
#: input size): 1 px at the CPU profile's 64 px, about the smoothing of the 5x5 Sobel filter used there before.
GRADIENT_SIGMA = 3.5
#: A sharp step of this many gray levels (or more) draws a full-strength line.
GRADIENT_STEP = 128.0

log = logging.getLogger(__name__)

_sed_cache: dict[str, Any] = {}


@functools.lru_cache(maxsize=32)
def gradient_kernels(size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The fallback's separable filters for ``size``-pixel views: ``(smooth, derivative, gain)``.

    ``derivative`` is the central difference of a Gaussian, ``smooth`` the Gaussian itself; together they
    spread an edge like a Gaussian derivative of :data:`GRADIENT_SIGMA` px at 224 scaled to ``size`` (the
    Gaussian's variance is that sigma squared less the central difference's own 1/3 px^2). ``gain`` maps
    the gradient magnitude to line brightness so that a sharp pixel-aligned step of :data:`GRADIENT_STEP`
    levels reaches 255 exactly, at every size.
    """
    sigma = scaled_pixels(GRADIENT_SIGMA, size)
    variance = max(sigma**2 - 1 / 3, 0.0)
    radius = max(1, math.ceil(4 * sigma))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    smooth = np.exp(-(offsets**2) / (2 * variance)) if variance > 0 else (offsets == 0).astype(np.float64)
    smooth /= smooth.sum()
    derivative = np.convolve(smooth, [0.5, 0.0, -0.5])[1:-1]
    peak = float(np.abs(np.cumsum(derivative)).max())  # the response to a unit step between two pixels
    return smooth.astype(np.float32), derivative.astype(np.float32), 255.0 / (GRADIENT_STEP * peak)


def line_drawing_from_gradient(rgb: np.ndarray) -> np.ndarray:
    """The fallback line drawing: smoothed gradient magnitude, bright on black, three equal channels."""
    smooth, derivative, gain = gradient_kernels(rgb.shape[0])
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    dx = cv2.sepFilter2D(gray, cv2.CV_32F, derivative, smooth, borderType=cv2.BORDER_REFLECT_101)
    dy = cv2.sepFilter2D(gray, cv2.CV_32F, smooth, derivative, borderType=cv2.BORDER_REFLECT_101)
    strength = cv2.convertScaleAbs(cv2.magnitude(dx, dy), alpha=gain)
    return cv2.cvtColor(strength, cv2.COLOR_GRAY2RGB)


def load_sed(model: str) -> Any:
    """The structured-forest detector for a model file, loaded once per process.

    Raises:
        DataError: the file is missing or OpenCV cannot read it.
    """
    if model not in _sed_cache:
        if not Path(model).is_file():
            raise DataError(f"edges: structured-forest model file {model!r} does not exist")
        try:
            _sed_cache[model] = cv2.ximgproc.createStructuredEdgeDetection(model)
        except cv2.error as error:
            raise DataError(f"edges: cannot read structured-forest model {model!r}: {error}") from None
    return _sed_cache[model]


_announced: set[str] = set()


def _announce(message: str) -> None:
    """Log which detector runs, once per process (a table builds many pipelines)."""
    if message not in _announced:
        _announced.add(message)
        log.info(message)


class Edges:
    """Replace z by a line drawing of it (see the module docstring for the detectors)."""

    def __init__(self, detector: str = "auto", model: str | None = None) -> None:
        if detector not in DETECTORS:
            raise SpecError(f"edges: unknown detector {detector!r}; expected one of {', '.join(DETECTORS)}")
        model = model or os.environ.get(MODEL_ENV) or None
        if detector == "auto":
            detector = "sed" if model else "gradient"
        if detector == "sed":
            if not model:
                raise SpecError(f"edges: detector=sed needs model=PATH or the {MODEL_ENV} variable")
            load_sed(model)  # fail now, not in a DataLoader worker
            _announce(f"edges: structured-forest edge detector with model {model}")
        else:
            model = None
            _announce(f"edges: gradient-magnitude fallback (no structured-forest model; set {MODEL_ENV})")
        self.detector, self.model = detector, model

    def __call__(self, views: Views, rng: np.random.Generator) -> Views:
        if self.detector == "gradient":
            return views._replace(z=line_drawing_from_gradient(views.z))
        edges = load_sed(self.model).detectEdges(views.z.astype(np.float32) / 255.0)
        lines = np.rint(255.0 * edges).astype(np.uint8)
        return views._replace(z=cv2.cvtColor(lines, cv2.COLOR_GRAY2RGB))

    def describe(self) -> dict[str, Any]:
        return {"detector": self.detector, "model": self.model}
