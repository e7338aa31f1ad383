"""The SRCNN upsampler (paper appendix, Table 4): network, upsampler, spec, training and ``sr-train``."""

from __future__ import annotations

import hashlib

import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from cqdkit.cli.superres import sr_train
from cqdkit.degradations import PairMaker
from cqdkit.degradations.srcnn_upsampler import load_srcnn, make_srcnn
from cqdkit.errors import CqdkitError, SpecError
from cqdkit.models.srcnn import SRCNN, rgb_to_luma, super_resolve, with_luma
from cqdkit.models.weights import save_weights
from cqdkit.testing.degradations import check_degradation, textured_image

TINY_DATA = [
    "--dataset-option", "classes=2",
    "--dataset-option", "train_per_class=8",
    "--dataset-option", "test_per_class=1",
    "--dataset-option", "image_size=32",
]


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


def weights_file(folder: Path, *, std: float, name: str = "srcnn.safetensors", seed: int = 0) -> Path:
    model = SRCNN()
    model.init_weights(torch.Generator().manual_seed(seed), std=std)
    return save_weights(model, folder / name)


@pytest.fixture(scope="module")
def identity_weights(tmp_path_factory) -> Path:
    return weights_file(tmp_path_factory.mktemp("identity"), std=0.0)


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    return weights_file(tmp_path_factory.mktemp("random"), std=0.05)


# -- the network and the colour convention ------------------------------------------------------------


NETWORK = SRCNN()


@settings(max_examples=12, deadline=None)
@given(height=st.integers(1, 12), width=st.integers(1, 12), batch=st.integers(1, 2))
def test_output_has_the_input_size(height, width, batch):
    luma = torch.rand(batch, 1, height, width)
    assert NETWORK(luma).shape == luma.shape


def test_identity_initialisation_is_exact_and_std_adds_a_change():
    luma = torch.rand(2, 1, 13, 9)
    model = SRCNN()
    model.init_weights(std=0.0)
    assert torch.equal(model(luma), luma)
    model.init_weights(torch.Generator().manual_seed(0), std=1e-2)
    change = (model(luma) - luma).abs().max().item()
    assert 0.0 < change < 0.5


