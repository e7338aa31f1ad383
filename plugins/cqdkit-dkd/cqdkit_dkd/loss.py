"""Decoupled Knowledge Distillation (Zhao, Cui, Song, Qiu and Liang, CVPR 2022).

Hinton's KD loss, ``KL(p_t || p_s)`` between the teacher's and student's softmax at temperature T, splits
around a target class t into two parts:

- **TCKD** (target-class KD): the KL divergence between the binary distributions ``(p[t], 1 - p[t])`` of
  teacher and student -- how sure each is of the target class;
- **NCKD** (non-target-class KD): the KL divergence between their softmax over the other C - 1 classes
  only, ``p[j] / (1 - p[t])`` for ``j != t`` -- the "dark knowledge" about similar classes.

``KD = TCKD + (1 - p_t[t]) * NCKD``: plain KD damps NCKD exactly where the teacher is confident. DKD weighs
the two freely, ``T**2 * mean_i (alpha * TCKD_i + beta * NCKD_i)``, with the paper's alpha = 1, beta = 8.

The target class is the ground-truth label when the caller passes ``labels`` (cqdkit's trainer does: the
plugin's entry sets ``needs_labels``). Called with the two logits only, it is the teacher's top class.

Example:
    >>> import torch
    >>> loss = DecoupledKD(temperature=4.0)
    >>> logits = torch.tensor([[2.0, 0.5, -1.0]])
    >>> loss(logits, logits).item()  # the student agrees with the teacher: nothing to distil
    0.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cqdkit.errors import SpecError, TrainingError


def decoupled_terms(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(TCKD, NCKD)``, each of shape ``(N,)``, at ``temperature`` (no ``T**2`` factor).

    ``target`` holds each sample's target class, ``(N,)`` integers in ``[0, C)``. Computed in log space
    (``logsumexp``), so confident logits give no ``log(0)``.
    """
    student = student_logits / temperature
    teacher = teacher_logits / temperature
    batch, classes = student.shape
    is_target = F.one_hot(target, classes).bool()

    def split(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log of the binary distribution (p[t], 1 - p[t]) and log-softmax over the non-target classes."""
        others = logits[~is_target].view(batch, classes - 1)
        total = torch.logsumexp(logits, dim=1)
        binary = torch.stack([logits[is_target] - total, torch.logsumexp(others, dim=1) - total], dim=1)
        return binary, F.log_softmax(others, dim=1)

    student_binary, student_others = split(student)
    teacher_binary, teacher_others = split(teacher)
    tckd = F.kl_div(student_binary, teacher_binary, reduction="none", log_target=True).sum(dim=1)
    nckd = F.kl_div(student_others, teacher_others, reduction="none", log_target=True).sum(dim=1)
    return tckd, nckd


@dataclass(frozen=True)
class DecoupledKD:
    """``loss(student_logits, teacher_logits, labels=None)``: DKD, the mean over the batch.

    Args:
        temperature: T of both softmaxes (the paper uses 4 on CIFAR-100 and 1 on ImageNet).
        alpha: weight of TCKD (the paper: 1).
        beta: weight of NCKD (the paper: 8 on CIFAR-100; 0.5 on ImageNet).

    With ``alpha = 1`` and ``beta = 1 - p_t[t]`` per sample it equals :class:`cqdkit.losses.KLDivergence`.
    """

    temperature: float = 4.0
    alpha: float = 1.0
    beta: float = 8.0

    def __post_init__(self) -> None:
        for name in ("temperature", "alpha", "beta"):
            value = float(getattr(self, name))
            positive = name == "temperature"
            if not math.isfinite(value) or value < 0 or (positive and value == 0):
                expected = "a positive number" if positive else "a non-negative number"
                raise SpecError(f"dkd: {name} must be {expected}, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)

    def __call__(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        student, teacher = _prepare(student_logits, teacher_logits)
        target = teacher.argmax(dim=1) if labels is None else _check_labels(labels, student.shape)
        tckd, nckd = decoupled_terms(student, teacher, target, self.temperature)
        return self.temperature**2 * (self.alpha * tckd + self.beta * nckd).mean()


def _prepare(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both logits ``(N, C)`` of one shape with C >= 2, in at least float32 (bf16 under autocast)."""
    if student.ndim != 2 or student.shape != teacher.shape or student.shape[1] < 2:
        raise TrainingError(
            f"dkd expects student and teacher logits of one shape (N, C) with C >= 2 classes; got student "
            f"{tuple(student.shape)} and teacher {tuple(teacher.shape)}"
        )
    dtype = torch.promote_types(student.dtype, torch.float32)
    return student.to(dtype), teacher.to(dtype)


def _check_labels(labels: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    batch, classes = shape
    if labels.shape != (batch,) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TrainingError(
            f"dkd expects labels as {batch} integer class indices, shape ({batch},); got {labels.dtype} "
            f"of shape {tuple(labels.shape)}"
        )
    if bool(((labels < 0) | (labels >= classes)).any()):
        raise TrainingError(f"dkd: labels must be class indices in [0, {classes}), got {labels.tolist()}")
    return labels.long()
