"""Paired views (x, z, label, index, box), per-sample seeds, the validation split and the image cache."""

from __future__ import annotations

import json
import math
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, DistributedSampler

from cqdkit.cli.inspect import inspect_
from cqdkit.data import ImageCache, PairedDataset, Record, read_cub, sample_seed, split_folds, split_train_val
from cqdkit.errors import DataError
from tests.data_fixtures import ResizeMaker, write_cub


@pytest.fixture
def cub(tmp_path):
    return read_cub(write_cub(tmp_path, classes=3, train=4, test=2))


def test_items_are_uint8_chw_views_with_label_index_and_box(cub):
    pairs = PairedDataset(cub.train, ResizeMaker(size=16, crop=True), split="train")
    x, z, label, index, box = pairs[5]
    assert x.dtype == z.dtype == torch.uint8 and x.shape == z.shape == (3, 16, 16)
    assert (label, index) == (cub.train[5].label, 5)
    assert box.dtype == torch.float32 and box.tolist() == [0, 0, 16, 16]  # z is the box crop
    assert len(pairs) == 12 and pairs.ids() == [r.id for r in cub.train]
    with pytest.raises(IndexError):
        pairs[12]


def test_box_in_the_frame_of_a_full_image_and_nan_without_box(cub, tmp_path):
    full = PairedDataset(cub.train, ResizeMaker(size=16, crop=False))
    box = full[0][4]  # the 40x30 image's box (2, 3, 20, 15) resized to 16x16
    assert torch.allclose(box, torch.tensor([2 * 16 / 40, 3 * 16 / 30, 20 * 16 / 40, 15 * 16 / 30]))
    no_boxes = read_cub(write_cub(tmp_path / "plain", boxes=False))
    assert all(math.isnan(v) for v in PairedDataset(no_boxes.train, ResizeMaker())[0][4].tolist())


def test_crop_is_the_box_region(cub):
    x = PairedDataset(cub.train, ResizeMaker(size=20, crop=True))[0][0]
    from cqdkit.data import load_image

    image = load_image(cub.train[0].path)[3:18, 2:22]  # box (2, 3, 20, 15)
    import cv2

    assert np.array_equal(x.permute(1, 2, 0).numpy(), cv2.resize(image, (20, 20), interpolation=cv2.INTER_AREA))


def test_seeds_are_fixed_per_split_and_sample():
    assert sample_seed(0, "val", "7") == sample_seed(0, "val", "7")
    assert len({sample_seed(0, "val", "7"), sample_seed(0, "test", "7"), sample_seed(0, "val", "8"),
                sample_seed(1, "val", "7"), sample_seed(0, "val", "7", epoch=1)}) == 5


def test_z_fixed_across_runs_and_epochs_unless_redrawn(cub):
    def z_of(split, fixed_z, epoch):
        pairs = PairedDataset(cub.train, ResizeMaker(), split=split, fixed_z=fixed_z, cache=None)
        pairs.set_epoch(epoch)
        return pairs[3][1]

    assert torch.equal(z_of("train", True, 0), z_of("train", True, 5))
    assert torch.equal(z_of("val", False, 0), z_of("val", False, 5))  # only train is ever redrawn
    assert not torch.equal(z_of("train", False, 0), z_of("train", False, 5))
    assert torch.equal(z_of("train", False, 5), z_of("train", False, 5))
    assert not torch.equal(z_of("train", True, 0), z_of("test", True, 0))


def test_cached_views_equal_fresh_ones_and_skip_the_work(cub, tmp_path):
    maker = ResizeMaker(crop=True)
    pairs = PairedDataset(cub.train, maker, split="val", cache=tmp_path / "cache")
    first = [pairs[i] for i in range(len(pairs))]
    assert maker.calls == len(pairs)
    again = PairedDataset(cub.train, maker, split="val", cache=tmp_path / "cache")  # a later run
    second = [again[i] for i in range(len(again))]
    assert maker.calls == len(pairs)  # fixed pairs came from the cache
    fresh = PairedDataset(cub.train, ResizeMaker(crop=True), split="val", cache=None)
    for a, b, c in zip(first, second, (fresh[i] for i in range(len(fresh)))):
        assert all(torch.equal(u, v) and torch.equal(u, w) for u, v, w in zip(a[:2], b[:2], c[:2]))


def test_redrawn_pairs_reuse_only_the_decoded_images(cub):
    maker = ResizeMaker()
    pairs = PairedDataset(cub.train, maker, fixed_z=False, cache="memory")
    for epoch in range(2):
        pairs.set_epoch(epoch)
        [pairs[i] for i in range(len(pairs))]
    assert maker.calls == 2 * len(pairs) and len(pairs.images.store) == len(pairs)


def test_working_resolution_keeps_the_box_at_least_the_view_size(tmp_path):
    from cqdkit.data.cache import working_scale

    assert working_scale((1000, 800), (100, 100, 800, 400), 224) == pytest.approx(224 / 400)
    assert working_scale((1000, 800), None, 224) == pytest.approx(224 / 800)
    assert working_scale((100, 80), None, 224) == 1.0  # never enlarged
    from tests.data_fixtures import write_image

    write_image(tmp_path / "big.jpg", 400, 300)
    record = Record("1", tmp_path / "big.jpg", 0, (40.0, 30.0, 200.0, 100.0))
    image, box = ImageCache().get(record, 50, use_box=True)
    assert image.shape == (150, 200, 3) and box == pytest.approx((20, 15, 100, 50))


