"""cqdkit-dkd: Decoupled Knowledge Distillation (Zhao et al., CVPR 2022) as a cqdkit distillation loss.

The plugin yields one :class:`cqdkit.plugin.DistillLoss` from the ``cqdkit_losses`` hook. Its factory
imports torch only when called, so ``cqdkit plugins`` stays fast. The loss itself is
:class:`cqdkit_dkd.loss.DecoupledKD`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cqdkit.plugin import DistillLoss, hookimpl

__version__ = "0.1.0"


def dkd(temperature: float = 4.0, alpha: float = 1.0, beta: float = 8.0) -> Any:
    """``DecoupledKD(temperature, alpha, beta)``: ``T**2 * mean(alpha * TCKD + beta * NCKD)``."""
    from .loss import DecoupledKD

    return DecoupledKD(temperature=temperature, alpha=alpha, beta=beta)


@hookimpl
def cqdkit_losses() -> Iterator[DistillLoss]:
    yield DistillLoss(
        name="dkd",
        summary="Decoupled KD (Zhao et al. 2022): T^2 (alpha TCKD + beta NCKD), alpha=1, beta=8",
        factory=dkd,
        needs_labels=True,
    )
