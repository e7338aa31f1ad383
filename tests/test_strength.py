"""The distillation strength chosen on the validation split (--lambda auto / --temperature auto): what it may read,
when it switches distillation off, what it chooses, and that a fixed value skips it."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from cqdkit.cli import cli
from cqdkit.data.paired import PairedDataset
from cqdkit.errors import CqdkitError
from cqdkit.train import strength as strength_module
from cqdkit.train.config import RunConfig
from cqdkit.train.experiment import Experiment
from cqdkit.train.methods import METHODS
from cqdkit.train.strength import chosen_strength, decide

from .test_science import TINY

AUTO = {**TINY, "loss": "softce", "temperature": "auto", "lam": "auto", "amp": False}  # the softce search


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


def rows(*values):
    return [{"s": value} for value in values]


def test_a_finalist_must_beat_lambda_zero_by_more_than_its_spread_over_the_seeds():
    base = rows(1.0, 1.0, 1.0)
    assert decide({"x": rows(0.8, 0.85, 0.9)}, base, preference={"x": 0}, score="s")["chosen"] == "x"
    assert not decide({"x": rows(0.7, 1.2, 1.0)}, base, preference={"x": 0}, score="s")["distillation_helps"]
    assert not decide({"x": rows(1.1, 1.05, 1.2)}, base, preference={"x": 0}, score="s")["distillation_helps"]
    both = decide({"near": rows(0.80, 0.82, 0.84), "far": rows(0.79, 0.81, 0.85)}, base,
                  preference={"near": 0.0, "far": 2.0}, score="s")
    assert both["chosen"] == "near" and set(both["ties"]) == {"near", "far"}  # a tie goes to the paper's values


def test_the_search_never_reads_the_test_split(tmp_path, monkeypatch):
    experiment = Experiment(RunConfig(**AUTO, method="cqd"), tmp_path)
    real = PairedDataset.__getitem__

    def guarded(self, index):
        assert self.split != "test", "the strength search read a test image"
        return real(self, index)

    monkeypatch.setattr(PairedDataset, "__getitem__", guarded)
    strength = chosen_strength(experiment, METHODS["cqd"])
    record = json.loads((tmp_path / "cqd" / "strength.json").read_text())
    assert record["split"] == "val" and record["stages"][0]["candidates"]
    assert strength.record == record


class ShuffledLabels(PairedDataset):
    """The training set with its labels permuted: a teacher trained on it knows nothing of the task."""

    permutation: torch.Tensor

    def __getitem__(self, index):
        sample = super().__getitem__(index)
        return sample._replace(label=int(self.labels[self.permutation[index]]))


def test_lambda_zero_wins_when_the_teacher_learned_shuffled_labels(tmp_path):
    config = RunConfig(**{**AUTO, "dataset_options": {"classes": 4, "train_per_class": 20, "test_per_class": 2,
                                                      "image_size": 48}, "epochs": 4}, method="cqd",
                       val_fraction=0.3)
    experiment = Experiment(config, tmp_path)
    real = experiment.train_set
    shuffled = copy.copy(real)
    shuffled.__class__ = ShuffledLabels
    shuffled.labels = [record.label for record in real.records]
    shuffled.permutation = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
    experiment.train_set = experiment.distill_set = shuffled
    experiment.train_or_load("a")  # the teacher learns the shuffled labels
    experiment.train_set = experiment.distill_set = real
    strength = chosen_strength(experiment, METHODS["cqd"])
    assert not strength.helps and strength.terms == []
    student, baseline = experiment.train_or_load("cqd"), experiment.train_or_load("b")
    for name, tensor in baseline.model.state_dict().items():  # the student *is* B
        assert torch.equal(student.model.state_dict()[name], tensor), name
    exported = load_file(str(tmp_path / "cqd" / "model.safetensors"))
    assert all(torch.equal(exported[name], tensor) for name, tensor in baseline.model.state_dict().items())


def test_the_chosen_student_is_what_training_with_the_chosen_values_gives(tmp_path, monkeypatch):
    real = strength_module.decide

    def keen(finalists, baseline, **kwargs):  # choose the best finalist whatever validation says
        decision = real(finalists, baseline, **kwargs)
        best = min(decision["cells"], key=lambda label: decision["cells"][label]["score"])
        return {**decision, "distillation_helps": True, "chosen": best}

    monkeypatch.setattr(strength_module, "decide", keen)
    experiment = Experiment(RunConfig(**AUTO, method="cqd"), tmp_path / "auto")
    searched = experiment.train_or_load("cqd")
    chosen = chosen_strength(experiment, METHODS["cqd"])
    [term] = chosen.terms
    fixed = Experiment(RunConfig(**{**AUTO, "temperature": term.temperature, "lam": term.weight}, method="cqd"),
                       tmp_path / "fixed").train_or_load("cqd")
    for name, tensor in fixed.model.state_dict().items():
        assert torch.equal(searched.model.state_dict()[name], tensor), name
    readable = chosen.record["stages"][0]["chosen"].replace(":", "_").replace(",", "_")
    [winner] = [path.parent for path in (tmp_path / "auto" / "search" / "cqd").glob("*/*/seed-run/cqd/latest.json")
                if path.parent.parent.parent.name.startswith(readable)]
    assert (tmp_path / "auto" / "cqd" / "latest.json").samefile(winner / "latest.json")  # adopted, not trained again


def test_a_fixed_strength_skips_the_search_and_a_fixed_lambda_searches_t_only(tmp_path, monkeypatch):
    Experiment(RunConfig(**{**AUTO, "temperature": 10.0, "lam": 20.0}, method="cqd"), tmp_path / "fixed") \
        .train_or_load("cqd")
    assert not (tmp_path / "fixed" / "search").exists() and not (tmp_path / "fixed" / "cqd" / "strength.json").exists()
    experiment = Experiment(RunConfig(**{**AUTO, "lam": 20.0}, method="cqd"), tmp_path / "t-only")
    record = chosen_strength(experiment, METHODS["cqd"]).record
    tried = [candidate["loss"] for candidate in record["stages"][0]["candidates"]]
    assert len(tried) == 3 and all("lambda=20" in loss for loss in tried)
    assert {loss.split("temperature=")[1].split(",")[0] for loss in tried} == {"2", "4", "10"}


def test_a_resumed_run_reads_the_choice_instead_of_searching_again(tmp_path, monkeypatch):
    first = Experiment(RunConfig(**AUTO, method="cqd"), tmp_path)
    chosen = chosen_strength(first, METHODS["cqd"])

    def no_search(*args, **kwargs):
        raise AssertionError("searched again")

    monkeypatch.setattr(strength_module, "_search", no_search)
    again = Experiment(RunConfig(**AUTO, method="cqd"), tmp_path, resume=True)
    assert chosen_strength(again, METHODS["cqd"]).record == chosen.record
    other = Experiment(RunConfig(**{**AUTO, "epochs": 3}, method="cqd"), tmp_path, resume=True)
    with pytest.raises(AssertionError, match="searched again"):  # other settings: the record does not apply
        chosen_strength(other, METHODS["cqd"])


def test_auto_without_a_validation_split_is_a_clear_error(tmp_path):
    experiment = Experiment(RunConfig(**AUTO, method="cqd", val_fraction=0.0), tmp_path)
    with pytest.raises(CqdkitError, match="validation split.*--val-fraction"):
        experiment.train_or_load("cqd")


def test_run_prints_the_chosen_values_and_writes_them_with_their_evidence_to_config_json(tmp_path):
    args = ["run", "--degrade", "lowres", "--method", "cqd", "--dataset-option", "classes=3",
            "--dataset-option", "train_per_class=8", "--dataset-option", "test_per_class=4",
            "--dataset-option", "image_size=48", "--image-size", "32", "--batch-size", "8", "--epochs", "2",
            "--no-amp", "--no-report", "--quiet", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    distillation = json.loads((tmp_path / "run" / "config.json").read_text())["distillation"]
    assert distillation["chosen_by"] == "validation" and distillation["search"]["stages"]
    stage = distillation["search"]["stages"][0]
    assert f"{stage['baseline_val_z_calibrated_nll']:.3f} at lambda = 0" in text
    if distillation["distillation_helps"]:
        assert "chosen on validation" in text and f"lambda = {distillation['lambda']:g}" in text
    else:
        assert "distillation did not help on validation for lowres: the student is B" in text


@pytest.mark.parametrize("second_round", [True, False])
def test_every_candidate_trains_once_and_only_a_finalist_that_beat_lambda_zero_trains_again(
        tmp_path, monkeypatch, second_round):
    first = {"lambda = 0": 0.8, "softce:temperature=2,lambda=5": 0.5 if second_round else 0.85,
             "softce:temperature=4,lambda=50": 0.9, "softce:temperature=10,lambda=500": 1.0}
    second = {"lambda = 0": 0.85, "softce:temperature=2,lambda=5": 0.55}
    trained = []

    def score(self, candidate, index):  # validation NLLs without training anything
        label = candidate.label if candidate.terms else "lambda = 0"
        trained.append((label, index))
        value = (first if index == 0 else second)[label]
        return {"val_z_calibrated_nll": value, "val_z": 1 - value, "val_z_nll": value}

    monkeypatch.setattr(strength_module._Search, "_score", score)
    monkeypatch.setattr(strength_module._Search, "adopt", lambda self, winner: None)
    experiment = Experiment(RunConfig(**AUTO, method="cqd"), tmp_path)
    strength = chosen_strength(experiment, METHODS["cqd"])
    assert sorted(label for label, index in trained if index == 0) == sorted(first)  # every candidate, full length
    stage = strength.record["stages"][0]
    if second_round:
        assert sorted(trained[len(first):]) == [("lambda = 0", 1), ("softce:temperature=2,lambda=5", 1)]
        assert stage["chosen"] == "softce:temperature=2,lambda=5" and strength.helps
        assert stage["cells"][stage["chosen"]]["gain"] == pytest.approx(0.3)
    else:  # none beat lambda = 0 on the run's own seed: no second seed is trained, the term is left out
        assert len(trained) == len(first) and not strength.helps and stage["finalists"] == []
        assert stage["first_round_best"]["loss"] == "softce:temperature=2,lambda=5"


def test_a_loss_without_a_temperature_searches_its_weight_only(tmp_path):
    experiment = Experiment(RunConfig(**{**AUTO, "loss": "logit-l2"}, method="cqd"), tmp_path)
    record = chosen_strength(experiment, METHODS["cqd"]).record
    tried = [candidate["loss"] for candidate in record["stages"][0]["candidates"]]
    assert sorted(tried) == ["logit-l2:lambda=0.01", "logit-l2:lambda=0.1", "logit-l2:lambda=1"]


def test_candidates_whose_long_losses_differ_at_the_end_train_in_different_folders():
    common = "crd:dim=128,negatives=4096,tau=0.07,momentum=0.5,lambda=0.8+rkd:teacher=-2,student=-2,lambda=0.1+"
    names = {strength_module._folder_name(common + tail) for tail in ("softce:temperature=2,lambda=5",
                                                                       "softce:temperature=4,lambda=50")}
    assert len(names) == 2 and all(len(name) <= 91 for name in names)


def test_a_candidate_that_diverges_is_left_out_and_the_search_goes_on(tmp_path, monkeypatch):
    from cqdkit.errors import TrainingError

    real = strength_module._Search._score

    def score(self, candidate, index):
        if "lambda=500" in candidate.label:
            raise TrainingError("the training loss became nan at epoch 1, batch 2")
        return real(self, candidate, index)

    monkeypatch.setattr(strength_module._Search, "_score", score)
    record = chosen_strength(Experiment(RunConfig(**AUTO, method="cqd"), tmp_path), METHODS["cqd"]).record
    [diverged] = [c for c in record["stages"][0]["candidates"] if "lambda=500" in c["loss"]]
    assert diverged["first_round"] == float("inf") and "became nan" in diverged["skipped"]
    assert all(c["first_round"] < float("inf") for c in record["stages"][0]["candidates"] if c is not diverged)


def test_a_resume_cannot_swap_the_chosen_strength_for_a_fixed_one(tmp_path):
    args = ["run", "--degrade", "lowres", "--method", "cqd", "--dataset-option", "classes=3",
            "--dataset-option", "train_per_class=8", "--dataset-option", "test_per_class=4",
            "--dataset-option", "image_size=48", "--image-size", "32", "--batch-size", "8", "--epochs", "1",
            "--no-amp", "--no-report", "--no-baseline", "--quiet", "--out", str(tmp_path / "run")]
    assert CliRunner().invoke(cli, args).exit_code == 0
    resumed = CliRunner().invoke(cli, [*args, "--resume", "--lambda", "5"])
    assert resumed.exit_code == 2 and "chose its distillation strength on validation" in resumed.output
    assert CliRunner().invoke(cli, [*args, "--resume"]).exit_code == 0


def test_the_cpu_profile_distils_softce_and_rkd_unless_a_strength_is_given():
    assert RunConfig().resolved().loss == "softce+rkd"  # each kept or dropped on validation
    assert RunConfig(profile="paper", pretrained=False).resolved().loss == "softce"
    assert RunConfig(lam=20.0).resolved().loss == "softce"  # a strength given is the paper's loss's
    assert RunConfig(tuned="tune.json").resolved().loss == "softce"
    assert RunConfig(lam=20.0, loss="rkd").resolved().loss == "rkd"  # a loss given is kept
