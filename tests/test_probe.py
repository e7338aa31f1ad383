"""The throughput probe: the time estimate a run prints, and bf16 on the CPU only where measured faster."""

from __future__ import annotations

import io
import json

import pytest
import torch

from cqdkit.models import Normalizer, create_backbone
from cqdkit.train import experiment as experiment_module
from cqdkit.train import probe as probe_module
from cqdkit.train.config import RunConfig
from cqdkit.train.experiment import Experiment
from cqdkit.train.hardware import Hardware
from cqdkit.reporting import Reporter
from cqdkit.train.probe import Speed, probe_training
from cqdkit.train.run import fit_budget

from .test_run_cli import TINY, invoke

TINY_CONFIG = dict(dataset_options={"classes": 3, "train_per_class": 8, "test_per_class": 4, "image_size": 48},
                   image_size=32, batch_size=8, epochs=2, device="cpu", degrade="gray")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


def test_the_probe_measures_without_touching_the_model_or_the_random_streams(monkeypatch):
    monkeypatch.setattr(probe_module, "cpu_has_fast_bf16", lambda: False)  # first: a CPU without bf16 hardware
    model = create_backbone("convnet-s", num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    speed = probe_training(model, Normalizer.for_model(model), Hardware(), batch_size=4, image_size=16, in_chans=3)
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert speed.images_per_second == speed.float32 > 0 and not speed.bf16
    monkeypatch.setattr(probe_module, "cpu_has_fast_bf16", lambda: True)
    timings = iter([100.0, 200.0])  # float32, then bf16: twice as fast
    monkeypatch.setattr(probe_module, "training_images_per_second", lambda *args: next(timings))
    assert probe_training(model, Normalizer.for_model(model), Hardware(), batch_size=4, image_size=16,
                          in_chans=3) == Speed(200.0, 100.0, bf16=True)
    timings = iter([100.0, 110.0])  # not 15% faster: float32
    assert not probe_training(model, Normalizer.for_model(model), Hardware(), batch_size=4, image_size=16,
                              in_chans=3).bf16


def test_cpu_bf16_is_chosen_per_model_recorded_and_reused_on_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path / "cache"))  # the machine's record of the choice stays here
    monkeypatch.setattr(experiment_module, "cpu_has_fast_bf16", lambda: True)
    calls = []

    def fake_probe(model, normalizer, hardware, **kwargs):
        calls.append(type(model).__name__)
        return Speed(50.0, 25.0, bf16=True)

    monkeypatch.setattr(probe_module, "probe_training", fake_probe)
    experiment = Experiment(RunConfig(**TINY_CONFIG), tmp_path)
    trained = experiment.train_or_load("b")
    assert trained.hardware.cpu_bf16 and json.loads((tmp_path / "b" / "precision.json").read_text())["cpu_bf16"]
    with trained.hardware.autocast():
        logits = trained.model(torch.zeros(2, 3, 32, 32))
    assert logits.dtype == torch.bfloat16
    assert len(calls) == 1
    again = Experiment(RunConfig(**TINY_CONFIG), tmp_path).train_or_load("b")
    assert again.hardware.cpu_bf16 and len(calls) == 1, "the recorded choice is reused, not probed again"
    elsewhere = Experiment(RunConfig(**TINY_CONFIG), tmp_path / "another-run").train_or_load("b")
    assert elsewhere.hardware.cpu_bf16 and len(calls) == 1, "a new run of the same network and sizes is not probed"


