"""The distillation losses L2(g(z), f(x)) of Equation 1, comparing student and teacher logits.

Each loss is a small callable object: ``loss(student_logits, teacher_logits)`` takes two ``(N, C)``
tensors and returns a scalar tensor, the mean over the batch of a per-sample sum over the classes. Inputs
in float16 or bfloat16 (autocast) are computed in float32; float64 stays float64. The teacher's logits
are used as given: compute them under ``torch.no_grad()`` for a frozen teacher, as the trainer does.

Example:
    >>> import torch
    >>> loss = SoftCrossEntropy(temperature=10.0)
    >>> student, teacher = torch.zeros(2, 5), torch.zeros(2, 5)
    >>> round(loss(student, teacher).item(), 4)  # the entropy of a uniform 5-way softmax, log(5)
    1.6094
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import SpecError, TrainingError


def _prepare(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check both logits are ``(N, C)`` of one shape and compute in at least float32."""
    if student_logits.ndim != 2 or student_logits.shape != teacher_logits.shape:
        raise TrainingError(
            f"distillation loss expects student and teacher logits of one shape (N, C); got student "
            f"{tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)} (do both networks "
            "predict the same number of classes?)"
        )
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    return student_logits.to(dtype), teacher_logits.to(dtype)


def _check_temperature(temperature: float) -> float:
    temperature = float(temperature)
    if not math.isfinite(temperature) or temperature <= 0:
        raise SpecError(f"distillation temperature must be a positive number, got {temperature!r}")
    return temperature


@dataclass(frozen=True)
class SoftCrossEntropy:
    """The paper's loss: cross-entropy between the teacher's and student's softmax at temperature T.

    ``mean_i sum_k -p_t[i,k] * log p_s[i,k]`` with ``p = softmax(logits / T)``; no ``T**2`` factor (the
    authors' choice; their lambda absorbs the scale). Its gradient with respect to the student's logits is
    ``(p_s - p_t) / (T * N)``.
    """

    temperature: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "temperature", _check_temperature(self.temperature))

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        student, teacher = _prepare(student_logits, teacher_logits)
        log_p_student = F.log_softmax(student / self.temperature, dim=1)
        p_teacher = F.softmax(teacher / self.temperature, dim=1)
        return -(p_teacher * log_p_student).sum(dim=1).mean()

    def diagnostics(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """``kl``: the loss minus the teacher's entropy, ``KL(p_t || p_s)``, the part the student can reduce
        (the soft cross-entropy never goes below ``H(p_t)``, so its curve looks flat when the entropy is large)."""
        student, teacher = _prepare(student_logits, teacher_logits)
        log_p_student = F.log_softmax(student / self.temperature, dim=1)
        log_p_teacher = F.log_softmax(teacher / self.temperature, dim=1)
        return {"kl": (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1).mean()}


@dataclass(frozen=True)
class LogitSquaredError:
    """Squared error between the logits (Ba and Caruana): ``mean_i sum_k (s[i,k] - t[i,k])**2``.

    A sum over the classes, no 1/2 factor; the gradient with respect to the student's logits is
    ``2 (s - t) / N``. It has no temperature.
    """

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        student, teacher = _prepare(student_logits, teacher_logits)
        return (student - teacher).square().sum(dim=1).mean()


@dataclass(frozen=True)
class KLDivergence:
    """Hinton et al.'s distillation loss: ``T**2 * mean_i KL(p_t[i] || p_s[i])`` at temperature T.

    It differs from :class:`SoftCrossEntropy` by the teacher's entropy (a constant for the student) and
    the ``T**2`` factor that keeps gradient magnitudes comparable across temperatures.
    """

    temperature: float = 4.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "temperature", _check_temperature(self.temperature))

    def __call__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        student, teacher = _prepare(student_logits, teacher_logits)
        log_p_student = F.log_softmax(student / self.temperature, dim=1)
        log_p_teacher = F.log_softmax(teacher / self.temperature, dim=1)
        divergence = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
        return divergence * self.temperature**2
