"""Tests that guard the science: Equation 1 as written, the teacher on the same sample's x, the methods'
initial weights, and tuning that looks at validation only and keeps distillation on when it helps."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from cqdkit.data.paired import PairedDataset
from cqdkit.errors import CqdkitError
from cqdkit.losses.distill import SoftCrossEntropy
from cqdkit.models.preprocessing import Normalizer
from cqdkit.plugin import DistillLoss, PluginManager, hookimpl
from cqdkit.train import experiment as experiment_module
from cqdkit.train.config import RunConfig
from cqdkit.train.engine import TeacherSignal, TrainingStep, train_one_epoch
from cqdkit.train.experiment import Experiment
from cqdkit.train.hardware import Hardware
from cqdkit.train.tune import choose, run_tune

from .test_train_engine import PairedTensors, distilling

CPU = Hardware(device=torch.device("cpu"))
TINY = dict(
    dataset_options={"classes": 3, "train_per_class": 8, "test_per_class": 4, "image_size": 48},
    image_size=32, batch_size=8, epochs=2, teacher="convnet-s", student="convnet-s", degrade="lowres",
    device="cpu", temperature=10.0, lam=20.0,  # a fixed strength: the search on validation is tested on its own
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


def tiny(**changes) -> RunConfig:
    return RunConfig(**{**TINY, **changes})


# -- Equation 1, one SGD step ------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [0.0, 0.5, 7.0])
def test_one_step_follows_the_gradient_of_ce_plus_lambda_times_l2(lam):
    data = PairedTensors(n=8)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    normalizer = Normalizer([0.5] * 3, [0.25] * 3)
    teacher = torch.randn(len(data), 3, generator=torch.Generator().manual_seed(1)) * 3
    loss = SoftCrossEntropy(temperature=2.0)
    objective = distilling(loss, lam, TeacherSignal(cached=teacher))
    batch = next(iter(DataLoader(data, batch_size=8)))
    expected = copy.deepcopy(model)
    logits = expected(normalizer(batch.z))
    total = F.cross_entropy(logits, batch.label) + lam * loss(logits, teacher[batch.index])
    gradients = torch.autograd.grad(total, list(expected.parameters()))

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_one_epoch(TrainingStep(model, normalizer, objective, CPU), DataLoader(data, batch_size=8), optimizer)
    for parameter, before, gradient in zip(model.parameters(), expected.parameters(), gradients):
        torch.testing.assert_close(parameter, before - 0.1 * gradient)


def test_the_recorded_gradient_ratio_grows_with_lambda():
    data = PairedTensors(n=8)
    teacher = torch.randn(len(data), 3, generator=torch.Generator().manual_seed(1)) * 3
    ratios = []
    for lam in (1.0, 10.0):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
        objective = distilling(SoftCrossEntropy(2.0), lam, TeacherSignal(cached=teacher))
        step = TrainingStep(model, Normalizer([0.5] * 3, [0.25] * 3), objective, CPU)
        totals = train_one_epoch(step, DataLoader(data, batch_size=8), torch.optim.SGD(model.parameters(), lr=0.0))
        ratios.append(totals["gradient_ratio"] / totals["images"])
    assert ratios[1] == pytest.approx(10 * ratios[0], rel=1e-5)


# -- the teacher sees the same sample's x, inside real training ------------------------------------------


class Recorder:
    """A softened cross-entropy that keeps every teacher target it is given."""

    targets: list[torch.Tensor] = []

    def __init__(self, temperature: float = 10.0) -> None:
        self.loss = SoftCrossEntropy(temperature)

    def __call__(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        Recorder.targets.append(teacher.detach().clone())
        return self.loss(student, teacher)


class RecordingPlugin:
    @hookimpl
    def cqdkit_losses(self):
        yield DistillLoss(name="recording", summary="softce that records its targets", factory=Recorder)


class IndexLog(PairedDataset):
    """The training set, noting which samples the loader takes, in order."""

    accessed: list[int] = []

    def __getitem__(self, index):
        IndexLog.accessed.append(index)
        return super().__getitem__(index)


@pytest.mark.parametrize("cache_teacher", [True, False], ids=["cached", "online"])
def test_the_teacher_sees_the_x_of_the_very_sample_the_student_sees(tmp_path, cache_teacher):
    manager = PluginManager()
    manager.register(RecordingPlugin(), "recording")
    experiment = Experiment(tiny(method="cqd", loss="recording", cache_teacher=cache_teacher, lam=1.0), tmp_path,
                            manager=manager)
    teacher = experiment.train_or_load("a")
    Recorder.targets.clear()
    IndexLog.accessed.clear()
    experiment.train_set.__class__ = IndexLog
    experiment.train_or_load("cqd")
    seen = torch.cat(Recorder.targets)
    assert len(seen) == 2 * len(experiment.train_set)  # two epochs, each sample once
    order = IndexLog.accessed[-len(seen):]  # (a cached teacher's logits were computed first, in order)
    with torch.no_grad():
        model = teacher.model.eval()
        on_x = model(teacher.normalizer(torch.stack([experiment.train_set[i].x for i in order])))
        on_z = model(teacher.normalizer(torch.stack([experiment.train_set[i].z for i in order])))
    torch.testing.assert_close(seen, on_x, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(seen, on_z, rtol=1e-2, atol=1e-2)


# -- the methods' initial weights ------------------------------------------------------------------------


def test_students_start_from_a_or_from_the_shared_init(tmp_path, monkeypatch):
    starts: dict[str, dict[str, torch.Tensor]] = {}
    real_fit = experiment_module.fit

    def recording_fit(model, *args, name, **kwargs):
        starts[name] = copy.deepcopy(model.state_dict())
        return real_fit(model, *args, name=name, **kwargs)

    monkeypatch.setattr(experiment_module, "fit", recording_fit)
    experiment = Experiment(tiny(lam=5.0), tmp_path)
    trained = {m: experiment.train_or_load(m) for m in ("a", "b", "a-b", "cqd", "a-cqd")}
    a_final = trained["a"].model.state_dict()
    fresh, _ = experiment.initial_model(experiment_module.get_method("b"))
    for name, tensor in a_final.items():
        assert torch.equal(starts["A→B"][name], tensor) and torch.equal(starts["A+CQD"][name], tensor)
        assert torch.equal(starts["B"][name], starts["CQD"][name])
        assert torch.equal(starts["B"][name], fresh.state_dict()[name])
    assert any(not torch.equal(starts["B"][n], t) for n, t in a_final.items()), "B must not start from A"


def test_at_lambda_zero_cqd_is_b_and_a_cqd_is_a_b_exactly(tmp_path):
    weights = {}
    for lam in (0.0, 50.0):
        experiment = Experiment(tiny(lam=lam), tmp_path / f"l{lam:g}", teacher_root=tmp_path / "teachers")
        weights[lam] = {m: experiment.train_or_load(m).model.state_dict() for m in ("b", "cqd", "a-b", "a-cqd")}
    for name, tensor in weights[0.0]["b"].items():
        assert torch.equal(weights[0.0]["cqd"][name], tensor)
        assert torch.equal(weights[0.0]["a-cqd"][name], weights[0.0]["a-b"][name])
    assert any(not torch.equal(weights[50.0]["cqd"][n], t) for n, t in weights[50.0]["b"].items())
    assert any(not torch.equal(weights[50.0]["a-cqd"][n], t) for n, t in weights[50.0]["a-b"].items())


# -- tuning ------------------------------------------------------------------------------------------------


def test_tuning_never_reads_the_test_split(tmp_path, monkeypatch):
    real = PairedDataset.__getitem__

    def guarded(self, index):
        assert self.split != "test", "tuning read a test sample"
        return real(self, index)

    monkeypatch.setattr(PairedDataset, "__getitem__", guarded)
    result = run_tune(tiny(epochs=1), ["lowres"], tmp_path, methods=("cqd",), seeds=(0,), temperatures=(10.0,),
                      lambdas=(0.0, 5.0))
    grid = result["methods"]["cqd"]["lowres"]["grid"]
    assert [(c["temperature"], c["lam"]) for c in grid] == [(0.0, 0.0), (10.0, 5.0)]
    assert all(math.isfinite(c["score"]) and math.isfinite(c["val_z_nll"]) for c in grid)
    assert (tmp_path / "tune.json").exists() and (tmp_path / "lowres-cqd.png").exists()


def scores(cells: dict[tuple[float, float], list[float]]) -> dict[tuple[float, float], list[dict[str, float]]]:
    """Per-replicate validation scores from per-replicate (calibrated) NLLs; accuracy is not used by the choice."""
    return {key: [{"val_z_calibrated_nll": v, "val_z": 0.5} for v in values] for key, values in cells.items()}


PAPER = {"temperature": 10.0, "lam": 200.0}


def test_ties_between_distilled_cells_go_to_the_paper_values_never_to_less_distillation():
    found = choose(scores({(0.0, 0.0): [1.0, 1.1], (10.0, 2.0): [0.5, 0.6], (10.0, 200.0): [0.5, 0.6],
                           (4.0, 200.0): [0.5, 0.6]}), PAPER)
    assert found["distillation_helps"] and found["chosen"] == {"temperature": 10.0, "lam": 200.0}
    found = choose(scores({(0.0, 0.0): [1.0, 1.1], (4.0, 2.0): [0.5, 0.6], (4.0, 20.0): [0.5, 0.6]}), PAPER)
    assert found["chosen"] == {"temperature": 4.0, "lam": 20.0}  # nearer the paper's 200 than 2 is


def test_the_choice_compares_the_calibrated_nll_not_the_plain_one():
    plain_worse = {(0.0, 0.0): [{"val_z_calibrated_nll": 1.0, "val_z_nll": 0.8, "val_z": 0.5}] * 2,
                   (4.0, 20.0): [{"val_z_calibrated_nll": 0.7, "val_z_nll": 0.9, "val_z": 0.6}] * 2}
    found = choose(plain_worse, PAPER)
    assert found["distillation_helps"] and found["chosen"] == {"temperature": 4.0, "lam": 20.0}
    assert choose(plain_worse, PAPER, score="val_z_nll")["chosen"]["lam"] == 0.0


def test_calibrated_nll_ignores_the_scale_of_the_scores_and_fits_no_image_on_itself():
    from cqdkit.train.evaluate import calibrated_nll, negative_log_likelihood

    torch.manual_seed(0)
    labels = torch.randint(0, 4, (64,))
    logits = torch.randn(64, 4) + 3 * F.one_hot(labels, 4)
    assert calibrated_nll(logits, labels) == pytest.approx(calibrated_nll(logits / 10, labels), abs=0.03)
    assert calibrated_nll(logits / 10, labels) < negative_log_likelihood(logits / 10, labels)
    # Even images say the truth loudly, odd ones say the opposite: a temperature fitted on an image's own half
    # would sharpen the even and flatten the odd; fitted on the other half, it punishes both.
    sign = torch.tensor([1.0, -1.0]).repeat(32).view(64, 1)
    opposite = 5 * sign * F.one_hot(labels, 4)
    assert calibrated_nll(opposite, labels) > math.log(4) + 1.0


def test_a_distilled_cell_must_beat_lambda_zero_by_more_than_the_seeds_spread():
    noisy = choose(scores({(0.0, 0.0): [1.0, 1.0, 1.0], (10.0, 200.0): [0.7, 1.2, 1.0]}), PAPER)
    assert not noisy["distillation_helps"] and noisy["chosen"]["lam"] == 0.0
    clear = choose(scores({(0.0, 0.0): [1.0, 1.0, 1.0], (10.0, 200.0): [0.8, 0.85, 0.9],
                           (2.0, 5.0): [0.5, 0.55, 0.6]}), PAPER)
    assert clear["distillation_helps"] and clear["chosen"] == {"temperature": 2.0, "lam": 5.0}  # clearly best


def test_table_gives_each_distilled_method_its_own_tuned_values(tmp_path):
    from cqdkit.train.table import run_table

    tuned = {"cqd": {"lowres": {"temperature": 2.0, "lam": 5.0}}, "a-cqd": {"lowres": {"temperature": 4.0, "lam": 50.0}}}
    tune_json = tmp_path / "tune.json"
    tune_json.write_text(json.dumps({"methods": {m: {d: {"chosen": v} for d, v in by.items()} for m, by in tuned.items()}}))
    result = run_table(tiny(epochs=1, tuned=str(tune_json)), ["lowres"], [0], tmp_path / "table")
    settings = result["settings"]["lowres"]
    assert settings["cqd"] == {"temperature": 2.0, "lam": 5.0}
    assert settings["a-cqd"] == {"temperature": 4.0, "lam": 50.0}
    folder = tmp_path / "table" / "seed-0" / "lowres"
    for method, place, lam in (("cqd", "T2-lambda5", 5.0), ("a-cqd", "T4-lambda50", 50.0)):
        [epoch] = [json.loads(line) for line in (folder / place / method / "log.jsonl").read_text().splitlines()]
        assert epoch["loss"] == pytest.approx(epoch["ce"] + lam * epoch["distill"], rel=1e-5)


def test_terms_compose_each_with_its_own_weight(tmp_path):
    experiment = Experiment(tiny(method="cqd", loss="softce:temperature=4+fitnet:student=-2,teacher=-2",
                                 lam=[20.0, 3.0], epochs=1), tmp_path)
    [softce, fitnet] = experiment.objective("cqd").terms
    assert (softce.key, softce.weight, softce.spec.temperature) == ("softce", 20.0, 4.0)
    assert (fitnet.key, fitnet.weight, fitnet.term.student_layers) == ("fitnet", 3.0, ("features.10",))
    experiment.train_or_load("cqd")
    [epoch] = [json.loads(line) for line in (tmp_path / "cqd" / "log.jsonl").read_text().splitlines()]
    assert epoch["loss"] == pytest.approx(epoch["ce"] + 20 * epoch["distill.softce"] + 3 * epoch["distill.fitnet"],
                                          rel=1e-5)
    assert epoch["distill"] == pytest.approx(epoch["distill.softce"] + epoch["distill.fitnet"], rel=1e-6)
    with pytest.raises(CqdkitError, match="--lambda gives 3 weights for the 2 terms"):
        Experiment(tiny(method="cqd", loss="softce+fitnet", lam=[1.0, 2.0, 3.0]), tmp_path / "other")
