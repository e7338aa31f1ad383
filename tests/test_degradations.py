"""Behaviour of the built-in degradations and of the pair pipeline."""

from __future__ import annotations

import json
import logging
import pickle

import cv2
import numpy as np
import pytest

from cqdkit.degradations import PairMaker, make_pair, to_rgb_uint8
from cqdkit.errors import DataError, PluginError, SpecError
from cqdkit.plugin import Degradation, PluginManager, hookimpl
from cqdkit.testing.degradations import textured_image


@pytest.fixture(autouse=True)
def no_sed_model(monkeypatch):
    monkeypatch.delenv("CQDKIT_SED_MODEL", raising=False)


def high_frequency_energy(image: np.ndarray) -> float:
    """Share of the spectrum's energy (gray, mean removed) above 0.2 cycles per pixel."""
    gray = image.astype(np.float64).mean(-1)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(gray - gray.mean()))) ** 2
    n = gray.shape[0]
    fy, fx = np.mgrid[-(n // 2) : n - n // 2, -(n // 2) : n - n // 2] / n
    return spectrum[np.hypot(fx, fy) > 0.2].sum() / spectrum.sum()


# -- to_rgb_uint8 ------------------------------------------------------------------------------


def test_to_rgb_uint8_normalises_gray_rgba_and_16_bit():
    gray = np.array([[0, 128]], np.uint8)
    assert to_rgb_uint8(gray).tolist() == [[[0, 0, 0], [128, 128, 128]]]
    assert to_rgb_uint8(gray[:, :, None]).shape == (1, 2, 3)
    rgba = np.array([[[200, 10, 10, 255], [200, 10, 10, 0], [0, 0, 0, 128]]], np.uint8)
    assert to_rgb_uint8(rgba).tolist() == [[[200, 10, 10], [255, 255, 255], [127, 127, 127]]]
    wide = np.array([[0, 257, 65535]], np.uint16)
    assert to_rgb_uint8(wide)[0, :, 0].tolist() == [0, 1, 255]
    rgb = np.zeros((2, 2, 3), np.uint8)
    assert to_rgb_uint8(rgb) is rgb


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4, 4), np.float32), "uint8 or uint16"),
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.zeros((4,), np.uint8), "shape"),
        (np.zeros((0, 4, 3), np.uint8), "non-empty"),
        ([[1, 2]], "numpy array"),
    ],
)
def test_to_rgb_uint8_rejects_other_inputs(image, message):
    with pytest.raises(SpecError, match=message):
        to_rgb_uint8(image)


# -- the pipeline ------------------------------------------------------------------------------


def test_x_is_the_stretched_image_or_crop():
    image = textured_image(48, 64)
    x, _ = make_pair("blur", image, size=32)
    assert np.array_equal(x, cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA))
    x, _ = make_pair("blur", image, bbox=(10.4, 5, 20, 30.2), size=32, crop=True)
    assert np.array_equal(x, cv2.resize(image[5:36, 10:31], (32, 32), interpolation=cv2.INTER_CUBIC))


def test_pairs_are_fresh_arrays():
    from cqdkit.degradations.lowres import LowRes

    image = textured_image(32, 32)
    maker = PairMaker("lowres", size=32)
    maker.ops = [LowRes(size=224)]  # an op that hands the views back unchanged (PairMaker refuses this spec)
    x, z = maker(image)
    assert x is not image and z is not x and not np.shares_memory(x, image)
    x[:] = 0
    assert image.any() and z.any()


def test_box_and_seed_errors():
    image = textured_image()
    with pytest.raises(DataError, match="needs an object box"):
        make_pair("localization", image)
    with pytest.raises(DataError, match="crop=True needs an object box"):
        make_pair("blur", image, crop=True)
    with pytest.raises(DataError, match="outside"):
        make_pair("blur", image, bbox=(100, 0, 5, 5))
    with pytest.raises(DataError, match="positive width"):
        make_pair("blur", image, bbox=(1, 1, 0, 5))
    with pytest.raises(DataError, match="four numbers"):
        make_pair("blur", image, bbox=(1, 1, 5))
    with pytest.raises(SpecError, match="seed"):
        make_pair("noise", image, seed=-1)
    with pytest.raises(SpecError, match="size"):
        PairMaker("blur", size=0)


def test_random_flags_and_describe():
    assert not PairMaker("lowres+edges+gray+blur+jpeg+pixelate").random
    maker = PairMaker("lowres:size=32+noise", size=64)
    assert maker.random and not maker.x_random
    augmented = PairMaker("lowres", augment=True)
    assert augmented.random and augmented.x_random
    described = json.loads(json.dumps(PairMaker("edges+tps:sigma=1", size=96, crop=True).describe()))
    assert described["ops"] == [
        {"name": "edges", "params": {"detector": "auto", "model": None}, 
         "detector": "gradient", "model": None},
        {"name": "tps", "params": {"grid": 14, "sigma": 1.0}},
    ]
    assert (described["size"], described["crop"], described["augment"]) == (96, True, False)


