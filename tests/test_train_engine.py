"""The training loop on tiny in-memory data: objectives, checkpoints, resume, NaN handling, teacher."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from cqdkit.data.sample import Sample
from cqdkit.errors import CqdkitError, TrainingError
from cqdkit.losses.distill import SoftCrossEntropy
from cqdkit.models.preprocessing import Normalizer
from cqdkit.train.checkpoint import load_checkpoint
from cqdkit.losses.term import DistillTerm, LogitTerm, WeightedTerm
from cqdkit.train.engine import Objective, Optimization, TeacherSignal, fit, gradient_clip, linear_lr
from cqdkit.train.evaluate import accuracy, predict
from cqdkit.train.hardware import Hardware
from cqdkit.train.teacher import FrozenTeacher, cache_key, teacher_logits

CPU = Hardware(device=torch.device("cpu"))


class PairedTensors(Dataset):
    """(x, z, label, index, box) from random uint8 images; z is x with its left half blanked."""

    def __init__(self, n: int = 24, size: int = 8, classes: int = 3, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % classes
        base = torch.randint(0, 60, (n, 3, size, size), generator=generator, dtype=torch.uint8)
        # the class is written into a bright square whose position depends on the label
        for i, label in enumerate(self.labels.tolist()):
            base[i, :, 2 * label : 2 * label + 2, :] = 250
        self.x = base
        self.z = base.clone()
        self.z[:, :, :, : size // 2] = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Sample:
        return Sample(self.x[i], self.z[i], int(self.labels[i]), i, torch.full((4,), float("nan")))


def tiny_model(seed: int = 0, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, classes))


NORMALIZER = Normalizer([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])


def distilling(loss, lam: float, teacher: TeacherSignal, *, view: str = "z", needs_labels: bool = False) -> Objective:
    """CE on ``view`` plus ``lam`` times the logit loss ``loss(student, teacher[, labels])``."""
    return Objective(view=view, terms=[WeightedTerm("loss", LogitTerm(loss, needs_labels=needs_labels), lam)],
                     teacher=teacher)
OPT = Optimization(epochs=4, batch_size=8, lr=0.05, lr_end=0.005, seed=1)


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_linear_lr_goes_from_lr_to_lr_end():
    factor = linear_lr(30, 1e-3, 5e-5)
    assert factor(0) == pytest.approx(1.0)
    assert 1e-3 * factor(29) == pytest.approx(5e-5)
    assert 1e-3 * factor(15) == pytest.approx(1e-3 + (5e-5 - 1e-3) * 15 / 29)
    assert linear_lr(1, 0.1, 0.01)(0) == 1.0


def test_normalizer_matches_formula():
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    expected = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(Normalizer(mean, std)(images), expected)


def test_fit_learns_and_logs(tmp_path):
    data = PairedTensors()
    model = tiny_model()
    result = fit(model, NORMALIZER, data, Objective(view="x"), OPT, CPU, tmp_path)
    logits, labels = predict(model, NORMALIZER, data, "x", CPU)
    assert accuracy(logits, labels) == 1.0
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in lines] == [1, 2, 3, 4]
    assert lines[0]["lr"] == pytest.approx(0.05) and lines[-1]["lr"] == pytest.approx(0.005)
    assert lines[-1]["loss"] < lines[0]["loss"]
    assert result.images_per_second > 0
    assert load_checkpoint(tmp_path).epoch == 4


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    data = PairedTensors()
    uninterrupted = tiny_model()
    fit(uninterrupted, NORMALIZER, data, Objective(view="z"), OPT, CPU, tmp_path / "full")

    interrupted = tiny_model()
    calls = []

    def kill_after_two(epoch: int) -> None:
        calls.append(epoch)
        if epoch == 2:
            raise KeyboardInterrupt  # the run is killed at the start of epoch 3

    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, NORMALIZER, data, Objective(view="z"), OPT, CPU, tmp_path / "killed", on_epoch=kill_after_two)
    assert load_checkpoint(tmp_path / "killed").epoch == 2
    torch.manual_seed(12345)  # whatever happened to the RNG in between must not matter
    resumed = tiny_model(seed=99)  # fresh weights, overwritten by the checkpoint
    result = fit(resumed, NORMALIZER, data, Objective(view="z"), OPT, CPU, tmp_path / "killed")
    assert result.resumed_from == 2
    for name, tensor in state_of(uninterrupted).items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, rtol=0, atol=0)
    assert len(result.history) == 4


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    data = PairedTensors()
    model = tiny_model()
    fit(model, NORMALIZER, data, Objective(view="x"), Optimization(epochs=1, batch_size=8, lr=0.01), CPU, tmp_path)
    good = state_of(model)

    def poisoned(student, teacher):
        return student.sum() * float("nan")

    signal = TeacherSignal(cached=torch.zeros(len(data), 3))
    with pytest.raises(TrainingError, match=r"became nan at epoch 2.*epoch 1.*--resume"):
        fit(model, NORMALIZER, data, distilling(poisoned, 1.0, signal),
            Optimization(epochs=2, batch_size=8, lr=0.01), CPU, tmp_path)
    state = load_checkpoint(tmp_path)
    assert state.epoch == 1
    for name, tensor in good.items():
        torch.testing.assert_close(state.model[name], tensor)


def test_distillation_pulls_student_towards_teacher(tmp_path):
    data = PairedTensors()
    teacher_logits_ = torch.zeros(len(data), 3)
    teacher_logits_[:, 0] = 10.0  # the teacher always says class 0

    def l2(student, teacher):
        return ((student.float() - teacher) ** 2).sum(1).mean()

    heavy = distilling(l2, 5.0, TeacherSignal(cached=teacher_logits_))
    model = tiny_model()
    fit(model, NORMALIZER, data, heavy, Optimization(epochs=4, batch_size=8, lr=0.005, lr_end=0.001), CPU, tmp_path)
    logits, _ = predict(model, NORMALIZER, data, "z", CPU)
    assert (logits.argmax(1) == 0).float().mean() > 0.9


def test_the_soft_cross_entropy_is_logged_with_its_kl_part(tmp_path):
    data = PairedTensors()
    teacher_logits_ = torch.randn(len(data), 3, generator=torch.Generator().manual_seed(0)) * 3
    model = tiny_model()
    fit(model, NORMALIZER, data, distilling(SoftCrossEntropy(temperature=2.0), 1.0, TeacherSignal(cached=teacher_logits_)),
        Optimization(epochs=3, batch_size=8, lr=0.05, lr_end=0.01), CPU, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    p_teacher = torch.softmax(teacher_logits_.double() / 2.0, dim=1)
    entropy = float(-(p_teacher * p_teacher.log()).sum(1).mean())  # the per-image mean over one epoch
    for row in rows:  # soft CE = H(teacher) + KL, every epoch
        assert row["distill"] - row["distill_kl"] == pytest.approx(entropy, abs=1e-5)
        assert 0 <= row["distill_kl"] < row["distill"]
    plain = tmp_path / "plain"
    fit(tiny_model(), NORMALIZER, data, Objective(view="z"), OPT, CPU, plain)
    assert all("distill_kl" not in json.loads(line) for line in (plain / "log.jsonl").read_text().splitlines())


def test_a_loss_that_needs_labels_gets_each_batch_s_ground_truth(tmp_path):
    data = PairedTensors()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def labelled(student, teacher, labels):
        seen.append((teacher.detach().clone(), labels.clone()))
        return ((student.float() - teacher) ** 2).mean()

    teacher_logits_ = torch.arange(len(data), dtype=torch.float32).repeat(3, 1).T  # row i is all i
    objective = distilling(labelled, 1.0, TeacherSignal(cached=teacher_logits_), needs_labels=True)
    fit(tiny_model(), NORMALIZER, data, objective, Optimization(epochs=1, batch_size=8), CPU, tmp_path)
    assert sum(len(labels) for _, labels in seen) == len(data)
    for teacher, labels in seen:  # the labels are those of the very samples whose teacher logits came along
        assert torch.equal(labels, data.labels[teacher[:, 0].long()])


def test_online_and_cached_teacher_give_the_same_signal():
    data = PairedTensors()
    frozen = FrozenTeacher(tiny_model(seed=3))
    online = TeacherSignal(teacher=frozen, normalizer=NORMALIZER)
    logits, _ = predict(frozen, NORMALIZER, data, "x", CPU)
    cached = TeacherSignal(cached=logits)
    batch = default_collate([data[5], data[2]])
    torch.testing.assert_close(online(batch, CPU).logits, cached(batch, CPU).logits)


def test_frozen_teacher_stays_in_eval_mode_without_gradients():
    frozen = FrozenTeacher(tiny_model())
    holder = nn.ModuleDict({"teacher": frozen, "student": tiny_model()})
    holder.train()
    assert not frozen.model.training and not frozen.training
    assert all(not p.requires_grad for p in frozen.parameters())
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(frozen(x), frozen(x))  # dropout is off
    assert not frozen(x).requires_grad


def test_teacher_logits_are_computed_once_and_keyed_by_weights(tmp_path: Path):
    teacher = tiny_model(seed=1)
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(6.0).view(2, 3)

    pipeline = {"dataset": "toy", "size": 8}
    first = teacher_logits(teacher, compute, x_pipeline=pipeline, x_random=False, cache_dir=tmp_path)
    second = teacher_logits(teacher, compute, x_pipeline=pipeline, x_random=False, cache_dir=tmp_path)
    torch.testing.assert_close(first, second)
    assert len(calls) == 1
    other = tiny_model(seed=2)
    assert cache_key(other, pipeline) != cache_key(teacher, pipeline)
    assert cache_key(teacher, {**pipeline, "size": 16}) != cache_key(teacher, pipeline)
    teacher_logits(other, compute, x_pipeline=pipeline, x_random=False, cache_dir=tmp_path)
    assert len(calls) == 2


def test_teacher_logits_cache_is_refused_for_random_x(tmp_path):
    with pytest.raises(TrainingError, match="random"):
        teacher_logits(tiny_model(), lambda: torch.zeros(1, 3), x_pipeline={}, x_random=True, cache_dir=tmp_path)


def test_checkpoint_files_are_hashed(tmp_path):
    data = PairedTensors()
    fit(tiny_model(), NORMALIZER, data, Objective(view="x"), Optimization(epochs=1, batch_size=8), CPU, tmp_path)
    tensors = next(tmp_path.glob("epoch-*.safetensors"))
    data_bytes = bytearray(tensors.read_bytes())
    data_bytes[-8:] = bytes(b ^ 0xFF for b in data_bytes[-8:])  # flip the last bytes
    tensors.write_bytes(bytes(data_bytes))
    with pytest.raises(TrainingError, match="does not match the hash"):
        load_checkpoint(tmp_path)


def _weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


def test_networks_without_normalisation_layers_clip_their_gradient_norm(tmp_path):
    data = PairedTensors()  # 24 images, batches of 8: 3 steps
    plain_sgd = Optimization(epochs=1, batch_size=8, lr=1.0, lr_end=1.0, momentum=0.0, weight_decay=0.0, seed=1)
    moved = {}
    for clip in (0.0, 1e-3):
        model = tiny_model()  # no batch/group/layer norm
        before = _weights(model)
        fit(model, NORMALIZER, data, Objective(view="x"), dataclasses.replace(plain_sgd, clip_grad_norm=clip), CPU,
            tmp_path / str(clip))
        moved[clip] = float((_weights(model) - before).norm())
    assert moved[1e-3] <= 3 * 1e-3 * (1 + 1e-4), "three steps of lr 1 with gradients of norm <= 1e-3"
    assert moved[0.0] > 30 * 3 * 1e-3, "unclipped, the same steps go much further"


def test_only_networks_without_normalisation_layers_are_clipped():
    optimization = Optimization(clip_grad_norm=2.0)
    assert gradient_clip(tiny_model(), optimization) == 2.0
    assert gradient_clip(nn.Sequential(nn.Conv2d(3, 4, 3), nn.LocalResponseNorm(5)), optimization) == 2.0  # VGG-M
    assert gradient_clip(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), optimization) == 0.0
    assert gradient_clip(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)), optimization) == 0.0
    assert gradient_clip(tiny_model(), Optimization()) == 0.0, "off unless asked for"
    # None: per network; a deep plain network is clipped at 1, a shallow one or a normalised one is not
    per_network = Optimization(clip_grad_norm=None)

    def plain(layers: int, norm: bool = False) -> nn.Module:
        body = [nn.Conv2d(3, 3, 3, padding=1) for _ in range(layers - 1)] + [nn.Flatten(), nn.Linear(3, 2)]
        return nn.Sequential(*body, *([nn.BatchNorm2d(3)] if norm else []))

    assert gradient_clip(plain(16), per_network) == 1.0  # vgg16
    assert gradient_clip(plain(11), per_network) == 1.0 and gradient_clip(plain(10), per_network) == 0.0
    assert gradient_clip(plain(8), per_network) == 0.0  # vggm
    assert gradient_clip(plain(16, norm=True), per_network) == 0.0
    assert gradient_clip(plain(16), Optimization(clip_grad_norm=0.0)) == 0.0  # --clip-grad-norm 0: off


def test_clipping_is_per_network_on_the_cpu_profile_and_off_in_the_papers():
    from cqdkit.train.config import RunConfig

    assert RunConfig().resolved().clip_grad_norm == "auto"
    assert RunConfig().resolved().optimization().clip_grad_norm is None  # gradient_clip chooses per network
    assert RunConfig(profile="paper", pretrained=False).resolved().optimization().clip_grad_norm == 0.0
    assert RunConfig(clip_grad_norm=1.0).resolved().optimization().clip_grad_norm == 1.0
    assert RunConfig(clip_grad_norm=0).resolved().optimization().clip_grad_norm == 0.0
    for bad in (-1.0, float("inf"), "sometimes", True):
        with pytest.raises(CqdkitError, match="--clip-grad-norm must be a finite number >= 0 .*or 'auto'"):
            RunConfig(clip_grad_norm=bad).resolved()


# -- the parts a distillation term owns are trained like the model -------------------------------------------


class _Owning(DistillTerm):
    """A term with a parameter of its own (``scale``) and a buffer; ``poison`` fills the buffer with NaN."""

    def __init__(self, poison: bool = False, steep: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.register_buffer("seen", torch.zeros(()))
        self.poison, self.steep = poison, steep

    def forward(self, student, teacher, batch):
        with torch.no_grad():
            self.seen.fill_(float("nan") if self.poison else self.seen.item() + 1)
        return self.steep * self.scale * (student.logits.float() - teacher.logits).square().mean()


def _owning_objective(term: DistillTerm) -> Objective:
    return Objective(view="z", terms=[WeightedTerm("owning", term, 1.0)],
                     teacher=TeacherSignal(cached=torch.zeros(len(PairedTensors()), 3)))


def test_a_terms_own_buffer_that_turns_nan_stops_training_like_the_models_weights(tmp_path):
    with pytest.raises(TrainingError, match="weights became NaN or infinite during epoch 1"):
        fit(tiny_model(), NORMALIZER, PairedTensors(), _owning_objective(_Owning(poison=True)),
            Optimization(epochs=1, batch_size=8), CPU, tmp_path)


def test_gradient_clipping_bounds_the_model_and_the_terms_parts_together(tmp_path):
    term = _Owning(steep=1e6)  # its parameter's gradient dwarfs everything
    model = tiny_model()
    before = {name: value.clone() for name, value in [*model.named_parameters(), ("scale", term.scale)]}
    optimization = Optimization(epochs=1, batch_size=24, lr=0.1, momentum=0.0, weight_decay=0.0, clip_grad_norm=1.0)
    fit(model, NORMALIZER, PairedTensors(), _owning_objective(term), optimization, CPU, tmp_path)
    after = {name: value for name, value in [*model.named_parameters(), ("scale", term.scale)]}
    moved = torch.sqrt(sum((after[name] - before[name]).square().sum() for name in before))
    assert moved.item() == pytest.approx(0.1 * 1.0, rel=1e-4)  # one step of lr x the clipped norm, parts included
    assert (term.scale - before["scale"]).abs().item() > 0  # and the part trained


def test_a_checkpoint_of_other_terms_is_a_clear_error_not_a_traceback(tmp_path):
    fit(tiny_model(), NORMALIZER, PairedTensors(), _owning_objective(_Owning()), Optimization(epochs=1, batch_size=8),
        CPU, tmp_path)
    other = _owning_objective(_Owning())
    other.parts["owning"].register_parameter("extra", nn.Parameter(torch.zeros(2)))
    with pytest.raises(TrainingError, match="trained with other distillation terms"):
        fit(tiny_model(), NORMALIZER, PairedTensors(), other, Optimization(epochs=2, batch_size=8), CPU, tmp_path)


def test_checkpoints_cost_at_most_a_tenth_of_the_training_and_a_finished_one_keeps_its_last(tmp_path, monkeypatch):
    import time

    import cqdkit.train.engine as engine

    saved, real_save = [], engine._save

    def slow_save(directory, epochs_done, *args):  # as slow as a large model's checkpoint, next to tiny epochs
        saved.append(epochs_done)
        real_save(directory, epochs_done, *args)
        time.sleep(0.6)

    monkeypatch.setattr(engine, "_save", slow_save)
    optimization = dataclasses.replace(OPT, epochs=5)
    result = fit(tiny_model(), NORMALIZER, PairedTensors(), Objective(view="z"), optimization, CPU, tmp_path / "slow")
    assert saved == [1, 5]  # after the first, the next waits for 10 x 0.6 s of training; the last always
    assert sorted(p.name for p in (tmp_path / "slow").glob("epoch-*.safetensors")) == ["epoch-0005.safetensors"]
    logged = [json.loads(line)["epoch"] for line in (tmp_path / "slow" / "log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5] and len(result.history) == 5  # the log has every epoch
    saved.clear()
    monkeypatch.setattr(engine, "_save", real_save)
    fit(tiny_model(), NORMALIZER, PairedTensors(), Objective(view="z"), optimization, CPU, tmp_path / "fast",
        stop_after=3)
    assert sorted(p.name for p in (tmp_path / "fast").glob("epoch-*.json")) == ["epoch-0002.json", "epoch-0003.json"]
