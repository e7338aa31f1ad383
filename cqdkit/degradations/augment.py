"""Paired geometric augmentation: one random flip and crop, applied to the source before x and z exist.

Cross-resolution code often breaks the pairing by augmenting the teacher's and the student's inputs
separately. Here the augmentation transforms the whole source image (and its box) once per sample, and
x and z are both made from the result, so they stay aligned whatever the degradation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..images import Box


@dataclass(frozen=True)
class PairedAugmentation:
    """A horizontal flip (probability ``flip``) and a crop of a random scale and position.

    The crop keeps the aspect ratio; each side is ``scale`` of the image's (drawn uniformly from
    ``min_scale..1``). With a box, the crop always contains the box's centre and the box is clipped to it.
    """

    flip: float = 0.5
    min_scale: float = 0.8

    def __call__(
        self, image: np.ndarray, box: Box | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, Box | None]:
        height, width = image.shape[:2]
        flip = rng.random() < self.flip
        scale = rng.uniform(self.min_scale, 1.0)
        crop_w, crop_h = max(1, round(width * scale)), max(1, round(height * scale))
        x0 = self._start(rng, width, crop_w, None if box is None else box[0] + box[2] / 2)
        y0 = self._start(rng, height, crop_h, None if box is None else box[1] + box[3] / 2)
        image = image[y0 : y0 + crop_h, x0 : x0 + crop_w]
        if flip:
            image = image[:, ::-1]
        if box is not None:
            bx0, by0 = max(box[0] - x0, 0.0), max(box[1] - y0, 0.0)
            bx1, by1 = min(box[0] + box[2] - x0, crop_w), min(box[1] + box[3] - y0, crop_h)
            if flip:
                bx0, bx1 = crop_w - bx1, crop_w - bx0
            box = (bx0, by0, bx1 - bx0, by1 - by0)
        return image, box

    @staticmethod
    def _start(rng: np.random.Generator, length: int, crop: int, centre: float | None) -> int:
        """A random crop start in ``0..length-crop`` whose window contains ``centre`` (if given)."""
        low, high = 0, length - crop
        if centre is not None:
            low = max(low, math.floor(centre - crop) + 1)
            high = min(high, math.floor(centre))
        return int(rng.integers(low, high + 1))
