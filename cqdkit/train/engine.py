"""The training loop: one model, one objective, SGD, checkpoints every epoch, resumable.

Data flows exactly as in the paper's Equation 1::

    batch (x, z, y, i) -> student(view) -> CE(student, y) [+ lambda * L2(student, f(x_i))] -> SGD step

where ``view`` is x for method A and z for every other method, and f(x_i) comes from the frozen teacher
(cached logits or an online forward pass). Images travel as uint8 and are normalised on the device.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..errors import TrainingError
from .checkpoint import (
    atomic_save_tensors,
    atomic_write_bytes,
    atomic_write_json,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)

VIEWS = {"x": 0, "z": 1}


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


@dataclass(frozen=True)
class Hardware:
    """Where and how to compute."""

    device: torch.device = torch.device("cpu")
    amp: bool = True  # bf16 autocast, CUDA only
    channels_last: bool = True  # CUDA only
    compile: bool = False
    workers: int = 0
    progress: bool = True

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        if self.cuda and self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return nullcontext()


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; a CUDA device asked for but missing is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


class Normalizer(nn.Module):
    """uint8 ``(N, C, H, W)`` images to the float input a backbone expects: ``(x / 255 - mean) / std``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_t))
        self.register_buffer("shift", mean_t / std_t)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() * self.scale - self.shift


class TeacherSignal:
    """f(x) for a batch: cached logits looked up by sample index, or the frozen teacher run online."""

    def __init__(
        self,
        *,
        cached: torch.Tensor | None = None,
        teacher: nn.Module | None = None,
        normalizer: Normalizer | None = None,
    ) -> None:
        if (cached is None) == (teacher is None):
            raise ValueError("give either cached logits or an online teacher")
        self.cached, self.teacher, self.normalizer = cached, teacher, normalizer

    def __call__(self, x: torch.Tensor, indices: torch.Tensor, hardware: Hardware) -> torch.Tensor:
        if self.cached is not None:
            return self.cached[indices.cpu()].to(hardware.device, non_blocking=True)
        assert self.teacher is not None and self.normalizer is not None
        with torch.no_grad(), hardware.autocast():
            return self.teacher(_to_input(self.normalizer, x, hardware)).float()


