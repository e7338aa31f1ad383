"""cqdkit compare: every loss on every degradation and seed, paired with one baseline, files written."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cqdkit.cli import cli

TINY = ["--dataset-option", "classes=3", "--dataset-option", "train_per_class=8", "--dataset-option",
        "test_per_class=4", "--dataset-option", "image_size=48", "--image-size", "32", "--batch-size", "8",
        "--epochs", "2", "--teacher", "convnet-s", "--student", "convnet-s", "--no-amp", "--quiet"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


@pytest.mark.slow
def test_compare_pairs_every_loss_with_one_baseline_per_seed_and_writes_its_table(tmp_path):
    out = tmp_path / "compare"
    result = CliRunner().invoke(cli, ["compare", "--loss", "softce,fitnet:student=-2,teacher=-2", "--degrade",
                                      "lowres", "--seeds", "2", *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "compare.json").read_text())
    assert payload["losses"] == ["softce", "fitnet:student=-2,teacher=-2"] and payload["split_for_choices"] == "val"
    for loss in payload["losses"]:
        rows = payload["raw"][loss]["lowres"]
        assert [row["seed"] for row in rows] == [0, 1]
        for row, baseline in zip(rows, payload["baselines"]["lowres"]):
            assert row["gain"] == pytest.approx(row["test_z"] - baseline)
        stats = payload["table"][loss]["lowres"]
        assert stats["n"] == 2 and 0 <= stats["kept"] <= 2
    for seed in (0, 1):  # B once per seed and degradation, shared by every loss, and so are its searches' seeds
        folder = out / f"seed-{seed}" / "lowres"
        assert (folder / "b" / "model.safetensors").exists()
        assert not list(folder.glob("*auto/b/model.safetensors"))
        assert not list(folder.glob("*auto/search/b")) and list(folder.glob("*auto/cqd/model.safetensors"))
    markdown = (out / "compare.md").read_text()
    assert "| B (no distillation) |" in markdown and "| fitnet:student=-2,teacher=-2 |" in markdown
    assert (out / "compare.png").stat().st_size > 0 and (out / "compare.csv").read_text().count("\n") == 5


def test_a_loss_these_networks_do_not_allow_leaves_its_cells_empty(tmp_path):
    out = tmp_path / "compare"
    args = [a if a != "convnet-s" or i != TINY.index("--teacher") + 1 else "convnet-m" for i, a in enumerate(TINY)]
    result = CliRunner().invoke(cli, ["compare", "--loss", "softce,st", "--degrade", "lowres", "--seeds", "1", *args,
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "st on lowres: no value of st that --lambda auto tries suits these networks" in " ".join(result.output.split())
    payload = json.loads((out / "compare.json").read_text())
    assert payload["table"]["st"]["lowres"] is None and payload["table"]["softce"]["lowres"]["n"] == 1
    assert "| st | — |" in (out / "compare.md").read_text()