def chroma(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BT.601 full-range Cb and Cr (without the 0.5 offset)."""
    luma = rgb_to_luma(rgb)
    return (rgb[:, 2:] - luma) / 1.772, (rgb[:, :1] - luma) / 1.402


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), height=st.integers(1, 6), width=st.integers(1, 6))
def test_with_luma_sets_luma_and_keeps_chroma(seed, height, width):
    generator = torch.Generator().manual_seed(seed)
    rgb = torch.rand(1, 3, height, width, generator=generator, dtype=torch.float64)
    luma = torch.rand(1, 1, height, width, generator=generator, dtype=torch.float64)
    out = with_luma(rgb, luma)
    assert torch.allclose(rgb_to_luma(out), luma, atol=1e-12)
    for before, after in zip(chroma(rgb), chroma(out)):
        assert torch.allclose(after, before, atol=1e-12)


def test_super_resolve_changes_only_luma():
    images = torch.from_numpy(textured_image(24, 20)).permute(2, 0, 1).unsqueeze(0)
    model = SRCNN()
    model.init_weights(torch.Generator().manual_seed(1), std=0.05)
    out = super_resolve(model, images)
    assert out.dtype == torch.uint8 and out.shape == images.shape and not torch.equal(out, images)
    unclipped = ((out > 0) & (out < 255)).all(dim=1, keepdim=True) & ((images > 0) & (images < 255)).all(1, True)
    difference = out.int() - images.int()  # same change on R, G and B (to rounding) where nothing clipped
    spread = (difference.max(dim=1, keepdim=True).values - difference.min(dim=1, keepdim=True).values)
    assert spread[unclipped].max().item() <= 1


# -- the upsampler -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("small", "size"), [((4, 4), 16), ((7, 5), 23), ((16, 16), 16), ((1, 1), 3)])
def test_identity_network_gives_exactly_bicubic(identity_weights, small, size):
    image = textured_image(*small)
    out = make_srcnn(str(identity_weights))(image, size)
    assert out.dtype == np.uint8 and out.shape == (size, size, 3)
    assert np.array_equal(out, cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC))


def test_upsampler_is_deterministic_and_pickles_as_a_path(random_weights):
    upsampler = make_srcnn(str(random_weights))
    image = textured_image(8, 8)
    out = upsampler(image, 32)
    bicubic = cv2.resize(image, (32, 32), interpolation=cv2.INTER_CUBIC)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8 and not np.array_equal(out, bicubic)
    data = pickle.dumps(upsampler)
    assert len(data) < 1000  # the path, not the tensors
    assert np.array_equal(pickle.loads(data)(image, 32), out)


def test_model_is_cached_per_file_and_reloaded_when_it_changes(tmp_path):
    path = weights_file(tmp_path, std=0.0)
    first = load_srcnn(path)
    assert load_srcnn(str(path)) is first
    weights_file(tmp_path, std=0.05, seed=3)
    os.utime(path, ns=(0, 1))  # a new modification time even on coarse file systems
    second = load_srcnn(path)
    assert second is not first and not torch.equal(second.conv3.weight, first.conv3.weight)


def test_spec_through_pair_maker(random_weights):
    maker = PairMaker(f"lowres:size=56,upsample=srcnn,weights={random_weights}", size=64)
    reference = PairMaker("lowres:size=56", size=64)
    image = textured_image(80, 96)
    x, z = maker(image, seed=0)
    x_ref, z_bicubic = reference(image, seed=0)
    assert x.shape == z.shape == (64, 64, 3) and z.dtype == np.uint8
    assert np.array_equal(x, x_ref) and not np.array_equal(z, z_bicubic)
    assert maker.describe()["ops"][0]["params"]["weights"] == str(random_weights)
    # the record names the weights by content, so a retrained file changes caches and run records
    described = maker.describe()["ops"][0]
    assert described["weights_file"] == str(Path(random_weights).resolve())
    assert described["weights_sha256"] == hashlib.sha256(Path(random_weights).read_bytes()).hexdigest()


def test_spec_passes_the_conformance_kit(random_weights):
    check_degradation(f"lowres:size=16,upsample=srcnn,weights={random_weights}", max_examples=6)


# -- bad weights --------------------------------------------------------------------------------------


def test_missing_weights_parameter_says_how_to_get_them():
    with pytest.raises(SpecError, match=r"weights=PATH.*sr-train"):
        PairMaker("lowres:upsample=srcnn", size=32)


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(SpecError, match=r"nope\.safetensors.*does not exist"):
        PairMaker(f"lowres:upsample=srcnn,weights={missing}", size=32)


def test_unreadable_file_is_named(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x80\x04 this is a pickle, not a safetensors file")
    with pytest.raises(SpecError, match=r"garbage\.safetensors.*not a readable safetensors"):
        make_srcnn(str(garbage))
    with pytest.raises(SpecError, match=r"is not a file"):
        make_srcnn(str(tmp_path))


def test_wrong_shapes_and_keys_are_named(tmp_path, random_weights):
    state = load_file(random_weights)
    other = tmp_path / "other.safetensors"
    save_file({**state, "conv1.weight": torch.zeros(32, 1, 9, 9)}, str(other))
    shapes = r"conv1\.weight \(32, 1, 9, 9\) instead of \(64, 1, 9, 9\)"
    with pytest.raises(SpecError, match=r"other\.safetensors.*" + shapes):
        make_srcnn(str(other))
    partial = tmp_path / "partial.safetensors"
    save_file({k: v for k, v in state.items() if k != "conv3.bias"} | {"extra": torch.zeros(1)}, str(partial))
    keys = r"missing \['conv3\.bias'\].*unexpected \['extra'\]"
    with pytest.raises(SpecError, match=r"partial\.safetensors.*" + keys):
        make_srcnn(str(partial))
    broken = tmp_path / "nan.safetensors"
    save_file({**state, "conv2.bias": torch.full((32,), float("nan"))}, str(broken))
    with pytest.raises(SpecError, match=r"nan\.safetensors.*NaN"):
        make_srcnn(str(broken))


# -- training and the command ---------------------------------------------------------------------


def run_sr_train(out: Path, *extra: str):
    args = [*TINY_DATA, "--image-size", "32", "--size", "56", "--patch", "32", "--batch-size", "4",
            "--lr", "1e-4", "--out", str(out), *extra]
    return CliRunner().invoke(sr_train, args, catch_exceptions=False)


def test_sr_train_writes_weights_and_report_and_is_seeded(tmp_path):
    first = run_sr_train(tmp_path / "a.safetensors", "--epochs", "2")
    assert first.exit_code == 0, first.output
    assert "bicubic" in first.output and "SRCNN" in first.output and "epoch 2/2" in first.output
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["arch"] == "srcnn-9-5-5" and report["small"] == 8 and report["image_size"] == 32
    assert report["crop"] is True and report["config"]["optimizer"] == "adam"
    assert report["train_images"] + report["val_images"] == 16
    assert set(report["psnr"]) == {"bicubic", "srcnn"} and all(v > 10 for v in report["psnr"].values())
    losses = [entry["loss"] for entry in report["history"]]
    assert len(losses) == 2 and losses[-1] < losses[0]
    second = run_sr_train(tmp_path / "b.safetensors", "--epochs", "2", "--quiet")
    assert second.exit_code == 0 and "epoch" not in second.output
    a, b = load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    maker = PairMaker(f"lowres:size=56,upsample=srcnn,weights={tmp_path / 'a.safetensors'}", size=32)
    assert maker(textured_image(), seed=0)[1].shape == (32, 32, 3)


def test_sr_train_refuses_bad_settings(tmp_path):
    with pytest.raises(CqdkitError, match=r"\.safetensors"):
        run_sr_train(tmp_path / "weights.pth", "--epochs", "1")
    with pytest.raises(CqdkitError, match=r"nothing to upsample"):
        run_sr_train(tmp_path / "w.safetensors", "--epochs", "1", "--size", "224")
    assert not list(tmp_path.iterdir())


def cli_sr_train(out: Path, *extra: str):
    """``cqdkit sr-train`` through the command line's error handling (one line, exit status 2)."""
    from cqdkit.cli import cli

    args = ["sr-train", *TINY_DATA, "--image-size", "32", "--size", "56", "--patch", "32", "--batch-size", "4",
            "--epochs", "1", "--quiet", "--out", str(out), *extra]
    return CliRunner().invoke(cli, args)


@pytest.mark.parametrize("lr", ["nan", "inf", "-1"])
def test_sr_train_refuses_a_learning_rate_that_is_not_a_finite_positive_number(tmp_path, lr):
    result = cli_sr_train(tmp_path / "sr.safetensors", "--lr", lr)
    assert result.exit_code == 2, (result.output, result.exception)
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: --lr must be a finite number > 0") and lr in line
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("unrelated", ["sr.json", "sr.safetensors"])
def test_sr_train_never_overwrites_files_it_did_not_write(tmp_path, unrelated):
    out = tmp_path / "sr.safetensors"
    (tmp_path / unrelated).write_text("my own notes")
    result = cli_sr_train(out)
    assert result.exit_code == 2, (result.output, result.exception)
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / unrelated} exists and is not from cqdkit sr-train")
    assert "--force" in line
    assert [path.name for path in tmp_path.iterdir()] == [unrelated]
    assert (tmp_path / unrelated).read_text() == "my own notes"
    if unrelated == "sr.json":
        assert cli_sr_train(out, "--force").exit_code == 0
        again = cli_sr_train(out)  # its own earlier output is replaced without --force
        assert again.exit_code == 0, again.output
        assert json.loads((tmp_path / "sr.json").read_text())["arch"] == "srcnn-9-5-5"


def test_sr_train_killed_between_its_two_files_runs_again_without_force(tmp_path):
    from cqdkit.files import atomic_write_bytes

    out = tmp_path / "sr.safetensors"
    atomic_write_bytes(out, b"weights written, then the process was killed before its report")
    again = cli_sr_train(out)
    assert again.exit_code == 0, again.output
    assert (tmp_path / "sr.json").is_file()
