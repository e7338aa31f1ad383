"""Unlabelled pairs: images whose labels are hidden (--label-fraction) or that never had one (--unlabeled) train
the distilled student through the distillation terms only; A, B and A→B never see them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cqdkit.data.records import Record
from cqdkit.data.unlabeled import UNLABELLED, hide_labels, read_unlabeled
from cqdkit.errors import DataError
from cqdkit.plugin import DistillLoss, PluginManager, hookimpl
from cqdkit.train.config import RunConfig
from cqdkit.train.engine import _cross_entropy
from cqdkit.train.experiment import Experiment

from .test_science import TINY


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 12), min_size=1, max_size=5), keep=st.floats(0.05, 1.0), seed=st.integers(0, 9))
def test_hiding_labels_keeps_a_share_of_every_class_and_marks_the_rest(sizes, keep, seed):
    records = [Record(f"{c}-{i}", f"{c}-{i}.png", c) for c, n in enumerate(sizes) for i in range(n)]
    labelled, hidden = hide_labels(records, keep, seed)
    assert len(labelled) + len(hidden) == len(records)
    assert all(r.label == UNLABELLED for r in hidden) and all(r.label >= 0 for r in labelled)
    for label, n in enumerate(sizes):
        assert sum(r.label == label for r in labelled) == max(1, round(keep * n))
    assert {r.id for r in labelled} | {r.id for r in hidden} == {r.id for r in records}
    assert hide_labels(records, keep, seed) == (labelled, hidden)  # seeded


def test_an_unlabelled_folder_is_every_image_in_it(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("one.png", "a/two.jpg", "a/b/three.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    records, problems = read_unlabeled(tmp_path)
    assert problems == []
    assert sorted(r.id for r in records) == ["unlabeled/a/b/three.png", "unlabeled/a/two.jpg", "unlabeled/one.png"]
    assert all(r.label == UNLABELLED and r.bbox is None for r in records)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        read_unlabeled(tmp_path / "empty")
    with pytest.raises(DataError, match="not a folder"):
        read_unlabeled(tmp_path / "one.png")
    (tmp_path / "a" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"broken.png: cannot read the image's size.*--skip-bad"):
        read_unlabeled(tmp_path)  # found when the experiment is built, before anything trains
    kept, problems = read_unlabeled(tmp_path, skip_bad=True)
    assert len(kept) == 3 and len(problems) == 1 and "broken.png" in problems[0]


def test_cross_entropy_ignores_unlabelled_samples_and_a_batch_of_them_gives_zero():
    logits = torch.randn(4, 3, requires_grad=True)
    labels = torch.tensor([0, UNLABELLED, 2, UNLABELLED])
    mixed = _cross_entropy(logits, labels, labels)
    assert mixed.item() == pytest.approx(torch.nn.functional.cross_entropy(logits[[0, 2]], labels[[0, 2]]).item())
    none = torch.full((4,), UNLABELLED)
    zero = _cross_entropy(logits, none, none)
    assert zero.item() == 0.0
    zero.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


class Recorder:
    """A softened L2 that notes the labels of every batch it sees (and runs as a plain logit loss)."""

    labels: list[torch.Tensor] = []

    def __init__(self, temperature: float = 4.0) -> None:
        pass

    def __call__(self, student, teacher, labels):
        Recorder.labels.append(labels.clone())
        return (student.float() - teacher).square().mean()


class RecordingPlugin:
    @hookimpl
    def cqdkit_losses(self):
        yield DistillLoss(name="labels-seen", summary="records labels", factory=Recorder, needs_labels=True)


def test_only_the_distilled_student_trains_on_the_unlabelled_pairs(tmp_path):
    manager = PluginManager(autoload=False)
    manager.register(RecordingPlugin(), "labels-seen")
    config = RunConfig(**{**TINY, "lam": 1.0, "epochs": 1}, method="cqd", loss="labels-seen", label_fraction=0.25)
    experiment = Experiment(config, tmp_path, manager=manager)
    labelled, everything = len(experiment.train_set), len(experiment.distill_set)
    assert labelled < everything and experiment.train_set.records == experiment.distill_set.records[:labelled]
    assert all(r.label >= 0 for r in experiment.train_set.records)
    for name in ("a", "b"):
        assert experiment.train_or_load(name).fit.history[-1]["images"] == labelled
    Recorder.labels.clear()
    cqd = experiment.train_or_load("cqd")
    assert cqd.fit.history[-1]["images"] == everything
    seen = torch.cat(Recorder.labels)
    assert len(seen) == everything and (seen >= 0).all()  # an unlabelled sample's label is the teacher's top class
    teacher_cache = next((tmp_path / "a").glob("teacher-logits-*.safetensors"))
    from safetensors.torch import load_file

    assert load_file(str(teacher_cache))["logits"].shape == (everything, 3)  # f(x) of every pair, labelled or not


def test_without_distill_unlabeled_the_student_sees_the_labelled_images_only(tmp_path):
    config = RunConfig(**{**TINY, "epochs": 1}, method="cqd", label_fraction=0.25, distill_unlabeled=False)
    experiment = Experiment(config, tmp_path)
    assert experiment.distill_set is experiment.train_set
    assert experiment.train_or_load("cqd").fit.history[-1]["images"] == len(experiment.train_set)


def test_an_unlabelled_folder_without_boxes_is_refused_when_x_is_the_box_crop(tmp_path):
    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="has no box.*--no-crop"):
        Experiment(RunConfig(**TINY, unlabeled=str(tmp_path), crop=True), tmp_path / "run")
    experiment = Experiment(RunConfig(**TINY, unlabeled=str(tmp_path), crop=False), tmp_path / "run")
    assert len(experiment.distill_set) == len(experiment.train_set) + 1


def test_the_teachers_cached_outputs_are_keyed_by_what_the_unlabelled_folder_holds(tmp_path):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "frame.png"), np.full((8, 8, 3), 60 if folder == "one" else 200, np.uint8))
    keys = []
    for folder in ("one", "two"):
        experiment = Experiment(RunConfig(**TINY, unlabeled=str(tmp_path / folder), crop=False), tmp_path / folder)
        keys.append(experiment.x_pipeline(experiment.distill_set))
    assert keys[0]["train_ids"] == keys[1]["train_ids"]  # the same names...
    assert keys[0] != keys[1]  # ...but other images: other keys
