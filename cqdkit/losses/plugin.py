"""Built-in loss plugin: registers cqdkit's distillation terms through the ``cqdkit_losses`` hook.

Logit losses are :class:`~cqdkit.plugin.DistillLoss` entries (a factory of ``loss(student_logits,
teacher_logits)`` taking the temperature T); feature and relational distillers are
:class:`~cqdkit.plugin.Distiller` entries (a factory of a :class:`~cqdkit.losses.DistillTerm` taking the run's
:class:`~cqdkit.losses.DistillContext`), exactly as a third party's. Factories import torch only when called.
Each entry's ``search`` is what ``--lambda auto`` tries on the validation split.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cqdkit.plugin import Distiller, DistillLoss, Param, hookimpl


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


def fitnet(context: Any, **params: Any) -> Any:
    """FitNets' hint term; see :mod:`cqdkit.losses.fitnet`."""
    from .fitnet import fitnet as build

    return build(context, **params)


#: The layer parameters of a term that matches one teacher layer with one student layer.
LAYER_PARAMS = (
    Param(name="teacher", default="", help="the teacher's layer: a module name or a stage index (-1: the last "
                                           "stage; empty: the last stage)"),
    Param(name="student", default="", help="the student's layer: a module name or a stage index (-1: the last "
                                           "stage; empty: the last stage)"),
)
#: ``--lambda auto`` tries the last and the one-but-last stage of both networks for such a term.
LAST_TWO_STAGES = ({"teacher": "-1", "student": "-1"}, {"teacher": "-2", "student": "-2"})


@hookimpl
def cqdkit_losses() -> Iterator[DistillLoss | Distiller]:
    yield DistillLoss(
        name="softce",
        summary="Cross-entropy of softmax(teacher/T) and softmax(student/T), no T^2 (the paper's loss)",
        factory=softce,
        search={"temperature": (2.0, 4.0, 10.0), "lambda": (5.0, 50.0, 500.0)},
    )
    yield DistillLoss(
        name="logit-l2",
        summary="Squared error between logits, summed over classes (Ba & Caruana); T ignored",
        factory=logit_l2,
        search={"lambda": (0.01, 0.1, 1.0)},
    )
    yield DistillLoss(
        name="kl",
        summary="KL(teacher || student) at temperature T, times T^2 (Hinton et al.)",
        factory=kl,
        search={"temperature": (2.0, 4.0, 10.0), "lambda": (0.1, 1.0, 10.0)},
    )
    yield Distiller(
        name="fitnet",
        summary="FitNets hints (Romero et al. 2015): a 1x1 regressor of a student layer matches a teacher layer (L2)",
        factory=fitnet,
        params=LAYER_PARAMS,
        search={"lambda": (0.1, 1.0, 10.0), "layers": LAST_TWO_STAGES},
    )
