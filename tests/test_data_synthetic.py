"""The embedded synthetic dataset: deterministic, cached once in the CUB layout, with exact boxes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cqdkit.data import SyntheticSpec, load_dataset, load_image
from cqdkit.data.synthetic import (
    JITTER,
    MAX_CLASSES,
    PALETTE,
    PATTERNS,
    Texture,
    class_attributes,
    draw_sample,
    ensure_synthetic,
)
from cqdkit.errors import DataError, UnknownNameError

TINY = {"classes": 4, "train_per_class": 3, "test_per_class": 2, "image_size": 48}


def test_default_dataset_needs_no_root(tmp_path, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path))
    dataset = load_dataset(**TINY)  # the default dataset is "synthetic"
    assert dataset.name == "synthetic" and dataset.has_boxes
    assert len(dataset.classes) == 4 and len(dataset.train) == 12 and len(dataset.test) == 8
    assert dataset.root.parent == tmp_path / "synthetic"
    assert load_image(dataset.train[0].path).shape == (48, 48, 3)


def test_generated_once_atomically_and_reused(tmp_path):
    spec = SyntheticSpec(**TINY)
    folder = ensure_synthetic(spec, tmp_path)
    stamp = (folder / "images.txt").stat().st_mtime_ns
    assert ensure_synthetic(spec, tmp_path) == folder
    assert (folder / "images.txt").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temporary folder left behind


def test_the_folder_of_a_killed_generator_is_removed_and_a_live_ones_kept(tmp_path):
    import fcntl

    from cqdkit.data.synthetic import GENERATING

    spec = SyntheticSpec(**TINY)
    dead, live = (tmp_path / f".tmp-{spec.folder_name}-{name}" for name in ("dead1234", "live5678"))
    for folder in (dead, live):
        folder.mkdir()
        (folder / GENERATING).touch()
        (folder / "images.txt").write_text("half")
    with open(live / GENERATING) as claim:
        fcntl.flock(claim.fileno(), fcntl.LOCK_EX)  # as a generator that is still running holds it
        folder = ensure_synthetic(spec, tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder.name, live.name])


def test_deterministic_from_the_seed(tmp_path):
    a = load_dataset("synthetic", tmp_path / "a", **TINY)
    b = load_dataset("synthetic", tmp_path / "b", **TINY)
    c = load_dataset("synthetic", tmp_path / "c", **TINY, seed=1)
    first = [load_image(r.path) for r in (a.train[0], b.train[0], c.train[0])]
    assert np.array_equal(first[0], first[1]) and not np.array_equal(first[0], first[2])
    assert [r.bbox for r in a.train] == [r.bbox for r in b.train]


def test_more_images_leave_the_first_ones_unchanged(tmp_path):
    small = load_dataset("synthetic", tmp_path, **TINY)
    large = load_dataset("synthetic", tmp_path, **{**TINY, "train_per_class": 5})
    assert np.array_equal(load_image(small.train[0].path), load_image(large.train[0].path))


def test_classes_combine_shared_attributes():
    attributes = class_attributes(12)
    assert len(set(attributes)) == 12
    colours = [a[0] for a in attributes]
    assert all(colours.count(c) == 6 for c in set(colours))  # a colour alone never names a class
    patterns = [a[1] for a in attributes]
    assert all(patterns.count(p) == 4 for p in set(patterns))
    spacings = [a[2] for a in attributes]
    assert spacings.count("even") == spacings.count("uneven") == 6


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 11), st.integers(0, 2**32 - 1))
def test_box_is_the_exact_extent_of_the_object(label, seed):
    attributes = class_attributes(12)[label]
    image, (x, y, w, h) = draw_sample(attributes, 64, np.random.default_rng(seed))
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64
    assert 0.55 * 64 - 2 <= w <= 0.8 * 64 + 2  # object length is 55-80 % of the side


def test_box_matches_the_painted_object_pixels(monkeypatch):
    # Without clutter, white on black and unpatterned, each pixel's value is the object's coverage.
    from cqdkit.data import synthetic

    monkeypatch.setattr(synthetic, "_background", lambda size, rng: np.zeros((size, size, 3), np.float32))
    monkeypatch.setattr(synthetic, "_paint_distractor", lambda canvas, grid, rng: None)
    monkeypatch.setattr(synthetic, "_paint_decoy", lambda canvas, grid, length, rng: None)
    monkeypatch.setattr(synthetic, "PATTERN_COLOUR", (255.0, 255.0, 255.0))
    monkeypatch.setattr(synthetic, "PALETTE", {name: (255, 255, 255) for name in PALETTE})  # pixel = coverage
    for seed in range(10):
        image, box = draw_sample(class_attributes(12)[seed], 64, np.random.default_rng(seed))
        ys, xs = np.nonzero(image[:, :, 0] > 127.5)
        assert box == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)


def _texture(kind: str, jitter: np.ndarray | None = None) -> Texture:
    return Texture(kind, origin=(0.0, 0.0), cell=(8.0, 6.0), angle=0.0, phase=(0.3, 0.7), jitter=jitter)


@pytest.mark.parametrize("kind", PATTERNS)
def test_patterns_are_half_covered_and_average_out_over_one_period(kind):
    # What makes lowres hurt: averaged over one period along each axis, every pattern is the same grey.
    y, x = np.mgrid[0:96, 0:96].astype(np.float32)
    coverage = _texture(kind).coverage(y, x)
    cells = coverage.reshape(96 // 6, 6, 96 // 8, 8).mean((1, 3))  # one whole period per block
    assert abs(coverage.mean() - 0.5) < 0.02
    assert np.abs(cells - 0.5).max() < 0.03


def test_uneven_patterns_move_each_mark():
    y, x = np.mgrid[0:48, 0:48].astype(np.float32)
    even = _texture("stripes").coverage(y, x)
    assert np.allclose(even[:, :-8], even[:, 8:], atol=1e-4)  # periodic along u
    jitter = np.random.default_rng(0).normal(0, JITTER, (2, 32, 32)).astype(np.float32)
    uneven = _texture("stripes", jitter).coverage(y, x)
    assert not np.allclose(uneven[:, :-8], uneven[:, 8:], atol=0.1)
    assert abs(uneven.mean() - 0.5) < 0.03


def _views(attributes, spec: str, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    from cqdkit.degradations import PairMaker

    image, box = draw_sample(attributes, 128, np.random.default_rng(seed))
    x, z = PairMaker(spec, size=64, crop=True)(image, bbox=box, seed=0)
    return x.astype(np.float32), z.astype(np.float32)


def test_same_seed_same_scene_whatever_the_class():
    # The attributes change only the object's paint: the clutter and the box are drawn identically.
    a, box_a = draw_sample(("coral", "stripes", "even"), 96, np.random.default_rng(5))
    b, box_b = draw_sample(("green", "checks", "even"), 96, np.random.default_rng(5))
    assert box_a == box_b
    x, y, w, h = box_a
    outside = np.ones(a.shape[:2], bool)
    outside[y - 1 : y + h + 1, x - 1 : x + w + 1] = False  # the box and the anti-aliased rim around it
    assert np.array_equal(a[outside], b[outside]) and not np.array_equal(a, b)


def test_each_degradation_removes_its_attribute():
    # x tells stripes from checks and coral from green; lowres mostly removes the pattern, edges the colour
    # (a faint trace of it stays: the hues' grey levels differ a little).
    stripes_x, stripes_z = _views(("coral", "stripes", "even"), "lowres")
    checks_x, checks_z = _views(("coral", "checks", "even"), "lowres")
    assert np.abs(stripes_x - checks_x).mean() > 8 * np.abs(stripes_z - checks_z).mean()
    coral_x, coral_z = _views(("coral", "stripes", "even"), "edges")
    green_x, green_z = _views(("green", "stripes", "even"), "edges")
    assert np.abs(coral_x - green_x).mean() > 3 * np.abs(coral_z - green_z).mean()


def test_bad_options():
    with pytest.raises(DataError, match=f"expected 2 to {MAX_CLASSES}"):
        SyntheticSpec(classes=MAX_CLASSES + 1)
    with pytest.raises(UnknownNameError, match="unknown option of dataset 'synthetic' 'colours'"):
        load_dataset("synthetic", colours=3)
    with pytest.raises(DataError, match="option classes='many': expected a int"):
        load_dataset("synthetic", classes="many")
