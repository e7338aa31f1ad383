"""``lowres``: the low-resolution view (paper section 2.1, Figure 3b).

z is x shrunk to ``size x size`` pixels (area averaging, i.e. anti-aliased like MATLAB's ``imresize``) and
brought back to the input size by an upsampler (bicubic by default, as in the paper). ``size`` is given
for a 224-pixel input and scales with the input size: the paper's 50 px at 224 is 25 px at 112. A size
that keeps the whole view (224 or more) would leave z equal to x, and is refused when the pipeline is
built (:meth:`LowRes.check_view_size`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import SpecError
from ..images import REFERENCE_SIZE, scaled_pixels
from .upsample import make_upsampler
from .views import Views


class LowRes:
    """Shrink z to ``size`` pixels (at a 224-pixel input) and upsample it back."""

    def __init__(self, size: int = 50, upsample: str = "bicubic", weights: str | None = None) -> None:
        self.size, self.upsample, self.weights = size, upsample, weights
        self.upsampler = make_upsampler(upsample, weights=weights)

    def describe(self) -> dict[str, Any]:
        """What ran; a learned upsampler's weights by absolute path and content hash, so that caches and
        run records notice a retrained file."""
        if self.weights is None:
            return {}
        path = Path(self.weights).resolve()
        return {"weights_file": str(path), "weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}

    def small_size(self, size: int) -> int:
        """The side of the shrunk image for views of ``size`` pixels (never more than ``size``)."""
        return min(size, max(1, round(scaled_pixels(self.size, size))))

    def check_view_size(self, size: int) -> None:
        """Refuse a ``size`` that does not shrink ``size``-pixel views (z would be x).

        Raises:
            SpecError: the scaled low-resolution side is the view size or more.
        """
        small = max(1, round(scaled_pixels(self.size, size)))
        if small < size:
            return
        fitting = [s for s in range(REFERENCE_SIZE, 0, -1) if max(1, round(scaled_pixels(s, size))) < size]
        expected = (f"a size that keeps fewer pixels than the view: at most {fitting[0]} for {size}-pixel views"
                    if fitting else "views of at least 2 pixels")
        raise SpecError(
            f"lowres:size={self.size} is {small} pixels at a {size}-pixel view (size is given at {REFERENCE_SIZE} "
            f"pixels and scaled: {self.size} x {size}/{REFERENCE_SIZE}), not less than the view, so z would be x "
            f"with nothing to upsample; expected {expected}"
        )

    def __call__(self, views: Views, rng: np.random.Generator) -> Views:
        size = views.z.shape[0]
        small = self.small_size(size)
        if small == size:
            return views
        shrunk = cv2.resize(views.z, (small, small), interpolation=cv2.INTER_AREA)
        return views._replace(z=self.upsampler(shrunk, size))
