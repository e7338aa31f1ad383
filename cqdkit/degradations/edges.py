"""``edges``: the line-drawing view (paper section 2.1, Figure 3c).

z is a line drawing of x: dark lines on white, the same in all three channels, like the paper's Figure 3c.
(The authors' MATLAB code saved the edge strength itself, light lines on black; we draw the lines dark
because that is what a line drawing looks like. Either way the student sees the same information.)

Detectors:

- ``sed``: the structured-forest detector of Dollar and Zitnick used in the paper
  (``cv2.ximgproc.createStructuredEdgeDetection``), single scale, no non-maximum suppression, as in the
  authors' code. It needs a model file (OpenCV's ``model.yml.gz``): ``edges:model=PATH`` or the
  environment variable ``CQDKIT_SED_MODEL``.
- ``gradient``: the fallback when no model is available: Sobel gradient magnitude (5x5 derivative
  filters, which also smooth a little) of the gray image; a step of 128 gray levels or more draws a
  black line, weaker edges draw gray lines.
- ``auto`` (default): ``sed`` when a model is given, otherwise ``gradient``.

Which detector ran is logged when the op is built and reported by ``describe()`` (so it is stored in a
run's config.json).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import DataError, SpecError
from .views import Views

MODEL_ENV = "CQDKIT_SED_MODEL"
DETECTORS = ("auto", "sed", "gradient")

#: Gain that maps Sobel-5x5 magnitude to line darkness: a 128-level step (magnitude 48 * 128) -> 255.
GRADIENT_GAIN = 255.0 / (48 * 128)

log = logging.getLogger(__name__)

_sed_cache: dict[str, Any] = {}


def line_drawing_from_gradient(rgb: np.ndarray) -> np.ndarray:
    """The fallback line drawing: inverted Sobel gradient magnitude, three equal channels."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    dx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=5)
    dy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=5)
    strength = cv2.convertScaleAbs(cv2.magnitude(dx, dy), alpha=GRADIENT_GAIN)
    return cv2.cvtColor(cv2.bitwise_not(strength), cv2.COLOR_GRAY2RGB)


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
        lines = np.rint(255.0 * (1.0 - edges)).astype(np.uint8)
        return views._replace(z=cv2.cvtColor(lines, cv2.COLOR_GRAY2RGB))

    def describe(self) -> dict[str, Any]:
        return {"detector": self.detector, "model": self.model}
