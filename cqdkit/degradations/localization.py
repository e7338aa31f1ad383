"""``localization``: the non-localized view (paper section 2.1, Figure 3a).

x is the object crop from the sample's box and z the whole image, both stretched to the input size. A
sample without a box is an error.
"""

from __future__ import annotations

import numpy as np

from ..images import crop, resize_square
from .views import Views


class Localization:
    """x = the box crop, z = the whole image."""

    needs_box = True
    sets_x = True

    def describe_x(self) -> dict[str, bool]:
        """x is the box crop, exactly what ``crop=True`` makes (so A is shared with cropped pipelines)."""
        return {"crop": True}

    def __call__(self, views: Views, rng: np.random.Generator) -> Views:
        assert views.box is not None  # PairMaker refuses samples without a box (needs_box)
        size = views.size
        x = resize_square(crop(views.source, views.box), size)
        return views._replace(x=x, z=resize_square(views.source, size), region=views.box)
