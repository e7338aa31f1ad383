"""The quality router: spectrum features, the linear quality classifier, routing, export, save/load."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cqdkit.degradations import PairMaker
from cqdkit.errors import CqdkitError, DataError
from cqdkit.models import create_backbone, model_input_config
from cqdkit.routing import (
    Expert,
    LogSpectrum,
    QualityRouter,
    fit_quality_classifier,
    grayscale,
    quality_accuracy,
)
from cqdkit.routing.spectrum import dft_matrices, resize_matrix
from cqdkit.models.preprocessing import Normalizer

SIZE = 32
CLASSES = 4


def reference_spectrum(gray: torch.Tensor) -> torch.Tensor:
    """|fftshift(fft2(gray))| with the orthonormal scaling, from torch.fft."""
    return torch.fft.fftshift(torch.fft.fft2(gray.double(), norm="ortho"), dim=(-2, -1)).abs().float()


def textures(count: int, size: int, seed: int) -> np.ndarray:
    """``(count, size, size, 3)`` uint8 textures: smoothed colour noise at random scales."""
    import cv2

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        noise = rng.random((size, size, 3)).astype(np.float32)
        sigma = float(rng.uniform(0.4, 1.2))
        smooth = cv2.GaussianBlur(noise, (0, 0), sigma)
        smooth = (smooth - smooth.min()) / (np.ptp(smooth) + 1e-6)
        images.append((255 * smooth).astype(np.uint8))
    return np.stack(images)


def lowres_pairs(count: int, seed: int, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(N, 3, S, S)`` originals and their bicubic-upsampled low-resolution versions (pixels 0..255)."""
    maker = PairMaker("lowres:size=100,upsample=bicubic", size=size)  # 100 px at 224 -> about 14 px at 32
    pairs = [maker(image, seed=i) for i, image in enumerate(textures(count, size, seed))]
    x = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).contiguous()
    z = torch.from_numpy(np.stack([p[1] for p in pairs])).permute(0, 3, 1, 2).contiguous()
    return x, z


def make_router(qualities=("clean", "lowres"), seed: int = 0) -> QualityRouter:
    experts = []
    for k in range(len(qualities)):
        torch.manual_seed(seed + k)
        model = create_backbone("convnet-s", num_classes=CLASSES)
        config = model_input_config(model)
        experts.append(Expert("convnet-s", model, Normalizer(config.mean, config.std), {"method": f"m{k}"}))
    return QualityRouter(list(qualities), experts, num_classes=CLASSES, image_size=SIZE,
                         info={"classes": ["a", "b", "c", "d"]}).eval()


@pytest.fixture(scope="module")
def fitted() -> tuple[QualityRouter, torch.Tensor, torch.Tensor, float]:
    """A router whose classifier was fitted on 24 originals and their low-resolution versions."""
    router = make_router()
    x, z = lowres_pairs(24, seed=1)
    accuracy = fit_quality_classifier(router, [router.features(x), router.features(z)])
    return router, x, z, accuracy