def test_pair_maker_pickles():
    image = textured_image()
    maker = PairMaker("localization+tps+noise", size=40, augment=True)
    clone = pickle.loads(pickle.dumps(maker))
    for a, b in zip(maker(image, bbox=(3, 4, 30, 20), seed=9), clone(image, bbox=(3, 4, 30, 20), seed=9)):
        assert np.array_equal(a, b)


class _Broken:
    def __call__(self, views, rng):
        return views._replace(z=views.z[:, :, 0])


class _BrokenPlugin:
    @hookimpl
    def cqdkit_degradations(self):
        yield Degradation(name="broken", summary="returns a gray z", factory=_Broken)


def test_wrong_output_of_a_plugin_is_reported():
    manager = PluginManager(autoload=False)
    manager.register(_BrokenPlugin(), name="broken-plugin")
    with pytest.raises(PluginError, match="produced z of \\(16, 16\\) uint8"):
        PairMaker("broken", size=16, manager=manager)(textured_image())


# -- paired augmentation -----------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["tps:sigma=0"])
def test_augmentation_keeps_x_and_z_aligned(spec):
    image = textured_image(60, 80)
    maker = PairMaker(spec, size=48, augment=True)
    xs = []
    for seed in range(6):
        x, z = maker(image, seed=seed)
        assert np.array_equal(x, z)
        xs.append(x.tobytes())
    assert len(set(xs)) == 6  # the augmentation itself is random


def test_localization_box_follows_flip_and_crop():
    image = np.zeros((60, 100, 3), np.uint8)
    image[:, :] = (0, 0, 255)
    image[10:40, 5:35] = (255, 0, 0)  # the object, on the left
    box = (5, 10, 30, 30)
    maker = PairMaker("localization", size=32, augment=True)
    flipped = 0
    for seed in range(12):
        x, z = maker(image, bbox=box, seed=seed)
        assert (x[..., 0] > 200).mean() > 0.95  # the crop is the object whatever the flip and crop
        red_columns = np.flatnonzero((z[..., 0] > 200).any(0))
        source, moved = maker.source(image, box, seed)
        object_on_right = moved[0] > source.shape[1] / 2
        flipped += object_on_right
        assert (red_columns.mean() > 16) == object_on_right  # z shows the object where the box went
    assert 0 < flipped < 12


# -- localization, lowres, edges ---------------------------------------------------------------


