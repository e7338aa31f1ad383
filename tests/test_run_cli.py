"""``cqdkit run``, ``table`` and ``tune`` end to end on a tiny synthetic dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cqdkit.cli import cli

TINY = [
    "--dataset-option", "classes=3",
    "--dataset-option", "train_per_class=8",
    "--dataset-option", "test_per_class=4",
    "--dataset-option", "image_size=48",
    "--image-size", "32",
    "--batch-size", "8",
    "--epochs", "2",
    "--teacher", "convnet-s",
    "--student", "convnet-s",
    "--quiet",
]


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_run_writes_config_checkpoints_and_results(tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "--degrade", "lowres", *TINY, "--out", str(out))
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"a", "a-cqd"}
    for scores in results["models"].values():
        assert 0.0 <= scores["test_x"] <= 1.0 and 0.0 <= scores["test_z"] <= 1.0
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["degrade"] == "lowres" and config["run"]["method"] == "a-cqd" and config["run"]["epochs"] == 2
    assert config["pipeline"]["ops"][0]["name"] == "lowres" and config["crop"] is True
    assert config["dataset"]["classes"] == 3 and config["dataset"]["train"] + config["dataset"]["val"] == 24
    for model in ("a", "a-cqd"):
        assert json.loads((out / model / "latest.json").read_text())["epoch"] == 2
        assert (out / model / "model.safetensors").exists()
        assert len((out / model / "log.jsonl").read_text().splitlines()) == 2
    assert list((out / "a").glob("teacher-logits-*.safetensors")), "teacher logits are cached"
    assert "A+CQD" in result.output and "test B (z)" in result.output


def test_run_refuses_to_overwrite_and_resumes(tmp_path):
    out = tmp_path / "run"
    first = invoke("run", "--degrade", "gray", "--method", "b", *TINY, "--out", str(out))
    assert first.exit_code == 0, first.output
    again = invoke("run", "--degrade", "gray", "--method", "b", *TINY, "--out", str(out))
    assert again.exit_code == 2 and "already holds a run" in again.output
    mixed = invoke("run", "--resume", "--out", str(out), "--epochs", "5")
    assert mixed.exit_code == 2 and "--epochs" in mixed.output
    resumed = invoke("run", "--resume", "--out", str(out), "--quiet")
    assert resumed.exit_code == 0, resumed.output
    before = json.loads((out / "results.json").read_text())
    assert set(before["models"]) == {"a", "b"}


def test_methods_that_start_from_the_teacher_need_the_same_architecture(tmp_path):
    args = [a if a != "convnet-s" else "convnet-m" for a in TINY]
    args[args.index("--student") + 1] = "convnet-s"
    result = invoke("run", "--degrade", "gray", "--method", "a-cqd", *args, "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and "same architecture" in result.output


def test_unknown_names_fail_with_close_matches(tmp_path):
    result = invoke("run", "--degrade", "tsp", *TINY, "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and "did you mean 'tps'" in result.output
    result = invoke("run", "--degrade", "tps", *TINY, "--loss", "softc", "--out", str(tmp_path / "r2"))
    assert result.exit_code == 2 and "did you mean 'softce'" in result.output


@pytest.mark.slow
def test_table_shares_the_teacher_and_writes_all_formats(tmp_path):
    out = tmp_path / "table"
    quick = [*TINY, "--epochs", "1"]  # the later --epochs wins
    result = invoke("table", "--degrade", "lowres,gray", "--seeds", "2", *quick, "--out", str(out))
    assert result.exit_code == 0, result.output
    for seed in (0, 1):
        teachers = list((out / f"seed-{seed}").glob("a-*"))
        assert len(teachers) == 1, "A is trained once per seed and shared by both degradations"
    table = json.loads((out / "table.json").read_text())
    assert table["rows"][:6] == ["A/A", "A/B", "B/B", "A→B/B", "CQD/B", "A+CQD/B"]
    cell = table["table"]["lowres"]["A+CQD/B"]
    assert cell["n"] == 2 and 0 <= cell["mean"] <= 1
    assert table["raw"]["gray"]["A/A"] == table["raw"]["lowres"]["A/A"]  # the same teacher
    markdown = (out / "table.md").read_text()
    assert "| A+CQD/B |" in markdown and "±" in markdown
    assert (out / "table.csv").read_text().startswith("row,degradation,mean,std,n,seed_0,seed_1")


@pytest.mark.slow
def test_tune_scores_on_validation_and_picks_the_best(tmp_path):
    out = tmp_path / "tune"
    result = invoke("tune", "--degrade", "lowres", "--temperatures", "1,10", "--lambdas", "1", *TINY, "--epochs", "1",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    tuned = json.loads((out / "tune.json").read_text())
    assert tuned["split"] == "val"
    found = tuned["degradations"]["lowres"]
    assert len(found["grid"]) == 2
    best = max(cell["val_z"] for cell in found["grid"])
    assert found["val_z"] == best
    assert found["chosen"]["lam"] == 1.0
    assert len(list((out / "teachers").glob("a-*"))) == 1
    assert Path(out / "tune.json").exists()
