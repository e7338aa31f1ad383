"""The training loop: one model, one objective, SGD, checkpoints every epoch, resumable.

Data flows exactly as in the paper's Equation 1::

    batch (x, z, y, i) -> student(view) -> CE(student, y) [+ sum_k lambda_k * term_k(student, f(x_i))] -> SGD step

where ``view`` is x for method A and z for every other method, f(x_i) (logits, and the features of the layers
the terms read) comes from the frozen teacher (cached or online, :mod:`cqdkit.train.teacher`), and each term
is a :class:`~cqdkit.losses.DistillTerm`. Images travel as uint8 and are normalised on the device.

:class:`Objective` is what a method minimises; :class:`TrainingStep` runs one batch through the student and
the objective; :func:`fit` sets up (optimizer over the student and the terms' own parts, schedule, resume,
DDP), then alternates :func:`train_one_epoch` and a checkpoint; the loop itself only sums the terms and
steps, and knows nothing about files.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..data.sample import Sample, check_view
from ..errors import TrainingError
from ..files import atomic_write_text
from ..losses.term import Outputs, TermBatch, WeightedTerm
from ..models.features import FeatureTap
from ..models.preprocessing import Normalizer
from ..plugin.guard import reraise
from ..reporting import Reporter
from .checkpoint import keep_final_only, load_checkpoint, restore_rng, save_checkpoint
from .distributed import world
from .hardware import Hardware
from .teacher import TeacherSignal


@dataclass(frozen=True)
class Optimization:
    """SGD hyperparameters (the paper's by default)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    lr_end: float = 5e-5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    clip_grad_norm: float | None = 0.0  # networks without normalisation layers (0: never; None: per network)


#: Layers that keep activations at a learned scale (batch, instance, group and layer norm; not VGG-M's LRN).
NORMALIZATION_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
#: ``clip_grad_norm=None``: a network without normalisation layers and at least this many weight layers
#: (VGG-11 and deeper; not VGG-M's 8) is clipped at :data:`DEEP_PLAIN_CLIP`.
DEEP_PLAIN_LAYERS = 11
DEEP_PLAIN_CLIP = 1.0
#: A checkpoint is written after every epoch while writing one takes under QUICK_CHECKPOINT seconds; a slower
#: one only once the training since the last took CHECKPOINT_COST_FACTOR times as long as writing it did (and
#: always after the last epoch), so that checkpoints cost at most about a tenth of the time: vggm at 48 px (0.8 GB
#: with its momentum, ~2 s to write, ~5 s per epoch on two cores) is saved about every fourth epoch. A killed run
#: loses at most the epochs since its last checkpoint.
QUICK_CHECKPOINT = 0.5
CHECKPOINT_COST_FACTOR = 10.0


def gradient_clip(model: nn.Module, optimization: Optimization) -> float:
    """The gradient-norm bound for ``model`` (0: none). Networks with :data:`NORMALIZATION_LAYERS` are never
    clipped. Others get ``optimization.clip_grad_norm``, or with ``None`` (the default of ``cqdkit run``) a
    bound chosen per network: :data:`DEEP_PLAIN_CLIP` for a deep one (:data:`DEEP_PLAIN_LAYERS`), none for a
    shallow one. Measured from scratch at 48 px: vgg16 learns only the colour unclipped (validation 16.7%)
    and the pattern clipped at 1 (31.2%), while clipping vggm slowed it (22.9% against 45.8%)."""
    if any(isinstance(m, NORMALIZATION_LAYERS) for m in model.modules()):
        return 0.0
    if optimization.clip_grad_norm is not None:
        return optimization.clip_grad_norm
    return DEEP_PLAIN_CLIP if is_deep_plain(model) else 0.0


def is_deep_plain(model: nn.Module) -> bool:
    """Whether ``model`` has no :data:`NORMALIZATION_LAYERS` and at least :data:`DEEP_PLAIN_LAYERS` weight layers
    (vgg16; not vggm): the networks that ``--clip-grad-norm auto`` clips and ``--init auto`` starts by LSUV."""
    if any(isinstance(m, NORMALIZATION_LAYERS) for m in model.modules()):
        return False
    return sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()) >= DEEP_PLAIN_LAYERS


