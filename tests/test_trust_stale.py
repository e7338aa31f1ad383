"""Issue #25, kind 2: a model is reused only when everything that determines it matches, folder names of
specs are unambiguous, and a resume never describes a model by settings it was not trained with."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cqdkit.errors import CqdkitError
from cqdkit.train.config import RunConfig
from cqdkit.train.experiment import SETTINGS_FILE, Experiment
from cqdkit.train.table import slug

from .cli_checks import invoke
from .test_run_cli import TINY

TINY_CONFIG = dict(
    dataset_options={"classes": "3", "train_per_class": "8", "test_per_class": "4", "image_size": "48"}, image_size=32,
    batch_size=8, epochs=1, device="cpu", teacher="convnet-s", student="convnet-s", degrade="gray",
    temperature=10.0, lam=20.0,
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


def files_of(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".cqdkit.lock"}


@pytest.mark.parametrize("change", [{"lr": 0.05}, {"weight_decay": 0.0}, {"batch_size": 4}, {"student": "convnet-m"},
                                    {"dataset_options": {**TINY_CONFIG["dataset_options"], "seed": 1}}])
def test_a_finished_model_is_not_reused_with_settings_it_was_not_trained_with(tmp_path, change):
    Experiment(RunConfig(**TINY_CONFIG), tmp_path).train_or_load("b")
    before = files_of(tmp_path / "b")
    settings = json.loads((tmp_path / "b" / SETTINGS_FILE).read_text())
    assert settings["optimization"]["lr"] == RunConfig(**TINY_CONFIG).resolved().lr
    with pytest.raises(CqdkitError, match=r"/b holds a B model trained with other settings \(its .*\bdiffer"):
        Experiment(RunConfig(**{**TINY_CONFIG, **change}), tmp_path).train_or_load("b")
    assert files_of(tmp_path / "b") == before


def test_the_same_settings_reuse_the_finished_model(tmp_path):
    first = Experiment(RunConfig(**TINY_CONFIG), tmp_path).train_or_load("b")
    again = Experiment(RunConfig(**TINY_CONFIG), tmp_path).train_or_load("b")
    assert again.fit.resumed_from == RunConfig(**TINY_CONFIG).epochs
    assert all((a == b).all() for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))


def test_a_table_run_again_with_another_learning_rate_refuses_before_training(tmp_path):
    table = ["table", "--degrade", "gray", *TINY, "--epochs", "1", "--no-report", "--out", tmp_path / "t"]
    assert invoke(*table).exit_code == 0
    before = files_of(tmp_path / "t")
    result = invoke(*table, "--lr", "0.05")
    assert result.exit_code == 2 and "trained with other settings" in result.output, result.output
    assert "optimization" in result.output
    assert files_of(tmp_path / "t") == before  # the old table is not rewritten with the new lr


@given(st.text(min_size=1, max_size=12), st.text(min_size=1, max_size=12))
def test_distinct_specs_get_distinct_folder_names(first, second):
    if first != second:
        assert slug(first) != slug(second)
    assert "/" not in slug(first) and slug(first) not in ("", ".", "..")


def test_plain_spec_names_keep_their_folder_names():
    assert [slug(s) for s in ("gray", "tps", "a-b", "edges")] == ["gray", "tps", "a-b", "edges"]
    assert slug("tps:sigma=1.5").startswith("tps_sigma_1_5-")


def test_resume_of_a_finished_run_with_another_lambda_is_refused_and_changes_nothing(tmp_path):
    run = ["run", "--degrade", "gray", *TINY, "--epochs", "1", "--no-report", "--out", tmp_path / "r"]
    assert invoke(*run).exit_code == 0
    before = files_of(tmp_path / "r")
    result = invoke(*run, "--resume", "--lambda", "5")
    assert result.exit_code == 2 and "has finished" in result.output and "--lambda" in result.output, result.output
    assert files_of(tmp_path / "r") == before


def test_settings_changed_on_resume_are_recorded_with_the_models_finished_before(tmp_path):
    config = RunConfig(**TINY_CONFIG, out=str(tmp_path), method="cqd")
    experiment = Experiment(config, tmp_path)
    experiment.write_config()
    experiment.train_or_load("a")  # the run was stopped after A: A finished with the first lr
    result = invoke("run", "--degrade", "gray", *TINY, "--epochs", "1", "--method", "cqd", "--no-report",
                    "--out", tmp_path, "--resume", "--lr", "0.02")
    assert result.exit_code == 0, result.output
    changes = json.loads((tmp_path / "config.json").read_text())["changed_on_resume"]
    assert changes == [{"option": "--lr", "was": dataclasses.replace(config).resolved().lr, "now": 0.02,
                        "finished_before": ["a"]}]
    assert json.loads((tmp_path / "results.json").read_text())["changed_on_resume"] == changes
