"""cqdkit-dkd: Decoupled Knowledge Distillation (Zhao et al., CVPR 2022) as a cqdkit distillation loss.

The plugin yields one :class:`cqdkit.plugin.DistillLoss` from the ``cqdkit_losses`` hook. Its factory
imports torch only when called, so ``cqdkit plugins`` stays fast. The loss itself is
:class:`cqdkit_dkd.loss.DecoupledKD`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cqdkit.plugin import DistillLoss, Param, hookimpl
from cqdkit.plugin.params import non_negative_float

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
        params=(Param(name="alpha", default=1.0, parse=non_negative_float, help="weight of TCKD (the paper: 1)"),
                Param(name="beta", default=8.0, parse=non_negative_float, help="weight of NCKD (the paper: 8)")),
        # --lambda auto: T^2 scales it like kl, so kl's strengths
        search={"strength": ({"temperature": 2.0, "lambda": 0.1}, {"temperature": 4.0, "lambda": 1.0},
                             {"temperature": 10.0, "lambda": 10.0})},
    )
