"""The thin-plate-spline distortion: exactness at the knots, the dense map, the image warp."""

from __future__ import annotations

import numpy as np
import pytest

from cqdkit.degradations import PairMaker, Views
from cqdkit.degradations.tps import Tps, tps_warp


def pixel_grid(size: int) -> np.ndarray:
    return np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="xy"), -1).astype(np.float64)


@pytest.mark.parametrize(("size", "grid"), [(224, 14), (64, 14), (37, 5), (8, 14), (100, 3)])
def test_spline_moves_every_knot_to_its_target(size, grid):
    warp = tps_warp(size, grid)
    displacements = np.random.default_rng(size).normal(0, 3, (grid * grid, 2))
    np.testing.assert_allclose(warp.spline(warp.knots, displacements), displacements, atol=1e-8)


@pytest.mark.parametrize(("size", "grid"), [(224, 14), (64, 14), (37, 5), (8, 14), (100, 3)])
def test_dense_map_is_the_spline_at_every_pixel(size, grid):
    warp = tps_warp(size, grid)
    displacements = np.random.default_rng(grid).normal(0, 2 * size / 224 + 1, (grid * grid, 2))
    pixels = pixel_grid(size)
    exact = pixels + warp.spline(pixels.reshape(-1, 2), displacements).reshape(size, size, 2)
    dense = warp.sampling_map(displacements)
    assert dense.shape == (size, size, 2) and dense.dtype == np.float32
    assert np.abs(dense - exact).max() < 1e-3  # 1/30 of cv2.remap's 1/32-px resolution


@pytest.mark.parametrize("size", [224, 61, 8])
def test_zero_displacement_is_the_identity(size):
    warp = tps_warp(size, 14)
    assert np.array_equal(warp.sampling_map(np.zeros((196, 2))), pixel_grid(size).astype(np.float32))
    image = np.random.default_rng(size).integers(0, 256, (size + 3, size, 3), dtype=np.uint8)
    x, z = PairMaker("tps:sigma=0", size=size)(image, seed=5)
    assert np.array_equal(x, z)


def test_image_content_at_each_knot_comes_from_its_target():
    size, grid = 60, 4  # cells of 15 px: the knots (7, 22, 37, 52) are pixel centres
    ramp = np.zeros((size, size, 3), np.uint8)
    ramp[..., 0] = 4 * np.arange(size)[None, :]  # red encodes x, green encodes y (exact under bilinear)
    ramp[..., 1] = 4 * np.arange(size)[:, None]
    op = Tps(grid=grid, sigma=2.0 * 224 / size * 2)  # 4 px at this size
    views = op(Views(ramp, None, ramp, ramp), np.random.default_rng(7))
    displacements = op.displacements(size, np.random.default_rng(7))
    knots = tps_warp(size, grid).knots
    assert np.array_equal(knots[:4, 0], [7, 22, 37, 52])
    targets = knots + displacements
    inside = ((targets >= 0) & (targets <= size - 1)).all(1)
    assert inside.sum() >= 12
    for (kx, ky), (tx, ty) in zip(knots[inside].astype(int), targets[inside]):
        red, green = views.z[ky, kx, :2].astype(float) / 4
        assert abs(red - tx) < 0.2 and abs(green - ty) < 0.2


def test_jitter_scales_with_the_image_size():
    op = Tps(sigma=2.0)
    for size in (112, 448):
        d = op.displacements(size, np.random.default_rng(0))
        assert d.shape == (196, 2)
        assert abs(d.std() / (2.0 * size / 224) - 1) < 0.15


def test_default_jitter_is_the_authors_4_px_at_224():
    assert Tps().sigma == 4.0  # save_images.m: 4*randn
    assert PairMaker("tps").describe()["ops"][0]["params"]["sigma"] == 4.0


def test_random_per_sample_and_reproducible():
    image = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    maker = PairMaker("tps", size=48)
    assert maker.random and not maker.x_random
    _, z1 = maker(image, seed=1)
    _, z1_again = maker(image, seed=1)
    _, z2 = maker(image, seed=2)
    assert np.array_equal(z1, z1_again) and not np.array_equal(z1, z2)