@dataclass(frozen=True)
class StepLoss:
    """One batch's loss and its parts."""

    total: torch.Tensor  # what is minimised
    ce: torch.Tensor  # the cross-entropy on the labels
    distill: torch.Tensor  # the distillation terms summed, before their weights (0 without distillation)
    gradient_ratio: float  # ||grad of the weighted terms|| / ||grad of CE|| w.r.t. the logits (0 without)
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # each term before its weight
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)  # "<term key>.<name>": what terms report


class Objective:
    """What a method minimises: CE on the labelled samples' ``view``, plus each distillation term times its weight.

    Args:
        view: ``"x"`` or ``"z"``: what the student sees.
        terms: the distillation terms with their weights (:class:`~cqdkit.losses.WeightedTerm`); none for A, B, A→B.
        teacher: where the teacher's outputs come from (needed exactly when there are terms).

    ``parts`` holds the modules the terms own (regressors, heads, memory banks): the trainer optimises,
    checkpoints and resumes them with the model.
    """

    def __init__(self, view: str, terms: Sequence[WeightedTerm] = (), teacher: TeacherSignal | None = None) -> None:
        check_view(view)
        if bool(terms) != (teacher is not None):
            raise ValueError("a distillation objective needs both its terms and a teacher")
        self.view, self.terms, self.teacher = view, tuple(terms), teacher
        self.parts = nn.ModuleDict({weighted.key: weighted.term for weighted in self.terms})
        self.student_layers = tuple(dict.fromkeys(l for w in self.terms for l in w.term.student_layers))
        self.live = any(weighted.term.live_teacher for weighted in self.terms)

    def loss(self, logits: torch.Tensor, features: dict[str, torch.Tensor], batch: Sample, labels: torch.Tensor,
             hardware: Hardware) -> StepLoss:
        """Equation 1 on a batch: CE on the labelled samples, plus every term times its weight."""
        ce = _cross_entropy(logits, labels, batch.label)
        if not self.terms:
            return StepLoss(ce, ce, torch.zeros((), device=ce.device), 0.0)
        assert self.teacher is not None
        student = Outputs(logits, features)
        teacher = self.teacher(batch, hardware)
        context = TermBatch(labels, batch.index.to(hardware.device, non_blocking=True),
                            **(self._live(batch, hardware) if self.live else {}))
        values, weighted = {}, []
        for term in self.terms:
            try:
                value = term.term(student, teacher, context)
            except Exception as error:  # a plugin's bug: one line naming it (cqdkit.plugin.guard)
                reraise(term.plugin, f"distillation term {term.key!r}", error)
            values[term.key] = value
            weighted.append(term.weight * value)
        distill = values[self.terms[0].key] if len(values) == 1 else torch.stack(list(values.values())).sum()
        weighted_sum = weighted[0] if len(weighted) == 1 else torch.stack(weighted).sum()
        with torch.no_grad():
            diagnostics = {f"{term.key}.{name}": value.detach() for term in self.terms
                           for name, value in term.term.diagnostics(student, teacher, context).items()}
        return StepLoss(ce + weighted_sum, ce, distill, _gradient_ratio(logits, ce, weighted_sum), values,
                        diagnostics)

    def _live(self, batch: Sample, hardware: Hardware) -> dict[str, Any]:
        """What a live-teacher term gets: the batch's views on the device and the teacher to run on them."""
        assert self.teacher is not None
        images = {"x": batch.x.to(hardware.device, non_blocking=True), "z": batch.z.to(hardware.device, non_blocking=True)}
        return {"images": images, "teacher": lambda pixels: self.teacher.run(pixels, hardware)}


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, cpu_labels: torch.Tensor) -> torch.Tensor:
    """CE on the labelled samples (label >= 0; unlabelled ones are -1), the mean over them; 0 for a batch of
    unlabelled samples only. ``cpu_labels`` (the batch's, before the copy to the device) decides without a sync."""
    if bool((cpu_labels >= 0).all()):
        return F.cross_entropy(logits.float(), labels)
    if not bool((cpu_labels >= 0).any()):
        return logits.float().sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=-1)