def test_run_says_where_the_networks_start_and_how_long_it_will_take(tmp_path):
    args = [a for a in TINY if a != "--quiet"]
    result = invoke("run", "--degrade", "gray", "--method", "cqd", *args, "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "teacher convnet-s: no pretrained weights, trained from scratch" in text
    assert "estimated training time: about" in text and "A " in text and "images/s" in text


def _fake_estimates(monkeypatch, seconds_at_size):
    """estimate_training replaced by ``seconds_at_size(image_size)``; returns the sizes probed, in order."""
    probed = []

    def estimate(experiment, names):
        probed.append(experiment.config.image_size)
        return {"seconds": seconds_at_size(experiment.config.image_size), "models": {"a": 100.0}}

    monkeypatch.setattr(probe_module, "estimate_training", estimate)
    return probed


def _fit(tmp_path, **settings):
    config = RunConfig(**{**TINY_CONFIG, "image_size": None, "budget": 1.0, **settings})
    stream = io.StringIO()
    experiment, estimate = fit_budget(config, Experiment(config, tmp_path), ["a", "b"],
                                      Reporter(None, log_format="json", json_stream=stream))
    messages = [json.loads(line)["text"] for line in stream.getvalue().splitlines()]
    return experiment, estimate, messages


def test_run_trains_at_the_largest_input_size_that_fits_its_budget(tmp_path, monkeypatch):
    probed = _fake_estimates(monkeypatch, lambda size: 1.5 * size)  # 64 px: 96 s, 48: 72 s, 32: 48 s
    experiment, estimate, messages = _fit(tmp_path, budget=75 / 60)
    assert probed == [64, 64, 48] and experiment.config.image_size == 48 and estimate["seconds"] == 72
    assert experiment.maker.size == 48, "the pairs are made at the chosen size"
    assert "over the 1.25-minute budget (--budget); probing 48 px" in messages[0]
    assert messages[-1] == "input size 48 px instead of the profile's 64; --image-size 64 keeps it"


def test_a_run_within_its_budget_or_with_its_size_given_keeps_the_size(tmp_path, monkeypatch):
    probed = _fake_estimates(monkeypatch, lambda size: 1.5 * size)
    experiment, _, messages = _fit(tmp_path / "fits", budget=2.0)
    assert probed == [64] and experiment.config.image_size == 64 and not messages
    experiment, _, messages = _fit(tmp_path / "given", image_size=64, budget=0.1)
    assert probed == [64, 64] and experiment.config.image_size == 64 and not messages
    experiment, _, _ = _fit(tmp_path / "paper", budget=None, profile="paper", pretrained=False, teacher="convnet-s",
                            student="convnet-s", batch_size=8, epochs=2)
    assert experiment.config.budget is None and experiment.config.image_size == 224, "the paper has no budget"


def test_over_budget_even_at_the_smallest_size_says_so(tmp_path, monkeypatch):
    probed = _fake_estimates(monkeypatch, lambda size: 100.0 * size)
    experiment, _, messages = _fit(tmp_path, budget=1.0)
    assert probed == [64, 64, 48, 48, 32, 32] and experiment.config.image_size == 32
    assert "still over the budget (fewer --epochs shortens it)" in messages[-1]


def test_over_budget_everywhere_takes_the_fastest_size_probed_never_a_slower_one(tmp_path, monkeypatch):
    seconds = {64: 18 * 60, 48: 13 * 60, 32: 24 * 60}  # what the design card's command probed once
    probed = _fake_estimates(monkeypatch, seconds.__getitem__)
    experiment, estimate, messages = _fit(tmp_path, budget=12.0)
    assert probed == [64, 64, 48, 48, 32, 32]
    assert experiment.config.image_size == 48 and estimate["seconds"] == 13 * 60 and experiment.maker.size == 48
    assert "input size 48 px instead of the profile's 64, the fastest of the sizes probed (64 px 18 min, 48 px " \
           "13 min, 32 px 24 min), still over the budget" in messages[-1]


def test_a_probe_slowed_by_another_process_does_not_decide_the_size_alone(tmp_path, monkeypatch):
    disturbed = iter([20 * 60.0])  # the first probe ran beside another job; the repeat did not

    probed = _fake_estimates(monkeypatch, lambda size: next(disturbed, 10 * 60.0))
    experiment, estimate, messages = _fit(tmp_path, budget=12.0)
    assert probed == [64, 64] and experiment.config.image_size == 64 and estimate["seconds"] == 600
    assert not messages