# -- spectrum -----------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(height=st.integers(1, 40), width=st.integers(1, 40), shift=st.booleans(), seed=st.integers(0, 2**16))
def test_dft_magnitude_equals_torch_fft(height, width, shift, seed):
    gray = torch.rand(2, height, width, generator=torch.Generator().manual_seed(seed))
    spectrum = LogSpectrum((height, width), shift=shift)
    expected = torch.fft.fft2(gray.double(), norm="ortho")
    if shift:
        expected = torch.fft.fftshift(expected, dim=(-2, -1))
    torch.testing.assert_close(spectrum.magnitude(gray), expected.abs().float(), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("size", [16, 32, 65, 100])
def test_features_are_log_of_area_resized_magnitude(size):
    gray = torch.rand(3, size, size)
    expected = torch.log(F.interpolate(reference_spectrum(gray)[:, None], size=(65, 65), mode="area")[:, 0] + 1e-4)
    features = LogSpectrum(size)(gray)
    assert features.shape == (3, 65, 65)
    torch.testing.assert_close(features, expected, atol=1e-3, rtol=1e-4)


def test_dft_and_resize_tables():
    cos, sin = dft_matrices(8, shift=False)
    signal = torch.rand(8)
    spectrum = torch.fft.fft(signal.double(), norm="ortho")
    torch.testing.assert_close(cos @ signal, spectrum.real.float(), atol=1e-6, rtol=0)
    torch.testing.assert_close(-(sin @ signal), spectrum.imag.float(), atol=1e-6, rtol=0)
    resize = resize_matrix(130, 65)
    assert resize.shape == (65, 130)
    torch.testing.assert_close(resize.sum(dim=1), torch.ones(65))  # area averaging keeps a constant
    assert resize[0, 0] == resize[0, 1] == 0.5


def test_grayscale_uses_luma_weights_and_checks_shape():
    images = torch.zeros(1, 3, 4, 4)
    images[:, 1] = 1.0
    torch.testing.assert_close(grayscale(images), torch.full((1, 4, 4), 0.587))
    single = torch.rand(2, 1, 4, 4)
    assert torch.equal(grayscale(single), single[:, 0])
    with pytest.raises(CqdkitError, match="1 or 3"):
        grayscale(torch.rand(2, 2, 4, 4))
    with pytest.raises(CqdkitError, match=r"\(batch, 8, 8\)"):
        LogSpectrum(8)(torch.rand(2, 8, 9))
    with pytest.raises(CqdkitError, match="positive"):
        LogSpectrum(8, eps=0)


def test_features_separate_bicubic_upsampled_images_from_originals(fitted):
    router, _, _, train_accuracy = fitted
    assert train_accuracy == 1.0
    x, z = lowres_pairs(32, seed=2)  # unseen textures
    held_out = quality_accuracy(router, [router.features(x), router.features(z)])
    assert held_out >= 0.95, held_out
    # The reason: upsampled images have far less energy at high frequencies.
    centre = slice(20, 45)
    outer = router.features(x).view(-1, 65, 65).clone()
    outer[:, centre, centre] = 0
    outer_z = router.features(z).view(-1, 65, 65).clone()
    outer_z[:, centre, centre] = 0
    assert (outer.sum((1, 2)) > outer_z.sum((1, 2))).all()


def test_fitting_is_deterministic(fitted):
    router, x, z, _ = fitted
    again = make_router(seed=5)  # other expert weights do not matter
    fit_quality_classifier(again, [again.features(x), again.features(z)])
    assert torch.equal(again.classifier.weight, router.classifier.weight)
    assert torch.equal(again.feature_mean, router.feature_mean)


def test_fitting_checks_the_feature_blocks(fitted):
    router, x, _, _ = fitted
    with pytest.raises(CqdkitError, match="each of the 2 qualities"):
        fit_quality_classifier(router, [router.features(x)])
    with pytest.raises(CqdkitError, match="'lowres'"):
        fit_quality_classifier(router, [router.features(x), torch.zeros(0, 65 * 65)])


# -- routing ------------------------------------------------------------------------------------


def expert_output(router: QualityRouter, k: int, images: torch.Tensor) -> torch.Tensor:
    return router.experts[k](router.normalizers[k](images))


@torch.no_grad()
def test_shapes_and_oracle_routing_equals_each_expert(fitted):
    router, x, z, _ = fitted
    images = torch.cat([x[:3], z[:2]])
    assert router.features(images).shape == (5, 65 * 65)
    assert router.quality_logits(images).shape == (5, 2)
    assert router.predict_quality(images).dtype == torch.long
    assert router.expert_logits(images).shape == (2, 5, CLASSES)
    truth = torch.tensor([0, 0, 0, 1, 1])
    routed = router.route(images, truth)
    assert routed.shape == (5, CLASSES)
    torch.testing.assert_close(routed[:3], expert_output(router, 0, images[:3]))
    torch.testing.assert_close(routed[3:], expert_output(router, 1, images[3:]))
    assert not torch.allclose(expert_output(router, 0, images), expert_output(router, 1, images))


@torch.no_grad()
def test_router_with_a_perfect_classifier_matches_the_oracle(fitted):
    router, x, z, _ = fitted
    images, truth = torch.cat([x, z]), torch.cat([torch.zeros(len(x)), torch.ones(len(z))]).long()
    assert torch.equal(router.predict_quality(images), truth)  # perfect on its training images
    torch.testing.assert_close(router(images), router.route(images, truth))


@torch.no_grad()
def test_unfitted_router_sends_everything_to_the_first_expert():
    router = make_router(("clean", "lowres", "tps"))
    images = torch.rand(4, 3, SIZE, SIZE) * 255
    assert torch.equal(router.predict_quality(images), torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(router(images), expert_output(router, 0, images))


def test_bad_input_and_construction_errors():
    router = make_router()
    with pytest.raises(CqdkitError, match=f"\\(batch, 3, {SIZE}, {SIZE}\\)"):
        router(torch.rand(1, 3, SIZE, SIZE + 1))
    with pytest.raises(CqdkitError, match="shape"):
        router(torch.rand(3, SIZE, SIZE))
    expert = Expert("convnet-s", router.experts[0], router.normalizers[0])
    with pytest.raises(CqdkitError, match="need as many experts"):
        QualityRouter(["clean", "lowres"], [expert], num_classes=CLASSES, image_size=SIZE)
    with pytest.raises(CqdkitError, match="unique"):
        QualityRouter(["clean", "clean"], [expert, expert], num_classes=CLASSES, image_size=SIZE)
    with pytest.raises(CqdkitError, match="at least two"):
        QualityRouter(["clean"], [expert], num_classes=CLASSES, image_size=SIZE)
    with pytest.raises(CqdkitError, match="weight must have shape"):
        router.set_classifier(torch.zeros(3, 65 * 65), torch.zeros(2), torch.zeros(65 * 65), torch.ones(65 * 65))


# -- export and files ---------------------------------------------------------------------------


@torch.no_grad()
def test_router_exports_with_torch_export_and_tracing(fitted):
    router, x, z, _ = fitted
    images = torch.cat([x[:2], z[:2]])
    exported = torch.export.export(router, (images,))
    torch.testing.assert_close(exported.module()(images), router(images))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated in recent torch
        traced = torch.jit.trace(router, images)
    other = torch.cat([z[2:4], x[2:4]])  # another routing than the traced example's
    torch.testing.assert_close(traced(other), router(other))


@torch.no_grad()
def test_router_takes_uint8_or_float_pixels_alike(fitted):
    router, x, z, _ = fitted
    images = torch.cat([x[:2], z[:2]])
    assert images.dtype == torch.uint8
    torch.testing.assert_close(router(images), router(images.float()))
    torch.testing.assert_close(router.features(images), router.features(images.float()))


@torch.no_grad()
def test_save_load_roundtrip_gives_identical_outputs(fitted, tmp_path):
    router, x, z, _ = fitted
    path = tmp_path / "router.safetensors"
    router.save(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["qualities"] == ["clean", "lowres"] and meta["num_classes"] == CLASSES and meta["image_size"] == SIZE
    assert [e["architecture"] for e in meta["experts"]] == ["convnet-s", "convnet-s"]
    assert meta["experts"][1]["method"] == "m1" and len(meta["experts"][0]["mean"]) == 3
    assert meta["info"]["classes"] == ["a", "b", "c", "d"]
    loaded = QualityRouter.load(path)
    assert loaded.classes == ["a", "b", "c", "d"] and not loaded.training
    assert loaded.qualities == router.qualities and loaded.expert_info == router.expert_info
    images = torch.cat([x[:3], z[:3]])
    assert torch.equal(loaded(images), router(images))
    assert torch.equal(loaded.quality_logits(images), router.quality_logits(images))


def test_load_refuses_bad_files(fitted, tmp_path):
    router, _, _, _ = fitted
    path = tmp_path / "router.safetensors"
    with pytest.raises(DataError, match="router description"):
        QualityRouter.load(path)
    router.save(path)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format": "something"}))
    with pytest.raises(DataError, match="not a cqdkit router"):
        QualityRouter.load(path)
    meta_path.write_text(json.dumps({**meta, "num_classes": CLASSES + 1}))
    with pytest.raises(DataError, match=f"info.classes must be a list of {CLASSES + 1} class names"):
        QualityRouter.load(path)
    del meta["experts"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="field experts is missing"):
        QualityRouter.load(path)
    path.write_bytes(b"not safetensors")
    meta_path.write_text(json.dumps(router.describe()))
    with pytest.raises(DataError, match="safetensors"):
        QualityRouter.load(path)