def _gradient_ratio(logits: torch.Tensor, ce: torch.Tensor, distill: torch.Tensor) -> float:
    """||d(sum of weighted terms)/d logits|| / ||d CE/d logits|| on this batch: how strongly distillation pulls
    on the logits (a term on features only pulls on them through the network: 0 here).

    Only the loss part of the graph is differentiated (with respect to the logits), not the network.
    """
    if not logits.requires_grad:
        return float("nan")
    (ce_grad,) = torch.autograd.grad(ce, logits, retain_graph=True, allow_unused=True)
    (distill_grad,) = torch.autograd.grad(distill, logits, retain_graph=True, allow_unused=True)
    if distill_grad is None:
        return 0.0
    ce_norm = float(ce_grad.float().norm()) if ce_grad is not None else 0.0
    return float(distill_grad.float().norm()) / ce_norm if ce_norm > 0 else float("inf")


class TrainingStep(nn.Module):
    """One training step's forward pass: the student on the objective's view (recording the layers its terms
    read), then the objective's loss. It holds the student and the terms' own parts, so that the optimizer,
    DDP and the finite-weights check see both; the normaliser and the teacher are not trained.

    ``step(batch) -> (logits, StepLoss)``.
    """

    def __init__(self, student: nn.Module, normalizer: Normalizer, objective: Objective, hardware: Hardware) -> None:
        super().__init__()
        self.student = student
        self.parts = objective.parts
        self.objective, self.hardware = objective, hardware
        self.normalizer = normalizer
        self.tap = FeatureTap(student, objective.student_layers) if objective.student_layers else None

    def forward(self, batch: Sample) -> tuple[torch.Tensor, StepLoss]:
        hardware = self.hardware
        labels = batch.label.to(hardware.device, non_blocking=True)
        inputs = hardware.to_input(self.normalizer, batch.view(self.objective.view))
        features: dict[str, torch.Tensor] = {}
        with hardware.autocast():
            if self.tap is None:
                logits = self.student(inputs)
            else:
                with self.tap:
                    logits = self.student(inputs)
                    features = self.tap.take()
        return logits, self.objective.loss(logits, features, batch, labels, hardware)


