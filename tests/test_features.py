"""Intermediate features of any backbone (Layers, FeatureTap) and the teacher's features computed once: cached in
float16 under the teacher's folder, keyed by its weights, or the teacher online when they would not fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cqdkit.errors import SpecError
from cqdkit.models import create_backbone
from cqdkit.models.features import FeatureTap, Layers
from cqdkit.plugin import Backbone, PluginManager, hookimpl
from cqdkit.reporting import Reporter
from cqdkit.train.config import RunConfig
from cqdkit.train.experiment import Experiment
from cqdkit.train.teacher import teacher_features

from .test_science import TINY


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


class Plain(nn.Module):
    """A third-party backbone with no feature API: two convolutions, a pool, a classifier."""

    def __init__(self, num_classes: int = 3, in_chans: int = 3) -> None:
        super().__init__()
        self.first = nn.Sequential(nn.Conv2d(in_chans, 4, 3, padding=1), nn.ReLU())
        self.second = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, num_classes))

    def forward(self, x):
        return self.head(self.second(self.first(x)))


@pytest.mark.parametrize("name, size, default, shape", [
    ("convnet-s", 64, "features.14", (128, 8, 8)),
    ("vggm", 64, "features.14", (512, 1, 1)),
    ("resnet18", 64, "layer4", (512, 2, 2)),
])
def test_every_backbone_has_named_stages_and_the_last_is_the_default(name, size, default, shape):
    layers = Layers.probe(create_backbone(name, num_classes=5), image_size=size)
    assert layers.default == default and layers.shape(default) == shape
    assert layers.resolve("") == layers.resolve(None) == layers.resolve("-1") == default
    assert layers.resolve("0") == layers.stages[0] and layers.resolve(layers.stages[1]) == layers.stages[1]


def test_a_network_without_feature_info_gets_a_stage_per_spatial_size():
    layers = Layers.probe(Plain(), image_size=16)
    assert layers.stages == ("first", "second") and layers.shape("second") == (6, 8, 8)
    assert layers.channels("head.2") == 3  # any named layer, vectors included


def test_unknown_layers_and_stages_are_errors_listing_the_valid_ones():
    layers = Layers.probe(Plain(), image_size=16)
    with pytest.raises(SpecError, match=r"no layer 'secnd'; its stages: first, second; all its layers: first.0, first.1"):
        layers.resolve("secnd")
    with pytest.raises(SpecError, match="stage -3 of Plain: it has 2 stages"):
        layers.resolve("-3")
    with pytest.raises(SpecError, match="no layer 'nope' in Plain; its layers: first, first.0"):
        FeatureTap(Plain(), ["nope"])


def test_a_tap_records_the_named_layers_with_their_graph_and_removes_its_hooks():
    model = Plain()
    images = torch.randn(2, 3, 16, 16)
    with FeatureTap(model, ["second", "first.0"]) as tap:
        logits = model(images)
        features = tap.take()
    assert set(features) == {"second", "first.0"} and features["second"].shape == (2, 6, 8, 8)
    features["second"].sum().backward()
    assert model.first[0].weight.grad is not None  # the recorded feature carries its graph
    assert not model.second._forward_hooks and not model.first[0]._forward_hooks
    torch.testing.assert_close(logits, model(images))


class PlainPlugin:
    @hookimpl
    def cqdkit_backbones(self):
        yield Backbone(name="plain", summary="no feature API", factory=lambda num_classes, in_chans=3, **kw:
                       Plain(num_classes, in_chans))


def test_a_distiller_on_a_third_party_backbone_reads_its_layers_by_name(tmp_path):
    manager = PluginManager(autoload=False)
    manager.register(PlainPlugin(), "plain")
    config = RunConfig(**{**TINY, "teacher": "plain", "student": "plain", "lam": 1.0}, method="cqd",
                       loss="fitnet:teacher=second,student=first")
    experiment = Experiment(config, tmp_path, manager=manager)
    [term] = experiment.objective("cqd").terms
    assert term.term.teacher_layers == ("second",) and term.term.student_layers == ("first",)
    assert experiment.train_or_load("cqd").fit.history[-1]["distill"] > 0
    with pytest.raises(SpecError, match="no layer 'third'"):
        Experiment(RunConfig(**{**TINY, "teacher": "plain", "student": "plain", "lam": 1.0}, method="cqd",
                             loss="fitnet:teacher=third"), tmp_path / "other", manager=manager)


def test_teacher_features_are_computed_once_in_float16_and_keyed_by_the_teachers_weights(tmp_path):
    calls = []

    def compute(arrays):
        calls.append(sorted(arrays))
        for layer, array in arrays.items():
            array[:] = np.arange(array.size, dtype=np.float16).reshape(array.shape) % 7

    teacher = Plain()
    shapes = {"first": (4, 2, 2), "second": (6, 1, 1)}
    first = teacher_features(teacher, compute, x_pipeline={"x": 1}, cache_dir=tmp_path, shapes=shapes, num_samples=5)
    again = teacher_features(teacher, compute, x_pipeline={"x": 1}, cache_dir=tmp_path, shapes=shapes, num_samples=5)
    assert calls == [["first", "second"]]  # computed once
    assert first["first"].dtype == np.float16 and first["first"].shape == (5, 4, 2, 2)
    assert np.array_equal(first["second"], again["second"]) and isinstance(again["first"], np.memmap)
    [damaged] = tmp_path.glob("teacher-features-*-first.npy")
    damaged.write_bytes(damaged.read_bytes()[:40])
    teacher_features(teacher, compute, x_pipeline={"x": 1}, cache_dir=tmp_path, shapes=shapes, num_samples=5)
    assert calls[-1] == ["first"]  # only the damaged layer is computed again
    with torch.no_grad():
        teacher.first[0].weight.add_(1.0)
    teacher_features(teacher, compute, x_pipeline={"x": 1}, cache_dir=tmp_path, shapes=shapes, num_samples=5)
    assert calls[-1] == ["first", "second"] and len(calls) == 3  # other weights: other features


class Messages(Reporter):
    def __init__(self):
        super().__init__(None)
        self.lines = []

    def message(self, text):
        self.lines.append(text)


@pytest.mark.parametrize("budget_gb, cached", [(8.0, True), (0.0, False)])
def test_the_run_caches_the_teachers_features_or_runs_it_online_and_says_which(tmp_path, budget_gb, cached):
    reporter = Messages()
    config = RunConfig(**{**TINY, "lam": 1.0}, method="cqd", loss="fitnet", feature_cache_gb=budget_gb)
    experiment = Experiment(config, tmp_path, reporter=reporter)
    signal = experiment.objective("cqd").teacher
    assert signal.online is not cached
    assert bool(list((tmp_path / "a").glob("teacher-features-*.npy"))) is cached
    said = " ".join(reporter.lines)
    assert ("teacher features cached (features.14 128x4x4, float16" in said) is cached
    assert ("the teacher runs online on every batch: its features" in said and "over the 0.0 MB budget" in said) \
        is not cached
    batch = torch.utils.data.default_collate([experiment.train_set[i] for i in range(3)])
    got = signal(batch, experiment.hardware)
    assert got.features["features.14"].shape == (3, 128, 4, 4)
    assert (got.logits is None) is cached  # fitnet reads no logits: none are cached (online they come anyway)
    assert bool(list((tmp_path / "a").glob("teacher-logits-*"))) is False


def test_logits_and_features_come_from_one_pass_with_the_numbers_predict_gives(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from cqdkit.train import experiment as experiment_module
    from cqdkit.train.evaluate import predict

    config = RunConfig(**{**TINY, "lam": [20.0, 1.0]}, method="cqd", loss="softce+fitnet")
    experiment = Experiment(config, tmp_path)
    teacher = experiment.train_or_load("a")
    passes = []
    real = experiment_module.predict
    monkeypatch.setattr(experiment_module, "predict", lambda *a, **k: passes.append(k.get("name")) or real(*a, **k))
    experiment.objective("cqd")
    assert "teacher logits" not in passes  # the features' pass gave them
    [cache] = (tmp_path / "a").glob("teacher-logits-*.safetensors")
    expected, _ = predict(teacher.model, teacher.normalizer, experiment.distill_set, "x", experiment.hardware,
                          batch_size=64)
    assert torch.equal(load_file(str(cache))["logits"], expected)
