"""Annotation images through the data path: synthetic masks, aligned extra x channels, clear errors.

The ops here are defined inline (no plugin): one appends the 'mask' annotation to x, as the
cqdkit-privileged plugin does, so alignment can be checked against x's own RGB channels.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cqdkit.data import PairedDataset, load_dataset
from cqdkit.data.synthetic import class_attributes, draw_sample, mask_path, render_sample
from cqdkit.degradations import PairMaker, Views
from cqdkit.errors import DataError, PluginError
from cqdkit.plugin import Degradation, PluginManager, hookimpl
from cqdkit.testing import check_degradation

#: sha256 of the RGB pixels of draw_sample(class_attributes(12)[label], size, default_rng([seed, label,
#: split, index])) before masks existed: published results depend on these images staying the same.
IMAGE_HASHES = {
    (0, 0, 1, 0, 128): "78ef990812000e848db6abf8c57cefcb6ee95a308412a9ffeb5250cb4e23661b",
    (0, 5, 0, 3, 128): "c1cc49a59545eb0e02ae8a84fdd04ec70d183381ed6ae2d6dab719000a5ccc77",
    (1, 11, 1, 7, 128): "9cbe88cf65fa6e18ac2aca0dd33e89d6aa4ff50a9916cd29c626f1c99d2a972b",
    (7, 3, 0, 0, 128): "c3bbe3023c0c49f7d9ec300920fa7e4e4c5a6da42e1766f7984f2f89ddebf4f8",
    (0, 2, 1, 1, 64): "7fbf06ab41d6cadde91ffeee7f9e3e8acd38fdd6c37d74536675833d9d147c0a",
}


class AppendMask:
    """x gains the 'mask' annotation as a fourth channel (what a privileged-channel plugin does)."""

    needs_annotations = ("mask",)
    x_channels = ("mask",)

    def __call__(self, views: Views, rng: np.random.Generator) -> Views:
        return views._replace(x=np.dstack([views.x, views.in_x_frame(views.annotations["mask"])]))


class ForgetsToAppend(AppendMask):
    def __call__(self, views: Views, rng: np.random.Generator) -> Views:
        return views


class MaskOps:
    @hookimpl
    def cqdkit_degradations(self):
        yield Degradation(name="append-mask", summary="x + the mask annotation", factory=AppendMask)
        yield Degradation(name="forgets-mask", summary="declares a channel, adds none", factory=ForgetsToAppend)


@pytest.fixture(scope="module")
def mask_ops() -> PluginManager:
    """Built-ins plus the two ops above (a manager of its own: no global state changes)."""
    manager = PluginManager(autoload=False)
    manager.register(MaskOps(), name="mask-ops")
    return manager


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


def tiny_synthetic():
    return load_dataset("synthetic", classes=2, train_per_class=3, test_per_class=1, image_size=48)


@pytest.mark.parametrize("key", sorted(IMAGE_HASHES))
def test_synthetic_images_are_unchanged_by_the_masks(key):
    seed, label, split, index, size = key
    attributes = class_attributes(12)[label]
    image, box, mask = render_sample(attributes, size, np.random.default_rng([seed, label, split, index]))
    assert hashlib.sha256(image.tobytes()).hexdigest() == IMAGE_HASHES[key]
    again, box_again = draw_sample(attributes, size, np.random.default_rng([seed, label, split, index]))
    assert np.array_equal(image, again) and box == box_again
    ys, xs = np.nonzero(mask > 127)  # the mask's extent is the box
    assert (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == box
    assert mask.dtype == np.uint8 and mask.shape == (size, size) and mask.max() == 255


def test_synthetic_records_carry_their_mask_files():
    dataset = tiny_synthetic()
    for record in dataset.train + dataset.test:
        path = record.annotations["mask"]
        assert path == mask_path(dataset.root, record.path) and path.is_file()
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (48, 48) and mask.dtype == np.uint8
        ys, xs = np.nonzero(mask > 127)
        assert (xs.min(), ys.min()) == record.bbox[:2]


def test_records_without_annotations_are_unchanged():
    record = tiny_synthetic().train[0]
    plain = dataclasses.replace(record, annotations={})
    assert plain.annotations == {} and hash(plain) == hash(record)


def test_views_in_x_frame_cuts_like_x():
    source = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    rgb = np.repeat(source[:, :, None], 3, axis=2)
    maker = PairMaker("gray:severity=1", size=8, crop=True)
    box = (4.0, 3.0, 16.0, 12.0)
    x, _ = maker(rgb, bbox=box)
    views = Views(rgb, box, x, x, region=box)
    assert np.array_equal(views.in_x_frame(source), x[:, :, 0])


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(
    height=st.integers(6, 40), width=st.integers(6, 40), size=st.sampled_from([8, 17, 32]),
    crop=st.booleans(), augment=st.booleans(), seed=st.integers(0, 2**31 - 1),
)
def test_extra_channel_stays_aligned_through_augmentation_crop_and_resize(
    mask_ops, height, width, size, crop, augment, seed
):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    box = (1.0, 2.0, width / 2, height / 2)
    maker = PairMaker("append-mask+lowres", size=size, crop=crop, augment=augment, manager=mask_ops)
    assert maker.x_channels == ("red", "green", "blue", "mask") and maker.needs_annotations == ("mask",)
    annotations = {"mask": image[:, :, 1].copy()}  # the mask is the green channel: it must land on x's green
    x, z = maker(image, bbox=box, seed=seed, annotations=annotations)
    assert x.shape == (size, size, 4) and z.shape == (size, size, 3)
    # Aligned: the mask lands on x's green channel. To within one grey level, not bit for bit: OpenCV resizes
    # a one-channel and a three-channel image through different fixed-point code paths (a shift would differ
    # by far more on this random image).
    assert np.abs(x[:, :, 3].astype(int) - x[:, :, 1]).max() <= 1
    assert np.array_equal(x[:, :, :3], PairMaker("gray:severity=1", size=size, crop=crop, augment=augment)(
        image, bbox=box, seed=seed)[0])


def test_pair_maker_refuses_missing_or_misshapen_annotations(mask_ops):
    maker = PairMaker("append-mask", size=8, manager=mask_ops)
    image = np.zeros((10, 12, 3), np.uint8)
    with pytest.raises(DataError, match="append-mask needs the 'mask' annotation.*has: none"):
        maker(image)
    with pytest.raises(DataError, match=r"annotation 'mask' is \(12, 10\) uint8; expected \(10, 12\)"):
        maker(image, annotations={"mask": np.zeros((12, 10), np.uint8)})
    with pytest.raises(PluginError, match=r"produced x of \(8, 8, 3\) uint8; expected \(8, 8, 4\)"):
        PairMaker("forgets-mask", size=8, manager=mask_ops)(image, annotations={"mask": np.zeros((10, 12), np.uint8)})


def test_the_conformance_kit_accepts_declared_extra_channels(mask_ops):
    check_degradation("append-mask", manager=mask_ops, max_examples=10)
    check_degradation("append-mask+tps", manager=mask_ops, max_examples=5)
    with pytest.raises(PluginError, match="expected"):
        check_degradation("forgets-mask", manager=mask_ops, max_examples=3)


def test_paired_dataset_returns_the_extra_channel_aligned(mask_ops):
    dataset = tiny_synthetic()
    for crop in (False, True):
        pairs = PairedDataset(dataset.train, "append-mask", split="train", size=32, crop=crop, manager=mask_ops)
        for index in range(len(pairs)):
            x, z, *_ = pairs[index]
            assert x.shape == (4, 32, 32) and z.shape == (3, 32, 32) and x.dtype == z.dtype == torch.uint8
            assert torch.equal(x[:3], z)
            record = dataset.train[index]
            mask = cv2.imread(str(record.annotations["mask"]), cv2.IMREAD_UNCHANGED)
            if crop:
                x0, y0, w, h = (int(v) for v in record.bbox)
                mask = mask[y0 : y0 + h, x0 : x0 + w]
            shrink = min(mask.shape) >= 32
            expected = cv2.resize(mask, (32, 32), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
            assert np.array_equal(x[3].numpy(), expected)
        first = pairs[0][0]
        assert torch.equal(pairs[0][0], first)  # the second time from the pair cache: the same


def test_paired_dataset_names_the_dataset_and_record_without_the_annotation(mask_ops):
    record = dataclasses.replace(tiny_synthetic().train[0], annotations={})
    with pytest.raises(DataError, match=rf"dataset 'cub' has no 'mask' annotation for record {record.id} .*"
                                        r"degradation 'append-mask' needs one.*annotations: none"):
        PairedDataset([record], "append-mask", size=16, manager=mask_ops, dataset_name="cub")


def test_an_annotation_of_another_size_than_its_image_is_refused(mask_ops, tmp_path: Path):
    record = tiny_synthetic().train[0]
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((20, 24), np.uint8))
    record = dataclasses.replace(record, annotations={"mask": small})
    pairs = PairedDataset([record], "append-mask", size=16, manager=mask_ops, cache=None)
    with pytest.raises(DataError, match=r"small.png: the 'mask' annotation .* is 24x20 pixels; expected .* 48x48"):
        pairs[0]


def test_cub_reader_attaches_the_official_segmentations_where_present(tmp_path: Path):
    from tests.data_fixtures import write_cub

    folder = write_cub(tmp_path, classes=2, train=1, test=1)
    mask = folder / "segmentations" / "001.Class_1" / "img_0.png"
    mask.parent.mkdir(parents=True)
    cv2.imwrite(str(mask), np.full((30, 40), 255, np.uint8))
    data = load_dataset("cub", folder)
    by_path = {record.path.relative_to(folder / "images").as_posix(): record for record in data.train + data.test}
    assert by_path["001.Class_1/img_0.png"].annotations == {"mask": mask}
    assert all(record.annotations == {} for key, record in by_path.items() if key != "001.Class_1/img_0.png")
