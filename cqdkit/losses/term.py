"""The contract of a distillation term, and logit losses as terms.

The trainer minimises, for each batch, ``CE(g(z), y) + sum_k lambda_k * term_k``. A term is a
:class:`DistillTerm`, a ``torch.nn.Module`` that

- declares what it reads: ``teacher_layers`` and ``student_layers`` (named layers whose outputs it gets,
  :mod:`cqdkit.models.features`), whether it needs the teacher's logits, and whether it needs the *live*
  teacher (run on every batch, never cached; it may also run it on other images);
- owns whatever it trains (a regressor, projection heads) or remembers (a memory bank) as its own
  submodules, parameters and buffers: the trainer's optimizer, gradient clipping, checkpoints, ``--resume``,
  DDP and finite-weights check cover them, and the exported model leaves them out;
- returns, from ``forward(student, teacher, batch)``, a scalar tensor: the mean over the batch.

``student`` and ``teacher`` are :class:`Outputs` (logits and the declared features, the teacher's
computed without gradients); ``batch`` is a :class:`TermBatch` (labels, ``-1`` for an unlabelled sample,
and each sample's index in the training set). Its factory gets a :class:`DistillContext`: the layers and
output shapes of both networks, to size what the term owns.

Example (a complete term: L2 between the last stages, through a learned 1x1 regressor)::

    class Hint(DistillTerm):
        def __init__(self, context):
            t, s = context.teacher.default, context.student.default
            super().__init__(teacher_layers=(t,), student_layers=(s,), teacher_logits=False)
            self.regressor = nn.Conv2d(context.student.channels(s), context.teacher.channels(t), 1)

        def forward(self, student, teacher, batch):
            s, t = student.features[self.student_layers[0]], teacher.features[self.teacher_layers[0]]
            return (self.regressor(s.float()) - t.float()).square().mean()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from ..plugin import PluginInfo


@dataclass(frozen=True)
class Outputs:
    """One network's outputs for a batch: logits ``(N, classes)`` and features by layer name."""

    logits: torch.Tensor | None
    features: Mapping[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class TermBatch:
    """What a term knows about a batch besides the two networks' outputs.

    Attributes:
        labels: ``(N,)`` class indices; ``-1`` for an unlabelled sample (``--unlabeled``, ``--label-fraction``).
        index: ``(N,)`` each sample's position in the training set (the key of a memory bank).
        images: the batch's views ``{"x": ..., "z": ...}`` (uint8, on the device), for a live-teacher term.
        teacher: the live teacher, ``teacher(images) -> Outputs`` on uint8 images (its layers' features
            included), for a term that declares ``live_teacher``; None otherwise.
    """

    labels: torch.Tensor
    index: torch.Tensor
    images: Mapping[str, torch.Tensor] = field(default_factory=dict)
    teacher: Callable[[torch.Tensor], Outputs] | None = None

    @property
    def labelled(self) -> torch.Tensor:
        """``(N,)`` bool: which samples have a label."""
        return self.labels >= 0


class LayerShapes(Protocol):
    """The layers of one network (:class:`cqdkit.models.features.Layers`)."""

    stages: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def default(self) -> str: ...

    def resolve(self, name: str | int | None) -> str: ...

    def shape(self, name: str) -> tuple[int, ...]: ...

    def channels(self, name: str) -> int: ...


@dataclass(frozen=True)
class DistillContext:
    """What a term's factory may need to build it.

    Attributes:
        teacher: the teacher's layers and their output shapes (at the run's input size, x's channels).
        student: the student's.
        num_classes: classes of the task.
        num_samples: samples in the training set the student sees (indices ``0 .. num_samples - 1``).
    """

    teacher: LayerShapes
    student: LayerShapes
    num_classes: int
    num_samples: int


class DistillTerm(nn.Module):
    """Base class of distillation terms (see the module docstring for the contract).

    Args:
        teacher_layers: layers of the teacher whose outputs ``forward`` reads (``teacher.features[name]``).
        student_layers: layers of the student likewise (``student.features[name]``, with gradients).
        teacher_logits: whether ``forward`` reads ``teacher.logits``.
        live_teacher: run the teacher on every batch (never from the cache) and pass it as
            ``batch.teacher``, with the batch's images.
    """

    def __init__(self, *, teacher_layers: tuple[str, ...] = (), student_layers: tuple[str, ...] = (),
                 teacher_logits: bool = True, live_teacher: bool = False) -> None:
        super().__init__()
        self.teacher_layers = tuple(teacher_layers)
        self.student_layers = tuple(student_layers)
        self.teacher_logits = teacher_logits
        self.live_teacher = live_teacher

    def forward(self, student: Outputs, teacher: Outputs, batch: TermBatch) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def diagnostics(self, student: Outputs, teacher: Outputs, batch: TermBatch) -> dict[str, torch.Tensor]:
        """Numbers logged beside the term each epoch, never optimised (called without gradients); none by
        default. The soft cross-entropy reports ``kl``, itself minus the teacher's entropy."""
        return {}


class LogitTerm(DistillTerm):
    """A logit loss (a :class:`~cqdkit.plugin.DistillLoss`'s ``loss(student_logits, teacher_logits)``) as a term.

    A loss that needs labels gets them, with each unlabelled sample's label replaced by the teacher's top class.
    """

    def __init__(self, loss: Callable[..., torch.Tensor], *, needs_labels: bool = False) -> None:
        super().__init__()
        self.loss = loss
        self.needs_labels = needs_labels

    def forward(self, student: Outputs, teacher: Outputs, batch: TermBatch) -> torch.Tensor:
        if not self.needs_labels:
            return self.loss(student.logits, teacher.logits)
        labels = torch.where(batch.labelled, batch.labels, teacher.logits.argmax(dim=1))
        return self.loss(student.logits, teacher.logits, labels)

    def diagnostics(self, student: Outputs, teacher: Outputs, batch: TermBatch) -> dict[str, torch.Tensor]:
        """The loss's own (``loss.diagnostics(student_logits, teacher_logits)``), if it has any."""
        report = getattr(self.loss, "diagnostics", None)
        return dict(report(student.logits, teacher.logits)) if callable(report) else {}

    @property
    def temperature(self) -> float | None:
        return getattr(self.loss, "temperature", None)


@dataclass(frozen=True)
class WeightedTerm:
    """One term of a run's objective: its key (``softce``, ``fitnet``, ``fitnet-2`` for a second one), the
    module, its weight lambda, the spec it was built from, and the plugin that provides it (for messages)."""

    key: str
    term: DistillTerm
    weight: float
    spec: Any = None  # the TermSpec
    plugin: PluginInfo | None = None


def features_as_maps(feature: torch.Tensor) -> torch.Tensor:
    """A feature as ``(N, C, H, W)``: a map as it is, a vector ``(N, C)`` as ``(N, C, 1, 1)``, a token sequence
    ``(N, L, C)`` as ``(N, C, L, 1)``.

    Example:
        >>> features_as_maps(torch.zeros(2, 5)).shape
        torch.Size([2, 5, 1, 1])
    """
    if feature.ndim == 4:
        return feature
    if feature.ndim == 2:
        return feature[:, :, None, None]
    if feature.ndim == 3:
        return feature.transpose(1, 2)[..., None]
    raise ValueError(f"expected a feature of 2, 3 or 4 dimensions, got shape {tuple(feature.shape)}")


def at_least_float32(feature: torch.Tensor) -> torch.Tensor:
    """``feature`` in float32 when it comes in a lower precision (bf16 or float16 under autocast, or from the
    float16 cache of teacher features); float64 stays float64.

    Example:
        >>> at_least_float32(torch.zeros(1, dtype=torch.bfloat16)).dtype
        torch.float32
    """
    return feature.to(torch.promote_types(feature.dtype, torch.float32))


def channels_of(shape: tuple[int, ...]) -> int:
    """The channels of one sample's feature shape: ``C`` of ``(C, H, W)``, ``(C,)`` or ``(L, C)``."""
    return shape[-1] if len(shape) == 2 else shape[0]


def embedding(feature: torch.Tensor) -> torch.Tensor:
    """One vector per sample, ``(N, D)``: a map ``(N, C, H, W)`` averaged over its positions, a token sequence
    ``(N, L, C)`` over its tokens, a vector as it is (what relational terms compare between samples).

    Example:
        >>> embedding(torch.ones(2, 3, 4, 4)).shape
        torch.Size([2, 3])
    """
    if feature.ndim == 4:
        return feature.mean(dim=(2, 3))
    if feature.ndim == 3:
        return feature.mean(dim=1)
    if feature.ndim == 2:
        return feature
    raise ValueError(f"expected a feature of 2, 3 or 4 dimensions, got shape {tuple(feature.shape)}")


def match_size(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two maps ``(N, C, H, W)`` brought to one spatial size: the larger is average-pooled to the smaller's
    (adaptive pooling); maps of one size are returned as they are.

    Example:
        >>> s, t = match_size(torch.ones(2, 3, 8, 8), torch.ones(2, 5, 4, 4))
        >>> tuple(s.shape), tuple(t.shape)
        ((2, 3, 4, 4), (2, 5, 4, 4))
    """
    size = (min(student.shape[2], teacher.shape[2]), min(student.shape[3], teacher.shape[3]))
    if tuple(student.shape[2:]) != size:
        student = torch.nn.functional.adaptive_avg_pool2d(student, size)
    if tuple(teacher.shape[2:]) != size:
        teacher = torch.nn.functional.adaptive_avg_pool2d(teacher, size)
    return student, teacher
