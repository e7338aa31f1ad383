"""``cqdkit run``, ``table`` and ``tune`` end to end on a tiny synthetic dataset."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cqdkit.cli import cli

from .run_checks import assert_results_match_models

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
    "--temperature", "10",  # a fixed strength (the CPU profile's is chosen on validation): tests of that are their own
    "--lambda", "20",
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
    results = assert_results_match_models(out)
    assert set(results["models"]) == {"a", "a-cqd", "b"}  # B: the baseline the gain is measured against
    assert results["gain"] == results["models"]["a-cqd"]["test_z"] - results["models"]["b"]["test_z"]
    config = json.loads((out / "config.json").read_text())
    assert config["distillation"]["lambda"] == results["distillation"]["lambda"] == 20.0
    assert config["distillation"]["logit_weight"] == pytest.approx(20.0 / (3 * 10.0**2))
    assert config["run"]["degrade"] == "lowres" and config["run"]["method"] == "a-cqd" and config["run"]["epochs"] == 2
    assert config["pipeline"]["ops"][0]["name"] == "lowres" and config["crop"] is True
    assert config["dataset"]["classes"] == 3 and config["dataset"]["train"] + config["dataset"]["val"] == 24
    for model in ("a", "a-cqd"):
        assert json.loads((out / model / "latest.json").read_text())["epoch"] == 2
        assert (out / model / "model.safetensors").exists()
        assert len((out / model / "log.jsonl").read_text().splitlines()) == 2
    assert list((out / "a").glob("teacher-logits-*.safetensors")), "teacher logits are cached"
    assert "A+CQD" in result.output and "test B (z)" in result.output
    assert f"{100 * results['gain']:+.1f} points" in result.output
    assert "T = 10, lambda = 20" in result.output


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
    assert cell["n"] == 2 and cell["mean"] == pytest.approx(sum(table["raw"]["lowres"]["A+CQD/B"]) / 2)
    for seed in (0, 1):
        per_seed = json.loads((out / f"seed-{seed}" / "lowres" / "results.json").read_text())["models"]
        assert table["raw"]["lowres"]["B/B"][seed] == per_seed["b"]["test_z"]
    assert table["raw"]["gray"]["A/A"] == table["raw"]["lowres"]["A/A"]  # the same teacher
    markdown = (out / "table.md").read_text()
    assert "| A+CQD/B |" in markdown and "±" in markdown
    assert (out / "table.csv").read_text().startswith("row,degradation,mean,std,n,seed_0,seed_1")


@pytest.mark.slow
def test_tune_scores_on_validation_and_picks_the_best(tmp_path):
    out = tmp_path / "tune"
    result = invoke("tune", "--degrade", "lowres", "--method", "cqd", "--seeds", "1", "--temperatures", "1,10",
                    "--lambdas", "1", *TINY, "--epochs", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    tuned = json.loads((out / "tune.json").read_text())
    assert tuned["split"] == "val" and tuned["score"] == "val_z_calibrated_nll"
    found = tuned["methods"]["cqd"]["lowres"]
    assert [(c["temperature"], c["lam"]) for c in found["grid"]] == [(0.0, 0.0), (1.0, 1.0), (10.0, 1.0)]
    baseline = found["grid"][0]["score"]
    better = [c for c in found["grid"][1:] if c["score"] < baseline]
    if better:  # one seed: any gain over lambda = 0 counts, and the lowest score wins
        best = min(better, key=lambda c: c["score"])
        assert found["chosen"] == {"temperature": best["temperature"], "lam": best["lam"]}
    else:
        assert found["chosen"]["lam"] == 0.0 and "chosen: lambda = 0 --" in " ".join(result.output.split())
    assert len(list((out / "teachers").glob("a-*"))) == 1
    assert (out / "lowres-cqd.png").exists()
    assert f"lambda = 0 (b): calibrated NLL {baseline:.3f}" in " ".join(result.output.split())


def test_a_term_on_features_is_not_said_to_pull_on_the_logits(tmp_path):
    result = invoke("run", "--degrade", "lowres", "--method", "cqd", *TINY, "--loss", "rkd:lambda=0.1",
                    "--no-baseline", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "distillation: rkd" in said and "it acts on intermediate features, not directly on the logits" in said
    assert "gradient on the logits was 0.00" not in said
    models = json.loads((tmp_path / "run" / "results.json").read_text())["models"]
    assert models["cqd"]["distill_gradient_ratio"] == 0.0
