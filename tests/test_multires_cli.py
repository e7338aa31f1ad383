"""``cqdkit multires`` (Table 3): spec splitting, the mixed training set, and a tiny end-to-end run."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from cqdkit.cli import cli
from cqdkit.errors import CqdkitError
from cqdkit.models.weights import read_state_dict
from cqdkit.routing import QualityRouter
from cqdkit.data.sample import Sample
from cqdkit.train.multires import MixedQualities
from tests.test_run_cli import TINY as RUN_TINY

TINY = [*RUN_TINY, "--epochs", "1"]  # the later --epochs wins


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


def invoke(*args: str):
    return CliRunner().invoke(cli, ["multires", *args], catch_exceptions=False)


@pytest.mark.parametrize(
    ("degrade", "message"),
    [
        (["clean"], "always the first quality"),
        (["lowres,lowres"], "'lowres' given more than once"),
        # A spec's own commas stay with it; specs from repeated options join the list.
        (["lowres:size=16,upsample=bicubic,tps", "tps"], "more than once: tps"),
        (["lowres", "lowres:size=50"], "more than once: lowres, lowres:size=50"),
    ],
)
def test_bad_quality_lists_fail_before_training(tmp_path, degrade, message):
    options = [arg for spec in degrade for arg in ("--degrade", spec)]
    result = invoke(*options, *TINY, "--out", str(tmp_path / "m"))
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "m").exists()


class FakePairs:
    """A paired dataset of ``n`` samples whose x is ``base + i`` and z is ``-(base + i)``."""

    def __init__(self, n: int, base: int) -> None:
        self.n, self.base, self.epoch = n, base, None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        value = torch.tensor([self.base + i])
        return Sample(value, -value, (self.base + i) % 3, i, torch.zeros(4))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


def test_mixed_qualities_concatenate_the_chosen_views_as_z():
    clean, degraded = FakePairs(3, 0), FakePairs(2, 100)
    union = MixedQualities([(clean, "x"), (degraded, "z")])
    assert len(union) == 5
    items = [union[i] for i in range(5)]
    assert [int(item.z) for item in items] == [0, 1, 2, -100, -101]  # z: the image at the part's quality
    assert [int(item.x) for item in items] == [0, 1, 2, 100, 101]  # x: always the high-quality view
    assert [item.index for item in items] == [0, 1, 2, 3, 4]  # indices into the union
    assert [item.label for item in items] == [0, 1, 2, 1, 2]
    union.set_epoch(4)
    assert clean.epoch == degraded.epoch == 4
    with pytest.raises(IndexError):
        union[5]
    with pytest.raises(CqdkitError, match="view"):
        MixedQualities([(clean, "y")])


@pytest.mark.slow
def test_multires_trains_routes_and_writes_table3(tmp_path):
    out = tmp_path / "multires"
    result = invoke("--degrade", "lowres", *TINY, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "Multi-res" in result.output and "Oracle" in result.output and "test on mixture" in result.output
    table = json.loads((out / "table3.json").read_text())
    assert table["qualities"] == ["clean", "lowres"] and table["test_sets"] == ["clean", "lowres", "mixture"]
    rows = {row["model"]: row["accuracy"] for row in table["rows"]}
    assert list(rows) == ["A", "A+CQD [lowres]", "A+B", "Multi-res", "Oracle"]
    # The oracle is each quality's own expert; the mixture is every test set together (equal sizes).
    assert rows["Oracle"]["clean"] == rows["A"]["clean"]
    assert rows["Oracle"]["lowres"] == rows["A+CQD [lowres]"]["lowres"]
    for accuracy in rows.values():
        assert accuracy["mixture"] == pytest.approx((accuracy["clean"] + accuracy["lowres"]) / 2)
    # Multi-res differs from the oracle only on images sent to the wrong expert.
    router = table["router"]
    for name in ("clean", "lowres"):
        misrouted = 1 - router["test_accuracy_per_quality"][name]
        assert abs(rows["Multi-res"][name] - rows["Oracle"][name]) <= misrouted + 1e-9
    assert router["train_accuracy"] >= 0.9 and router["test_accuracy"] >= 0.75
    assert sum(map(sum, router["confusion"])) == 2 * table["sizes"]["test"]
    assert "| Multi-res |" in (out / "table3.md").read_text()

    # The saved router holds the trained experts and rebuilds from its files alone.
    loaded = QualityRouter.load(out / "router.safetensors")
    assert loaded.qualities == ["clean", "lowres"] and loaded.num_classes == 3 and loaded.image_size == 32
    for expert, title in zip(loaded.experts, ("A", "A+CQD [lowres]")):
        saved = read_state_dict(f"{table['models'][title]}/model.safetensors")
        assert all(torch.equal(tensor, saved[name]) for name, tensor in expert.state_dict().items())
    assert (out / "router.json").exists() and list(out.glob("mixed-*/model.safetensors"))

    # A second run reuses every trained model and gives the same table.
    again = invoke("--degrade", "lowres", *TINY, "--out", str(out))
    assert again.exit_code == 0, again.output
    assert json.loads((out / "table3.json").read_text())["rows"] == table["rows"]
