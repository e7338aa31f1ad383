"""The privileged-channels plugin in plugins/cqdkit-privileged: discovered, conformant, and trained end to end.

x carries RGB plus channels only the teacher sees (the synthetic dataset's mask, a box); the student sees
RGB z. Model A is built with in_chans = x's channels, and the student learns from it by CQD.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cqdkit.cli import cli
from cqdkit.plugin import PluginManager
from cqdkit.testing import check_degradation
from cqdkit.train.config import RunConfig
from cqdkit.train.experiment import Experiment

from .data_fixtures import write_cub
from .run_checks import assert_results_match_models


SMALL = ["--image-size", "32", "--batch-size", "8", "--epochs", "2", "--teacher", "convnet-s",
         "--student", "convnet-s", "--temperature", "10", "--lambda", "20", "--quiet"]
TINY = ["--dataset-option", "classes=3", "--dataset-option", "train_per_class=8",
        "--dataset-option", "test_per_class=4", "--dataset-option", "image_size=48", *SMALL]


@pytest.fixture
def privileged_installed(plugin_package, monkeypatch, tmp_path_factory):
    """The plugin as an installed distribution (see the ``plugin_package`` fixture)."""
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))
    plugin_package("cqdkit-privileged", {"privileged": "cqdkit_privileged"})


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_plugin_is_listed_by_cqdkit_plugins(privileged_installed):
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    [row] = [r for r in json.loads(result.stdout) if r["name"] == "privileged"]
    assert row["kind"] == "degradation" and row["plugin"] == "cqdkit-privileged" and not row["builtin"]


def test_plugin_passes_the_conformance_check(privileged_installed):
    manager = PluginManager(autoload=True)
    check_degradation("privileged:channels=mask/box", manager=manager, max_examples=10)
    check_degradation("privileged:channels=depth+lowres", manager=manager, max_examples=10)


def test_run_trains_a_privileged_teacher_and_an_rgb_student(privileged_installed, tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "--degrade", "privileged:channels=mask+lowres", "--no-crop", *TINY, "--out", str(out))
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["method"] == "cqd"  # auto: A's 4-channel weights cannot start an RGB student
    assert config["pipeline"]["x_channels"] == ["red", "green", "blue", "mask"]
    teacher = json.loads((out / "a" / "model.json").read_text())
    student = json.loads((out / "cqd" / "model.json").read_text())
    assert teacher["in_chans"] == 4 and teacher["channels"][-1] == "mask" and len(teacher["mean"]) == 4
    assert student["in_chans"] == 3 and len(student["mean"]) == 3
    results = assert_results_match_models(out)
    assert np.isnan(results["models"]["a"]["test_z"])  # z has no mask: the teacher cannot be scored there
    assert "n/a" in result.output and "CQD" in result.output


def test_methods_from_the_teachers_weights_are_refused_with_a_hint(privileged_installed, tmp_path):
    result = invoke("run", "--degrade", "privileged", "--method", "a-cqd", *TINY, "--out", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert "teacher sees 4 input channels (red, green, blue, mask" in result.output and "--method cqd" in result.output
    assert not (tmp_path / "r" / "a" / "model.safetensors").exists()  # refused before training anything


def test_teacher_key_includes_the_privileged_channels(privileged_installed, tmp_path):
    def key(degrade: str) -> str:
        options = {"classes": 2, "train_per_class": 3, "test_per_class": 1, "image_size": 48}
        config = RunConfig(degrade=degrade, dataset_options=options, image_size=32)
        return Experiment(config, tmp_path / degrade.replace(":", "_")).teacher_key()

    plain, lowres = key("gray"), key("lowres")
    masked, boxed = key("privileged"), key("privileged:channels=box")
    assert plain == lowres  # z-only degradations share A
    assert len({plain, masked, boxed}) == 3
    assert key("privileged+lowres") == masked


def test_a_dataset_without_masks_is_a_clear_error_and_boxes_work(privileged_installed, tmp_path):
    root = write_cub(tmp_path / "cub", classes=2, train=4, test=2)
    cub = ["--dataset", "cub", "--root", str(root), *SMALL, "--no-pretrained"]  # the paper profile on CUB
    result = invoke("run", "--degrade", "privileged", *cub, "--out", str(tmp_path / "masks"))
    assert result.exit_code == 2
    assert "dataset 'cub' has no 'mask' annotation for record 1" in result.output
    assert "images.txt line 1" in result.output and "annotations: none" in result.output
    boxed = invoke("run", "--degrade", "privileged:channels=box", "--no-crop", *cub, "--epochs", "1",
                   "--out", str(tmp_path / "boxes"))
    assert boxed.exit_code == 0, boxed.output
    teacher = json.loads((tmp_path / "boxes" / "a" / "model.json").read_text())
    assert teacher["in_chans"] == 4 and teacher["channels"][-1] == "box"


def test_privileged_channels_follow_the_localization_crop(privileged_installed):
    from cqdkit.degradations import PairMaker

    manager = PluginManager(autoload=True)
    image = np.zeros((40, 60, 3), np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 20:50] = 255  # the object fills its box exactly
    maker = PairMaker("localization+privileged:channels=mask", size=16, crop=False, manager=manager)
    x, z = maker(image, bbox=(20, 10, 30, 20), seed=0, annotations={"mask": mask})
    assert x.shape == (16, 16, 4) and z.shape == (16, 16, 3)
    assert (x[..., 3] == 255).all()  # x is the box crop, so its mask channel is all object


def test_table_leaves_out_the_rows_that_start_from_a_privileged_teacher(privileged_installed, tmp_path):
    result = invoke("table", "--degrade", "privileged:channels=mask", *TINY, "--epochs", "1", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "table.json").read_text())
    values = table["raw"]["privileged:channels=mask"]
    assert values["A→B/B"] == [] and values["A+CQD/B"] == []  # need the teacher's 4-channel input
    assert values["A/B"] == []  # the teacher needs the mask, which z lacks
    assert len(values["CQD/B"]) == 1 and len(values["B/B"]) == 1
