"""Built-in loss plugin: registers cqdkit's distillation terms through the ``cqdkit_losses`` hook.

Logit losses are :class:`~cqdkit.plugin.DistillLoss` entries (a factory of ``loss(student_logits,
teacher_logits)`` taking the temperature T); feature and relational distillers are
:class:`~cqdkit.plugin.Distiller` entries (a factory of a :class:`~cqdkit.losses.DistillTerm` taking the run's
:class:`~cqdkit.losses.DistillContext`), exactly as a third party's. Factories import torch only when called.
Each entry's ``search`` is what ``--lambda auto`` tries on the validation split.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from cqdkit.plugin import Distiller, DistillLoss, Param, hookimpl
from cqdkit.plugin.params import non_negative_float, positive_float, positive_int


def softce(temperature: float = 10.0) -> Any:
    """The paper's softened cross-entropy (no T^2 factor); see :class:`~cqdkit.losses.distill.SoftCrossEntropy`."""
    from .distill import SoftCrossEntropy

    return SoftCrossEntropy(temperature)


def logit_l2(temperature: float = 1.0) -> Any:
    """Squared error between logits; it takes no temperature (one given is ignored)."""
    from .distill import LogitSquaredError

    return LogitSquaredError()


def kl(temperature: float = 4.0) -> Any:
    """Hinton's KL divergence at temperature T, times T^2."""
    from .distill import KLDivergence

    return KLDivergence(temperature)


@dataclass(frozen=True)
class _Factory:
    """A distiller's factory that imports its module (and torch) only when a run builds the term, so that listing
    the plugins stays fast: ``_Factory("fitnet", "fitnet")`` calls :func:`cqdkit.losses.fitnet.fitnet`."""

    module: str
    function: str

    def __call__(self, context: Any, **params: Any) -> Any:
        return getattr(import_module(f"cqdkit.losses.{self.module}"), self.function)(context, **params)


#: The layer parameters of a term that matches one teacher layer with one student layer.
LAYER_PARAMS = (
    Param(name="teacher", default="", help="the teacher's layer: a module name or a stage index (-1: the last "
                                           "stage; empty: the last stage)"),
    Param(name="student", default="", help="the student's layer: a module name or a stage index (-1: the last "
                                           "stage; empty: the last stage)"),
)
#: ``--lambda auto`` tries the last and the one-but-last stage of both networks for such a term ("": the default,
#: the last stage, or for attention the last one larger than 1x1).
LAST_TWO_STAGES = ({"teacher": "", "student": ""}, {"teacher": "-2", "student": "-2"})


@hookimpl
def cqdkit_losses() -> Iterator[DistillLoss | Distiller]:
    yield DistillLoss(
        name="softce",
        summary="Cross-entropy of softmax(teacher/T) and softmax(student/T), no T^2 (the paper's loss)",
        factory=softce,
        search={"strength": ({"temperature": 2.0, "lambda": 5.0}, {"temperature": 4.0, "lambda": 50.0},
                             {"temperature": 10.0, "lambda": 500.0})},
    )
    yield DistillLoss(
        name="logit-l2",
        summary="Squared error between logits, summed over classes (Ba & Caruana); T ignored",
        factory=logit_l2,
        search={"lambda": (0.01, 0.1, 1.0)},
        takes_temperature=False,
    )
    yield DistillLoss(
        name="kl",
        summary="KL(teacher || student) at temperature T, times T^2 (Hinton et al.)",
        factory=kl,
        search={"strength": ({"temperature": 2.0, "lambda": 0.1}, {"temperature": 4.0, "lambda": 1.0},
                             {"temperature": 10.0, "lambda": 10.0})},
    )
    yield Distiller(
        name="fitnet",
        summary="FitNets hints (Romero et al. 2015): a 1x1 regressor of a student layer matches a teacher layer (L2)",
        factory=_Factory("fitnet", "fitnet"),
        params=LAYER_PARAMS,
        search={"lambda": (0.1, 1.0, 10.0), "layers": LAST_TWO_STAGES},
    )
    yield Distiller(
        name="at",
        summary="Attention transfer (Zagoruyko & Komodakis 2017): L2 between normalised maps of mean_c |A|^p",
        factory=_Factory("attention", "attention"),
        params=(
            Param(name="teacher", default="", help="the teacher's layer: a module name or a stage index (-1: the last "
                                                   "stage; empty: the last stage larger than 1x1)"),
            Param(name="student", default="", help="the student's layer: a module name or a stage index (-1: the last "
                                                   "stage; empty: the last stage larger than 1x1)"),
            Param(name="p", default=2.0, parse=positive_float, help="the exponent of |A| in the attention map (> 0)"),
        ),
        search={"lambda": (10.0, 100.0, 1000.0), "layers": LAST_TWO_STAGES},
    )
    yield Distiller(
        name="st",
        summary="Supervision transfer (Gupta et al. 2016): L2 from a student layer to the same teacher layer, no "
                "regressor, no labels needed",
        factory=_Factory("supervision", "supervision_transfer"),
        params=LAYER_PARAMS,
        search={"lambda": (0.2, 2.0, 20.0), "layers": LAST_TWO_STAGES},
    )
    yield Distiller(
        name="pkt",
        summary="Probabilistic knowledge transfer (Passalis & Tefas 2018): KL between the batch's cosine-similarity "
                "distributions",
        factory=_Factory("pkt", "pkt"),
        params=LAYER_PARAMS,
        search={"lambda": (10.0, 100.0, 1000.0), "layers": LAST_TWO_STAGES},
    )
    yield Distiller(
        name="sp",
        summary="Similarity-preserving KD (Tung & Mori 2019): row-normalised batch Gram matrices match (L2)",
        factory=_Factory("similarity", "similarity_preserving"),
        params=LAYER_PARAMS,
        search={"lambda": (30.0, 300.0, 3000.0), "layers": LAST_TWO_STAGES},
    )
    yield Distiller(
        name="rkd",
        summary="Relational KD (Park et al. 2019): distances and angles between the batch's embeddings match (Huber)",
        factory=_Factory("rkd", "rkd"),
        params=LAYER_PARAMS + (
            Param(name="distance", default=25.0, parse=non_negative_float,
                  help="weight of the distance-wise loss (the paper's 25)"),
            Param(name="angle", default=50.0, parse=non_negative_float, help="weight of the angle-wise loss (the paper's 50)"),
        ),
        search={"lambda": (0.01, 0.1, 1.0), "layers": LAST_TWO_STAGES},
    )
    yield Distiller(
        name="crd",
        summary="Contrastive representation distillation (Tian et al. 2020): NCE between student and teacher "
                "embeddings, negatives from memory banks",
        factory=_Factory("crd", "crd"),
        params=LAYER_PARAMS + (
            Param(name="dim", default=128, parse=positive_int, help="embedding dimension of the two heads"),
            Param(name="negatives", default=4096, parse=positive_int,
                  help="negatives per sample, drawn from the memory (capped at the training samples - 1)"),
            Param(name="tau", default=0.07, parse=positive_float, help="temperature of the critic exp(<v, m> / tau) / Z"),
            Param(name="momentum", default=0.5, parse=non_negative_float,
                  help="memory update m <- normalise(momentum * m + (1 - momentum) * v), 0 to 1"),
        ),
        search={"lambda": (0.08, 0.8, 8.0), "layers": LAST_TWO_STAGES},
    )