@dataclass
class FitResult:
    """The trained model's history: one dict per epoch (also written to ``log.jsonl``)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int = 0

    @property
    def images_per_second(self) -> float:
        seconds = sum(row["seconds"] for row in self.history)
        images = sum(row["images"] for row in self.history)
        return images / seconds if seconds else float("nan")


def linear_lr(epochs: int, lr: float, lr_end: float) -> Callable[[int], float]:
    """Multiplier of ``lr`` at each epoch: linear from ``lr`` (first epoch) to ``lr_end`` (last epoch)."""

    def factor(epoch: int) -> float:
        if epochs <= 1:
            return 1.0
        t = min(epoch, epochs - 1) / (epochs - 1)
        return (lr + (lr_end - lr) * t) / lr

    return factor


def make_loader(
    dataset: Dataset, batch_size: int, hardware: Hardware, *, shuffle: bool, seed: int
) -> tuple[DataLoader, DistributedSampler]:
    """A loader whose global batches are the same whatever the number of processes.

    Every process draws the same permutation (seeded by ``seed`` and the epoch) and takes its interleaved
    share, with ``batch_size / world_size`` samples per process and step.
    """
    rank, size = world()
    if batch_size % size:
        raise TrainingError(f"batch size {batch_size} is not divisible by the {size} processes")
    sampler = DistributedSampler(dataset, num_replicas=size, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
    loader = DataLoader(
        dataset,
        batch_size=batch_size // size,
        sampler=sampler,
        num_workers=hardware.workers,
        pin_memory=hardware.cuda,
        persistent_workers=hardware.workers > 0,
        drop_last=False,
    )
    return loader, sampler


def fit(
    model: nn.Module,
    normalizer: Normalizer,
    dataset: Dataset,
    objective: Objective,
    optimization: Optimization,
    hardware: Hardware,
    directory: Path,
    *,
    name: str = "model",
    resume: bool = True,
    on_epoch: Callable[[int], None] | None = None,
    validate: Callable[[nn.Module], float] | None = None,
    reporter: Reporter | None = None,
    stop_after: int | None = None,
) -> FitResult:
    """Train ``model`` in place for ``optimization.epochs`` epochs, checkpointing into ``directory`` (after every
    epoch, or less often when a checkpoint is slow to write, :data:`CHECKPOINT_COST_FACTOR`; always after the last;
    a finished training keeps only its last checkpoint).

    With ``resume``, a checkpoint in ``directory`` is continued (a finished one is just loaded), giving the
    same weights as an uninterrupted run on the CPU. ``stop_after`` stops after that many epochs of the
    schedule, as a process killed then would (a later call continues it). ``on_epoch(epoch)`` is called before each epoch (the
    dataset uses it to redraw z when asked to); ``validate(model)``, after each epoch, gives the row's
    ``val_acc`` (it must not draw from the global random streams). Each epoch's row goes to ``reporter``.

    Raises:
        TrainingError: the loss became NaN or infinite (the last good checkpoint stays on disk).
    """
    rank, size = world()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    hardware.prepare(model)
    objective.parts.to(hardware.device)
    normalizer.to(hardware.device)
    trained = [*model.parameters(), *objective.parts.parameters()]  # the model's first: their order in checkpoints
    optimizer = hardware.sgd(
        trained, lr=optimization.lr, momentum=optimization.momentum, weight_decay=optimization.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_lr(optimization.epochs, optimization.lr, optimization.lr_end)
    )
    result = _resume(directory, model, objective.parts, optimizer, scheduler, optimization) if resume else FitResult()
    step = TrainingStep(model, normalizer, objective, hardware)
    until = optimization.epochs if stop_after is None else min(stop_after, optimization.epochs)
    if result.resumed_from >= until:
        if not _finite_state(step, optimizer):
            raise TrainingError(f"the finished model in {directory} has non-finite weights; delete the folder and train "
                                "it again (lower --lr or --lambda)")
        return result
    if not result.resumed_from:  # every model's random streams start from its seed, whatever ran before it
        torch.manual_seed(_stream_seed(optimization.seed, name))
    trainable = _wrap(step, hardware)
    clip = gradient_clip(model, optimization)
    loader, sampler = make_loader(dataset, optimization.batch_size, hardware, shuffle=True, seed=optimization.seed)
    reporter = reporter if reporter is not None and rank == 0 else Reporter.silent()
    checkpoint_cost = since_checkpoint = 0.0  # seconds the last checkpoint took; of training since it
    for epoch in range(result.resumed_from, until):
        sampler.set_epoch(epoch)
        if on_epoch is not None:
            on_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        began = time.perf_counter()
        with reporter.progress(f"{name} epoch {epoch + 1}/{optimization.epochs}", len(loader)) as advance:
            totals = train_one_epoch(
                trainable, loader, optimizer, clip_grad_norm=clip, parameters=trained,
                on_step=advance, on_bad_loss=lambda loss, step: _stop(loss, epoch, step, directory),
            )
        scheduler.step()
        row = _epoch_row(epoch, lr, totals, time.perf_counter() - began, size)
        if not _finite_state(step, optimizer):
            _stop_non_finite_weights(epoch, directory)
        if validate is not None:
            row["val_acc"] = validate(model)
        result.history.append(row)
        reporter.epoch(name, row, optimization.epochs)
        since_checkpoint += time.perf_counter() - began
        due = checkpoint_cost < QUICK_CHECKPOINT or since_checkpoint >= CHECKPOINT_COST_FACTOR * checkpoint_cost
        if rank == 0 and (epoch + 1 == until or due):
            saving = time.perf_counter()
            _save(directory, epoch + 1, model, objective.parts, optimizer, scheduler, result)
            checkpoint_cost, since_checkpoint = time.perf_counter() - saving, 0.0
            if epoch + 1 == optimization.epochs:
                keep_final_only(directory)
        elif rank == 0:
            _write_log(directory, result)
        if size > 1:
            dist.barrier()  # every process's file work of the epoch is done
    return result


def train_one_epoch(
    step: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    *,
    clip_grad_norm: float = 0.0,
    parameters: Sequence[nn.Parameter] | None = None,
    on_step: Callable[[int], None] = lambda n: None,
    on_bad_loss: Callable[[torch.Tensor, int], None] | None = None,
) -> dict[str, float]:
    """One pass over ``loader``: a :class:`TrainingStep` (or its DDP wrapper) per batch, then an SGD step with the
    gradient's norm over ``parameters`` (default: the step's) clipped to ``clip_grad_norm`` when that is > 0.
    Returns the epoch's sums (``loss``, ``ce``, ``distill``, ``gradient_ratio``, ``correct`` and each term's
    ``distill.<key>`` summed over images, ``labelled`` images and all ``images``).

    ``on_bad_loss(loss, step)`` is called (and must raise) when the loss is not finite; every process of a
    distributed run learns of it together, so none waits forever in an all-reduce.
    """
    step.train()
    parameters = list(step.parameters()) if parameters is None else parameters
    totals: dict[str, float] = {"loss": 0.0, "ce": 0.0, "distill": 0.0, "gradient_ratio": 0.0, "correct": 0.0,
                                "labelled": 0, "images": 0}
    for index, batch in enumerate(loader):
        logits, loss = step(batch)
        if on_bad_loss is not None and not _finite_everywhere(loss.total):
            on_bad_loss(loss.total, index)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        if clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(parameters, clip_grad_norm)
        optimizer.step()
        labels = batch.label
        n = labels.shape[0]
        totals["loss"] += float(loss.total.detach()) * n
        totals["ce"] += float(loss.ce.detach()) * n
        totals["distill"] += float(loss.distill.detach()) * n
        totals["gradient_ratio"] += loss.gradient_ratio * n
        for key, value in loss.terms.items():
            totals[f"distill.{key}"] = totals.get(f"distill.{key}", 0.0) + float(value.detach()) * n
        for key, value in loss.diagnostics.items():
            totals[f"diagnostic.{key}"] = totals.get(f"diagnostic.{key}", 0.0) + float(value) * n
        totals["correct"] += float((logits.detach().argmax(1).cpu() == labels).sum())
        totals["labelled"] += int((labels >= 0).sum())
        totals["images"] += n
        on_step(1)
    return totals


def _resume(directory: Path, model: nn.Module, parts: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
            optimization: Optimization) -> FitResult:
    """Load the newest checkpoint of ``directory`` into the model, the objective's parts, the optimizer, the
    schedule and the RNGs.

    A learning rate changed since the checkpoint (``--resume --lr ...``, after a loss blew up) applies from the
    next epoch on: the schedule runs from the new ``lr`` to the new ``lr_end``.
    """
    state = load_checkpoint(directory)
    if state is None:
        return FitResult()
    model.load_state_dict(state.model)
    try:
        parts.load_state_dict(state.parts)
    except RuntimeError as error:  # a checkpoint of another loss (other terms, other layers)
        raise TrainingError(f"the checkpoint in {directory} was trained with other distillation terms than these "
                            f"({' '.join(str(error).split())[:300]}); continue it with the settings it was trained "
                            "with, or train into another folder") from None
    optimizer.load_state_dict(state.optimizer)
    scheduler.load_state_dict(state.scheduler)
    factor = linear_lr(optimization.epochs, optimization.lr, optimization.lr_end)
    scheduler.lr_lambdas = [factor] * len(optimizer.param_groups)
    scheduler.base_lrs = [optimization.lr] * len(optimizer.param_groups)
    for group in optimizer.param_groups:
        group["initial_lr"] = optimization.lr
        group["lr"] = optimization.lr * factor(state.epoch)
        group["momentum"], group["weight_decay"] = optimization.momentum, optimization.weight_decay
    restore_rng(state.rng["tensors"], state.rng["json"])
    return FitResult(history=list(state.extra.get("history", [])), resumed_from=state.epoch)


def _wrap(step: TrainingStep, hardware: Hardware) -> nn.Module:
    """The module the loop runs: DDP under torch.distributed (the student and the terms' parts are synchronised
    together), with the student compiled when asked."""
    if hardware.compile:
        step.student = torch.compile(step.student)
    trainable: nn.Module = step
    if dist.is_available() and dist.is_initialized():  # torchrun, even with one process
        trainable = nn.parallel.DistributedDataParallel(
            step, device_ids=[hardware.device.index] if hardware.cuda else None
        )
    return trainable


def _epoch_row(epoch: int, lr: float, totals: dict[str, float], seconds: float, size: int) -> dict[str, Any]:
    """One line of ``log.jsonl``: per-image means of the epoch's sums (each term's as ``distill.<key>`` when
    there are several), and its speed."""
    images = max(int(totals["images"]), 1)
    row = {
        "epoch": epoch + 1,
        "lr": lr,
        "loss": totals["loss"] / images,
        "ce": totals["ce"] / images,
        "distill": totals["distill"] / images,
        "distill_gradient_ratio": totals["gradient_ratio"] / images,
        "train_acc": totals["correct"] / max(int(totals["labelled"]), 1),
        "images": int(totals["images"]) * size,
        "seconds": seconds,
    }
    terms = sorted(key for key in totals if key.startswith("distill."))
    if len(terms) > 1:
        row.update((key, totals[key] / images) for key in terms)
    diagnostics = sorted(key for key in totals if key.startswith("diagnostic."))
    for key in diagnostics:  # one term: "distill_kl"; several: "distill.<term key>.kl"
        name = f"distill_{key.rsplit('.', 1)[1]}" if len(terms) == 1 else f"distill.{key[len('diagnostic.'):]}"
        row[name] = totals[key] / images
    return row


def _save(directory: Path, epochs_done: int, model: nn.Module, parts: nn.Module, optimizer: torch.optim.Optimizer,
          scheduler: Any, result: FitResult) -> None:
    """The log so far and the checkpoint of ``epochs_done`` completed epochs."""
    _write_log(directory, result)
    save_checkpoint(directory, epoch=epochs_done, model=model, optimizer=optimizer, scheduler=scheduler,
                    parts=parts if len(parts) else None, extra={"history": result.history})


def _write_log(directory: Path, result: FitResult) -> None:
    """``log.jsonl``: one JSON row per epoch so far."""
    atomic_write_text(directory / "log.jsonl", "".join(json.dumps(row) + "\n" for row in result.history))


def _stream_seed(seed: int, name: str) -> int:
    """The seed of a model's random streams (dropout, loader shuffles): from the run's seed and the model's
    name only, so that whether earlier steps ran (a teacher trained now or loaded, logits computed or read
    from the cache) never changes them."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")