def test_bad_image_and_box_fail_when_read(cub):
    record = cub.train[0]
    outside = Record(record.id, record.path, 0, (30.0, 3.0, 20.0, 15.0), "bounding_boxes.txt line 1")
    with pytest.raises(DataError, match=r"line 1\): box .* is outside the 40x30 image"):
        PairedDataset([outside], ResizeMaker())[0]
    record.path.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"img_0.png: cannot decode the image"):
        PairedDataset([record], ResizeMaker())[0]


def _batches(loader):
    return {int(i): (x, z) for x, z, _, index, _ in loader for i, x, z in zip(index, x, z)}


def test_dataloader_with_spawned_workers_and_distributed_sampler(cub):
    pairs = PairedDataset(cub.train, ResizeMaker(), split="train", fixed_z=False)
    pickle.loads(pickle.dumps(pairs))  # spawn-safe
    pairs.set_epoch(1)
    reference = {i: pairs[i][:2] for i in range(len(pairs))}
    loader = DataLoader(pairs, batch_size=4, num_workers=2, multiprocessing_context="spawn", persistent_workers=True)
    pairs.set_epoch(0)
    [_ for _ in loader]
    pairs.set_epoch(1)  # must reach the persistent workers
    seen = _batches(loader)
    assert sorted(seen) == list(range(len(pairs)))
    assert all(torch.equal(seen[i][1], reference[i][1]) for i in seen)

    halves = [list(DistributedSampler(pairs, num_replicas=2, rank=r, shuffle=True, seed=0)) for r in (0, 1)]
    assert sorted(halves[0] + halves[1]) == list(range(len(pairs)))
    assert all(pairs[i][3] == i for i in halves[0])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=60), st.floats(0.0, 0.9), st.integers(0, 99))
def test_validation_split_is_stratified_seeded_and_disjoint(labels, fraction, seed):
    records = [Record(str(i), Path(f"{i}.png"), label) for i, label in enumerate(labels)]
    train, val = split_train_val(records, fraction, seed)
    assert (train, val) == split_train_val(records, fraction, seed)
    assert sorted(r.id for r in train + val) == sorted(r.id for r in records)
    counts, held = Counter(labels), Counter(r.label for r in val)
    for label, n in counts.items():
        expected = 0 if fraction == 0 or n < 2 else min(n - 1, max(1, round(fraction * n)))
        assert held[label] == expected
    assert [r.id for r in train] == sorted((r.id for r in train), key=int)  # input order kept


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.integers(2, 5), st.integers(0, 99))
def test_folds_hold_out_every_record_exactly_once_stratified(labels, folds, seed):
    records = [Record(str(i), Path(f"{i}.png"), label) for i, label in enumerate(labels)]
    counts = Counter(labels)
    if max(counts.values()) < folds:
        with pytest.raises(DataError, match=rf"--folds {folds}: the largest class has only {max(counts.values())} "):
            split_folds(records, folds, 0, seed)
        return
    held_out = []
    for fold in range(folds):
        train, val = split_folds(records, folds, fold, seed)
        assert val and sorted(r.id for r in train + val) == sorted(r.id for r in records)
        for label, n in counts.items():  # every class dealt round-robin: n // folds or one more per fold
            assert n // folds <= sum(r.label == label for r in val) <= -(-n // folds)
        held_out += [r.id for r in val]
    assert sorted(held_out) == sorted(r.id for r in records)


def test_bad_validation_fraction():
    with pytest.raises(DataError, match=r"validation fraction 1.0; expected a number in \[0, 1\)"):
        split_train_val([], 1.0)


def test_inspect_command(tmp_path):
    write_cub(tmp_path, classes=3, train=4, test=2)
    result = CliRunner().invoke(inspect_, ["--dataset", "cub", "--root", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["classes"], report["train"], report["val"], report["test"], report["boxes"]) == (3, 9, 3, 6, True)
    table = CliRunner().invoke(inspect_, ["--dataset", "cub", "--root", str(tmp_path), "--deep"])
    assert table.exit_code == 0 and "problems" in table.output


def test_with_the_real_pair_maker(cub):
    lowres = PairedDataset(cub.test, "lowres", split="test", size=32, crop=True)
    x, z, label, index, box = lowres[1]
    assert x.shape == z.shape == (3, 32, 32) and not torch.equal(x, z)
    assert box.tolist() == [0, 0, 32, 32]
    localization = PairedDataset(cub.test, "localization", split="test", size=32, crop=True)
    x, z, *_, box = localization[1]
    assert torch.equal(x, lowres[1][0])  # x is the box crop either way
    assert torch.allclose(box, torch.tensor([2 * 32 / 40, 3 * 32 / 30, 20 * 32 / 40, 15 * 32 / 30]))
