"""cqdkit-privileged's own tests: the conformance kit, and each channel pinned to what it should show.

Run from the repository root:  python -m pytest plugins/cqdkit-privileged/tests -q
"""

from __future__ import annotations

import numpy as np
import pytest

import cqdkit_privileged
from cqdkit.degradations import PairMaker
from cqdkit.errors import DataError, SpecError
from cqdkit.plugin import PluginManager
from cqdkit.testing import check_degradation


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    manager = PluginManager(autoload=False)
    manager.register(cqdkit_privileged, name="cqdkit-privileged")
    return manager


def scene(height: int = 40, width: int = 60) -> tuple[np.ndarray, tuple[float, float, float, float], np.ndarray]:
    """A random image, an object box and a soft-edged elliptic mask inside it."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    inside = ((yy - 20) / 12) ** 2 + ((xx - 25) / 18) ** 2
    mask = np.clip((1.2 - inside) * 255 / 0.4, 0, 255).astype(np.uint8)
    return image, (7.0, 8.0, 37.0, 25.0), mask


@pytest.mark.parametrize(
    "spec", ["privileged", "privileged:channels=box/depth", "privileged:channels=mask+lowres:size=50"]
)
def test_conformance(manager, spec):
    check_degradation(spec, manager=manager, max_examples=10)


def test_channels_parse_and_declare_what_they_need(manager):
    assert cqdkit_privileged.parse_channels("mask/box/depth") == ("mask", "box", "depth")
    maker = PairMaker("privileged:channels=depth/box", size=16, manager=manager)
    assert maker.x_channels == ("red", "green", "blue", "depth", "box")
    assert maker.needs_annotations == ("mask",) and maker.needs_box
    box_only = PairMaker("privileged:channels=box", size=16, manager=manager)
    assert box_only.needs_annotations == () and box_only.needs_box
    with pytest.raises(SpecError, match="bad value 'mask/sky' for 'channels'.*unknown channel 'sky'"):
        PairMaker("privileged:channels=mask/sky", manager=manager)
    with pytest.raises(SpecError, match="named twice"):
        PairMaker("privileged:channels=mask/mask", manager=manager)


@pytest.mark.parametrize("crop", [False, True])
@pytest.mark.parametrize("augment", [False, True])
def test_mask_channel_is_aligned_with_rgb(manager, crop, augment):
    image, box, _ = scene()
    maker = PairMaker("privileged:channels=mask+blur", size=24, crop=crop, augment=augment, manager=manager)
    for seed in range(4):  # the mask is the red channel: after crop, flip and resize it must still be
        x, z = maker(image, bbox=box, seed=seed, annotations={"mask": image[:, :, 0].copy()})
        assert x.shape == (24, 24, 4) and z.shape == (24, 24, 3)
        assert np.array_equal(x[:, :, 3], x[:, :, 0])
        assert not np.array_equal(z, x[:, :, :3])  # z is blurred RGB, no mask


def test_box_channel_fills_the_box(manager):
    image, box, _ = scene()
    x, _ = PairMaker("privileged:channels=box", size=60, manager=manager)(image, bbox=box)
    plane = x[:, :, 3].astype(int)
    # the 60x40 image stretches to 60x60: box rows 8..33 -> 12..49.5, columns 7..44 unchanged
    assert (plane[14:48, 8:43] == 255).all()
    assert (plane[:10] == 0).all() and (plane[52:] == 0).all()
    assert (plane[:, :5] == 0).all() and (plane[:, 47:] == 0).all()


def test_depth_is_deepest_inside_the_mask_and_zero_outside(manager):
    image, box, mask = scene()
    x, _ = PairMaker("privileged:channels=mask/depth", size=40, manager=manager)(
        image, bbox=box, annotations={"mask": mask})
    mask_x, depth = x[:, :, 3], x[:, :, 4]
    assert depth.max() >= 250 and (depth[mask_x == 0] == 0).all()
    y, x_at = np.unravel_index(int(np.argmax(depth)), depth.shape)
    assert mask_x[y, x_at] == 255  # the deepest point is well inside the object
    empty = PairMaker("privileged:channels=depth", size=8, manager=manager)(
        image, annotations={"mask": np.zeros(image.shape[:2], np.uint8)})[0]
    assert (empty[:, :, 3] == 0).all()


def test_missing_annotation_and_missing_box_are_data_errors(manager):
    image, box, _ = scene()
    with pytest.raises(DataError, match="privileged needs the 'mask' annotation"):
        PairMaker("privileged", size=8, manager=manager)(image, bbox=box)
    with pytest.raises(DataError, match="privileged needs an object box"):
        PairMaker("privileged:channels=box", size=8, manager=manager)(image)