def _finite_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> bool:
    """Whether every weight, buffer and optimizer tensor of ``model`` (a :class:`TrainingStep`: the student and
    the terms' parts) is finite, in every process."""
    tensors = [*model.state_dict().values()]
    tensors += [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    finite = all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())
    flag = torch.tensor(1.0 if finite else 0.0)
    if world()[1] > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return flag.item() == 1.0


def _finite_everywhere(loss: torch.Tensor) -> bool:
    """Whether the loss is finite in every process (all stop together, or the others wait forever)."""
    finite = torch.isfinite(loss.detach()).float()
    if world()[1] > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return finite.item() == 1.0


def _stop(loss: torch.Tensor, epoch: int, step: int, directory: Path) -> None:
    raise TrainingError(
        f"the training loss became {loss.item()} at epoch {epoch + 1}, batch {step + 1}; training stopped and "
        f"{_kept(directory)}. Lower the learning rate (--lr) or lambda (--lambda), then continue with --resume."
    )


def _stop_non_finite_weights(epoch: int, directory: Path) -> None:
    raise TrainingError(
        f"the weights became NaN or infinite during epoch {epoch + 1} (the loss stayed finite); training stopped and "
        f"{_kept(directory)}. Lower the learning rate (--lr, --lr-end) or lambda (--lambda), then continue with "
        "--resume."
    )


def _kept(directory: Path) -> str:
    """Which good checkpoint stays (every checkpoint written is finite)."""
    state = load_checkpoint(directory) if directory.exists() else None
    return f"the last good checkpoint (epoch {state.epoch}) is kept in {directory}" if state else (
        "no checkpoint was written yet")
