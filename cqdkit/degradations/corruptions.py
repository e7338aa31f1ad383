"""Common corruptions beyond the paper: ``gray``, ``noise``, ``blur``, ``jpeg``, ``pixelate``.

Each takes ``severity`` 1..5. The tables follow ImageNet-C (Hendrycks and Dietterich, ICLR 2019) for
224-pixel images; pixel-valued entries scale with the input size.

=========  =====================================================  ===============================
name       what z becomes                                         severity 1, 2, 3, 4, 5
=========  =====================================================  ===============================
gray       blend towards its luminance (BT.601) by a fraction      0.2, 0.4, 0.6, 0.8, 1.0
noise      plus Gaussian noise, std as a fraction of 255           0.08, 0.12, 0.18, 0.26, 0.38
blur       Gaussian blur, sigma in pixels at 224                   1, 2, 3, 4, 6
jpeg       JPEG-compressed at quality                              25, 18, 15, 10, 7
pixelate   area-shrunk by a factor, then nearest-upsampled         0.6, 0.5, 0.4, 0.3, 0.25
=========  =====================================================  ===============================

``gray`` defaults to severity 5 (a plain grayscale image, the authors' "gray" setting); the others
default to 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from ..images import scaled_pixels
from .views import Views

@dataclass(frozen=True)
class Gray:
    """Desaturate z towards its luminance."""

    severity: int = 5
    TABLE: ClassVar[tuple[float, ...]] = (0.2, 0.4, 0.6, 0.8, 1.0)

    def __call__(self, views: Views, rng: np.random.Generator) -> Views:
        amount = self.TABLE[self.severity - 1]
        luminance = cv2.cvtColor(cv2.cvtColor(views.z, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        if amount == 1.0:
            return views._replace(z=luminance)
        return views._replace(z=cv2.addWeighted(views.z, 1.0 - amount, luminance, amount, 0.0))


@dataclass(frozen=True)
class Noise:
    """Add Gaussian noise to z (random per sample)."""

    severity: int = 3
    TABLE: ClassVar[tuple[float, ...]] = (0.08, 0.12, 0.18, 0.26, 0.38)

    def __call__(self, views: Views, rng: np.random.Generator) -> Views:
        noise = rng.standard_normal(views.z.shape, dtype=np.float32) * (255.0 * self.TABLE[self.severity - 1])
        return views._replace(z=np.clip(views.z + noise, 0, 255).round().astype(np.uint8))


@dataclass(frozen=True)
class Blur:
    """Gaussian-blur z."""

    severity: int = 3
    TABLE: ClassVar[tuple[float, ...]] = (1.0, 2.0, 3.0, 4.0, 6.0)

    def __call__(self, views: Views, rng: np.random.Generator) -> Views:
        sigma = scaled_pixels(self.TABLE[self.severity - 1], views.z.shape[0])
        z = cv2.GaussianBlur(views.z, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
        return views._replace(z=z)


@dataclass(frozen=True)
class Jpeg:
    """JPEG-compress z."""

    severity: int = 3
    TABLE: ClassVar[tuple[int, ...]] = (25, 18, 15, 10, 7)

    def __call__(self, views: Views, rng: np.random.Generator) -> Views:
        quality = self.TABLE[self.severity - 1]
        bgr = cv2.cvtColor(views.z, cv2.COLOR_RGB2BGR)  # OpenCV's JPEG codec expects BGR
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("OpenCV failed to JPEG-encode an image")
        return views._replace(z=cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))


@dataclass(frozen=True)
class Pixelate:
    """Shrink z by area averaging and blow it up again with nearest-neighbour blocks."""

    severity: int = 3
    TABLE: ClassVar[tuple[float, ...]] = (0.6, 0.5, 0.4, 0.3, 0.25)

    def __call__(self, views: Views, rng: np.random.Generator) -> Views:
        size = views.z.shape[0]
        small = max(1, round(size * self.TABLE[self.severity - 1]))
        shrunk = cv2.resize(views.z, (small, small), interpolation=cv2.INTER_AREA)
        return views._replace(z=cv2.resize(shrunk, (size, size), interpolation=cv2.INTER_NEAREST))
