"""The separately installable loss plugin in plugins/cqdkit-dkd: discovered, listed, conformant, trains."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from cqdkit.cli import cli
from cqdkit.plugin import PluginManager
from cqdkit.testing import check_loss

from .run_checks import assert_results_match_models

TINY_RUN = [
    "--degrade", "lowres:size=8",
    "--dataset-option", "classes=3",
    "--dataset-option", "train_per_class=6",
    "--dataset-option", "test_per_class=3",
    "--dataset-option", "image_size=32",
    "--image-size", "16",
    "--batch-size", "6",
    "--epochs", "1",
    "--teacher", "convnet-s",
    "--student", "convnet-s",
    "--method", "cqd",
    "--quiet",
]


@pytest.fixture
def dkd_installed(plugin_package):
    """The plugin as an installed distribution (see the ``plugin_package`` fixture)."""
    plugin_package("cqdkit-dkd", {"dkd": "cqdkit_dkd"})


def test_dkd_is_listed_by_cqdkit_plugins(dkd_installed):
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    [row] = [r for r in json.loads(result.stdout) if r["name"] == "dkd"]
    assert row["kind"] == "loss" and row["plugin"] == "cqdkit-dkd" and not row["builtin"]


def test_dkd_passes_the_conformance_check_and_is_kd_for_a_certain_teacher(dkd_installed):
    manager = PluginManager(autoload=True)
    check_loss("dkd", manager=manager)
    # KD = TCKD + (1 - p_t[y]) NCKD: a teacher certain of its top class y leaves KD = TCKD = DKD(beta=0).
    student = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    teacher = torch.tensor([[30.0, 0, 0, 0, 0]]).repeat(4, 1)
    dkd = manager.loss("dkd").factory(temperature=1.0, alpha=1.0, beta=0.0)
    kd = manager.loss("kl").factory(temperature=1.0)
    assert dkd(student, teacher).item() == pytest.approx(kd(student, teacher).item(), rel=1e-4)


def test_cqdkit_run_trains_a_student_with_dkd(dkd_installed, tmp_path, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = ["run", *TINY_RUN, "--loss", "dkd", "--temperature", "4", "--lambda", "1", "--out", str(out)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["run"]["loss"] == "dkd"
    assert "cqd" in assert_results_match_models(out)["models"]
    [epoch] = [json.loads(line) for line in (out / "cqd" / "log.jsonl").read_text().splitlines()]
    assert epoch["distill"] > 0 and epoch["loss"] == pytest.approx(epoch["ce"] + epoch["distill"], rel=1e-5)