def test_localization_views():
    image = textured_image(48, 64)
    x, z = make_pair("localization", image, bbox=(8, 6, 30, 26), size=24)
    assert np.array_equal(x, cv2.resize(image[6:32, 8:38], (24, 24), interpolation=cv2.INTER_AREA))
    assert np.array_equal(z, cv2.resize(image, (24, 24), interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize(("spec", "size"), [
    ("lowres:size=224", 224),
    ("lowres:size=224", 64),
    ("lowres:size=500", 32),
])
def test_lowres_at_full_size_is_refused(spec, size):
    """``size`` is given at a 224-pixel input: 224 means "the input size" at every size, and z would be x."""
    with pytest.raises(SpecError, match=rf"{spec} is \d+ pixels at a {size}-pixel view"):
        make_pair(spec, textured_image(size + 10, size + 5), size=size)


def test_lowres_removes_high_frequencies():
    image = textured_image(224, 224)
    x, z = make_pair("lowres", image)
    assert high_frequency_energy(z) < 0.1 * high_frequency_energy(x)  # 50 px: nothing above 0.11 cycles/px
    assert abs(x.astype(float).mean() - z.astype(float).mean()) < 2  # same picture, fewer details


def test_lowres_size_scales_with_the_input():
    from cqdkit.degradations.lowres import LowRes

    assert [LowRes().small_size(s) for s in (224, 112, 448, 10)] == [50, 25, 100, 2]


def test_edges_are_bright_lines_on_black_in_three_equal_channels(caplog, monkeypatch):
    from cqdkit.degradations import edges as edges_module

    monkeypatch.setattr(edges_module, "_announced", set())  # the detector is announced once per process
    monkeypatch.delenv("CQDKIT_SED_MODEL", raising=False)
    image = np.full((64, 64, 3), 40, np.uint8)
    image[:, 32:] = 220  # one vertical step edge
    with caplog.at_level(logging.INFO, logger="cqdkit.degradations.edges"):
        maker = PairMaker("edges", size=64)
    assert "gradient" in caplog.text
    _, z = maker(image)
    assert np.array_equal(z[..., 0], z[..., 1]) and np.array_equal(z[..., 0], z[..., 2])
    assert (z[:, :28] == 0).all() and (z[:, 36:] == 0).all()  # black away from the edge
    assert (z[:, 31:33, 0] == 255).all()  # a full-strength line on it (a step of 128 levels or more)
    _, z = make_pair("edges", textured_image(), size=48)
    assert np.array_equal(z[..., 0], z[..., 2])


@pytest.mark.parametrize("size", [64, 96, 224])
def test_edges_fallback_line_strength_and_width_scale_with_the_view(size):
    from cqdkit.degradations.edges import GRADIENT_SIGMA, line_drawing_from_gradient

    step = np.full((size, size, 3), 60, np.uint8)
    step[:, size // 2 :] = 60 + 128
    profile = line_drawing_from_gradient(step)[size // 2, :, 0].astype(float)
    assert profile.max() == 255  # a sharp 128-level step: full strength at every size
    width = (profile > 255 / 2).sum() * 224 / size  # in px at 224
    assert abs(width - 2.355 * GRADIENT_SIGMA) < 224 / size  # a Gaussian's full width at half maximum


def test_edges_fallback_draws_the_same_lines_at_64_and_224_px():
    from cqdkit.degradations.edges import line_drawing_from_gradient

    rng = np.random.default_rng(0)
    scene = np.full((896, 896, 3), 60, np.uint8)
    for _ in range(15):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(scene, tuple(int(v) for v in rng.integers(0, 896, 2)), int(rng.integers(40, 200)), colour, -1)
    small, large = (cv2.resize(scene, (s, s), interpolation=cv2.INTER_AREA) for s in (64, 224))
    drawn_small = line_drawing_from_gradient(small).astype(float)
    drawn_large = cv2.resize(line_drawing_from_gradient(large), (64, 64), interpolation=cv2.INTER_AREA).astype(float)
    assert np.corrcoef(drawn_small.ravel(), drawn_large.ravel())[0, 1] > 0.99
    assert abs(drawn_small.mean() / drawn_large.mean() - 1) < 0.15
    assert np.abs(drawn_small - drawn_large).mean() < 6


def test_edges_model_errors(tmp_path, monkeypatch):
    with pytest.raises(SpecError, match="needs model=PATH"):
        PairMaker("edges:detector=sed")
    missing = str(tmp_path / "missing.yml.gz")
    with pytest.raises(DataError, match="missing.yml.gz"):
        PairMaker(f"edges:model={missing}")
    monkeypatch.setenv("CQDKIT_SED_MODEL", missing)
    with pytest.raises(DataError, match="does not exist"):
        PairMaker("edges")
    garbage = tmp_path / "garbage.yml.gz"
    garbage.write_bytes(b"not a model")
    with pytest.raises(DataError, match="garbage.yml.gz"):
        PairMaker(f"edges:model={garbage}")
    assert PairMaker("edges:detector=gradient").describe()["ops"][0]["detector"] == "gradient"


# -- corruptions -------------------------------------------------------------------------------


def test_gray_is_grayscale_at_full_severity():
    image = textured_image()
    _, z = make_pair("gray", image, size=32)
    assert np.array_equal(z[..., 0], z[..., 1]) and np.array_equal(z[..., 1], z[..., 2])
    _, z = make_pair("gray:severity=1", image, size=32)
    assert not np.array_equal(z[..., 0], z[..., 1])


@pytest.mark.parametrize("name", ["gray", "noise", "blur", "jpeg", "pixelate"])
def test_severity_makes_z_worse(name):
    image = textured_image(96, 96)
    distances = []
    for severity in (1, 3, 5):
        x, z = make_pair(f"{name}:severity={severity}", image, size=96, seed=1)
        distances.append(np.abs(x.astype(float) - z).mean())
    assert 0 < distances[0] < distances[1] < distances[2]


def test_blur_and_pixelate_remove_high_frequencies():
    image = textured_image(224, 224)
    for spec in ("blur", "pixelate:severity=5"):
        x, z = make_pair(spec, image)
        assert high_frequency_energy(z) < 0.5 * high_frequency_energy(x)


def test_pixelate_makes_blocks():
    image = textured_image(64, 64)
    _, z = make_pair("pixelate:severity=5", image, size=64)  # 16 x 16 blocks of 4 px
    blocks = z.reshape(16, 4, 16, 4, 3)
    assert (blocks == blocks[:, :1, :, :1]).all()


def test_edges_says_which_detector_runs_once(caplog, monkeypatch):
    import logging

    from cqdkit.degradations import edges as edges_module

    monkeypatch.delenv("CQDKIT_SED_MODEL", raising=False)
    monkeypatch.setattr(edges_module, "_announced", set())
    with caplog.at_level(logging.INFO, logger="cqdkit"):
        edges_module.Edges()
        edges_module.Edges()
    messages = [r.getMessage() for r in caplog.records if "gradient-magnitude fallback" in r.getMessage()]
    assert len(messages) == 1
