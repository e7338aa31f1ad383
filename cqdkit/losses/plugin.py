"""Built-in loss plugin: registers cqdkit's distillation losses through the ``cqdkit_losses`` hook.

Each factory takes the temperature T and imports torch only when called.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cqdkit.plugin import DistillLoss, hookimpl


def softce(temperature: float = 10.0) -> Any:
    """The paper's softened cross-entropy (no T^2 factor); see :class:`~cqdkit.losses.distill.SoftCrossEntropy`."""
    from .distill import SoftCrossEntropy

    return SoftCrossEntropy(temperature)


def logit_l2(temperature: float = 1.0) -> Any:
    """Squared error between logits; the temperature is ignored."""
    from .distill import LogitSquaredError

    return LogitSquaredError()


def kl(temperature: float = 4.0) -> Any:
    """Hinton's KL divergence at temperature T, times T^2."""
    from .distill import KLDivergence

    return KLDivergence(temperature)


@hookimpl
def cqdkit_losses() -> Iterator[DistillLoss]:
    yield DistillLoss(
        name="softce",
        summary="Cross-entropy of softmax(teacher/T) and softmax(student/T), no T^2 (the paper's loss)",
        factory=softce,
    )
    yield DistillLoss(
        name="logit-l2",
        summary="Squared error between logits, summed over classes (Ba & Caruana); T ignored",
        factory=logit_l2,
    )
    yield DistillLoss(
        name="kl",
        summary="KL(teacher || student) at temperature T, times T^2 (Hinton et al.)",
        factory=kl,
    )