@dataclass
class Objective:
    """What a method minimises: CE on ``view`` plus ``lam * distill(student logits, f(x))`` if distilling."""

    view: str  # "x" or "z"
    distill: Callable[..., torch.Tensor] | None = None
    lam: float = 0.0
    teacher: TeacherSignal | None = None
    distill_labels: bool = False  # call distill(student, teacher, labels) (DistillLoss.needs_labels)

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise ValueError(f"view must be 'x' or 'z', got {self.view!r}")
        if (self.distill is None) != (self.teacher is None):
            raise ValueError("a distillation objective needs both a loss and a teacher")


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


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process (``(0, 1)`` without torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def linear_lr(epochs: int, lr: float, lr_end: float) -> Callable[[int], float]:
    """Multiplier of ``lr`` at each epoch: linear from ``lr`` (first epoch) to ``lr_end`` (last epoch)."""

    def factor(epoch: int) -> float:
        if epochs <= 1:
            return 1.0
        t = min(epoch, epochs - 1) / (epochs - 1)
        return (lr + (lr_end - lr) * t) / lr

    return factor


def _to_input(normalizer: Normalizer, images: torch.Tensor, hardware: Hardware) -> torch.Tensor:
    images = normalizer(images.to(hardware.device, non_blocking=True))
    if hardware.cuda and hardware.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


@contextmanager
def progress_bar(description: str, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A transient rich progress bar on a terminal (nothing in logs); yields ``advance(n)``."""
    from ..cli.console import err_console

    if not enabled or not err_console.is_terminal:
        yield lambda n=1: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


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
) -> FitResult:
    """Train ``model`` in place for ``optimization.epochs`` epochs, checkpointing into ``directory``.

    With ``resume``, a checkpoint in ``directory`` is continued (a finished one is just loaded), giving the
    same weights as an uninterrupted run on the CPU. ``on_epoch(epoch)`` is called before each epoch (the
    dataset uses it to redraw z when asked to).

    Raises:
        TrainingError: the loss became NaN or infinite (the last good checkpoint stays on disk).
    """
    rank, size = world()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.to(hardware.device)
    normalizer.to(hardware.device)
    if hardware.cuda and hardware.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=optimization.lr,
        momentum=optimization.momentum,
        weight_decay=optimization.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_lr(optimization.epochs, optimization.lr, optimization.lr_end)
    )
    result = FitResult()
    start = 0
    state = load_checkpoint(directory) if resume else None
    if state is not None:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        restore_rng(state.rng["tensors"], state.rng["json"])
        result.history = list(state.extra.get("history", []))
        start = result.resumed_from = state.epoch
    if start >= optimization.epochs:
        return result

    trainable: nn.Module = model
    if size > 1:
        trainable = nn.parallel.DistributedDataParallel(
            model, device_ids=[hardware.device.index] if hardware.cuda else None
        )
    if hardware.compile:
        trainable = torch.compile(trainable)
    loader, sampler = make_loader(dataset, optimization.batch_size, hardware, shuffle=True, seed=optimization.seed)
    view = VIEWS[objective.view]
    for epoch in range(start, optimization.epochs):
        sampler.set_epoch(epoch)
        if on_epoch is not None:
            on_epoch(epoch)
        trainable.train()
        totals = {"loss": 0.0, "ce": 0.0, "distill": 0.0, "correct": 0.0, "images": 0}
        began = time.perf_counter()
        description = f"{name} epoch {epoch + 1}/{optimization.epochs}"
        with progress_bar(description, len(loader), hardware.progress and rank == 0) as advance:
            for step, batch in enumerate(loader):
                images, labels, indices = batch[view], batch[2], batch[3]
                labels = labels.to(hardware.device, non_blocking=True)
                with hardware.autocast():
                    logits = trainable(_to_input(normalizer, images, hardware))
                ce = F.cross_entropy(logits.float(), labels)
                loss = ce
                distill_value = torch.zeros((), device=hardware.device)
                if objective.distill is not None and objective.teacher is not None:
                    target = objective.teacher(batch[0], indices, hardware)
                    extra = (labels,) if objective.distill_labels else ()
                    distill_value = objective.distill(logits, target, *extra)
                    loss = ce + objective.lam * distill_value
                _check_finite(loss, epoch, step, directory, size)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                n = labels.shape[0]
                totals["loss"] += float(loss.detach()) * n
                totals["ce"] += float(ce.detach()) * n
                totals["distill"] += float(distill_value.detach()) * n
                totals["correct"] += float((logits.detach().argmax(1) == labels).sum())
                totals["images"] += n
                advance(1)
        seconds = time.perf_counter() - began
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        images = max(int(totals["images"]), 1)
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            "loss": totals["loss"] / images,
            "ce": totals["ce"] / images,
            "distill": totals["distill"] / images,
            "train_acc": totals["correct"] / images,
            "images": int(totals["images"]) * size,
            "seconds": seconds,
        }
        result.history.append(row)
        if rank == 0:
            lines = "".join(json.dumps(entry) + "\n" for entry in result.history)
            atomic_write_bytes(directory / "log.jsonl", lines.encode())
            save_checkpoint(
                directory,
                epoch=epoch + 1,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                extra={"history": result.history},
            )
        if size > 1:
            dist.barrier()
    return result


def _check_finite(loss: torch.Tensor, epoch: int, step: int, directory: Path, size: int) -> None:
    finite = torch.isfinite(loss.detach()).float()
    if size > 1:  # every process must stop together, or the others wait forever in all-reduce
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    if finite.item() == 1.0:
        return
    state = load_checkpoint(directory) if directory.exists() else None
    kept = f"the last good checkpoint (epoch {state.epoch}) is kept in {directory}" if state else (
        "no checkpoint was written yet")
    raise TrainingError(
        f"the training loss became {loss.item()} at epoch {epoch + 1}, batch {step + 1}; training stopped and {kept}. "
        "Lower the learning rate (--lr) or lambda (--lambda), then continue with --resume."
    )


@torch.no_grad()
def predict(
    model: nn.Module,
    normalizer: Normalizer,
    dataset: Dataset,
    view: str,
    hardware: Hardware,
    *,
    batch_size: int = 128,
    name: str = "evaluate",
    channels: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, labels)`` of ``model`` on every sample's ``view``, in dataset order (single process).

    ``channels`` feeds only the view's first channels (an RGB model on an x with privileged channels).
    """
    model.to(hardware.device).eval()
    normalizer.to(hardware.device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=hardware.workers)
    outputs, targets = [], []
    with progress_bar(name, len(loader), hardware.progress and world()[0] == 0) as advance:
        for batch in loader:
            images = batch[VIEWS[view]] if channels is None else batch[VIEWS[view]][:, :channels]
            with hardware.autocast():
                outputs.append(model(_to_input(normalizer, images, hardware)).float().cpu())
            targets.append(batch[2])
            advance(1)
    return torch.cat(outputs), torch.cat(targets)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Per-image top-1 accuracy in [0, 1]."""
    return float((logits.argmax(1) == labels).float().mean()) if len(labels) else float("nan")


def save_model(path: Path, model: nn.Module, description: dict[str, Any]) -> None:
    """Final weights as ``path`` (safetensors) plus ``path.json`` describing how to rebuild the model."""
    atomic_save_tensors(path, model.state_dict())
    atomic_write_json(path.with_suffix(".json"), description)
