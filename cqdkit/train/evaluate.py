"""Evaluating a model: its logits on every sample of one view, per-image accuracy and log-likelihood."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.sample import check_view
from ..models.preprocessing import Normalizer
from ..reporting import Reporter
from .distributed import is_main_process
from .hardware import Hardware


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
    reporter: Reporter | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, labels)`` of ``model`` on every sample's ``view``, in dataset order (single process).

    ``channels`` feeds only the view's first channels (an RGB model on an x with privileged channels).
    """
    check_view(view)
    hardware.prepare(model).eval()
    normalizer.to(hardware.device)
    # A private generator: evaluating never draws from the global random streams that training uses.
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=hardware.workers,
                        generator=torch.Generator())
    reporter = reporter if reporter is not None and is_main_process() else Reporter.silent()
    outputs, targets = [], []
    with reporter.progress(name, len(loader)) as advance:
        for batch in loader:
            images = batch.view(view) if channels is None else batch.view(view)[:, :channels]
            with hardware.autocast():
                outputs.append(model(hardware.to_input(normalizer, images)).float().cpu())
            targets.append(batch.label)
            advance(1)
    return torch.cat(outputs), torch.cat(targets)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Per-image top-1 accuracy in [0, 1]."""
    return float((logits.argmax(1) == labels).float().mean()) if len(labels) else float("nan")


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean cross-entropy of the true classes (nats per image): the validation score tuning minimises."""
    if not len(labels):
        return float("nan")
    return float(F.cross_entropy(logits.float(), labels))


#: Temperatures tried by :func:`calibrated_nll` (log-spaced; 1 is among them).
CALIBRATION_TEMPERATURES = torch.logspace(-2, 2, 81)


def calibrated_nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Negative log-likelihood after one temperature fitted on the other half of the images (2-fold).

    The images are split into even and odd positions; each half is scored with the temperature (from
    :data:`CALIBRATION_TEMPERATURES`) that gives the lowest NLL on the other half. This removes the overall
    confidence of the scores, which distillation at a temperature changes on purpose, and keeps what it is
    for: how clearly the true class comes first. Unbiased: no image is scored with a temperature fitted on it.

    Example:
        >>> logits = torch.tensor([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
        >>> calibrated_nll(logits / 100, torch.tensor([0, 1, 0, 1])) < negative_log_likelihood(logits / 100, torch.tensor([0, 1, 0, 1]))
        True
    """
    if len(labels) < 2:
        return negative_log_likelihood(logits, labels)
    logits = logits.float()
    halves = [torch.arange(0, len(labels), 2), torch.arange(1, len(labels), 2)]
    total = 0.0
    for scored, fitted in (halves, halves[::-1]):
        losses = [float(F.cross_entropy(logits[fitted] / t, labels[fitted])) for t in CALIBRATION_TEMPERATURES]
        temperature = CALIBRATION_TEMPERATURES[int(torch.tensor(losses).argmin())]
        total += float(F.cross_entropy(logits[scored] / temperature, labels[scored], reduction="sum"))
    return total / len(labels)
