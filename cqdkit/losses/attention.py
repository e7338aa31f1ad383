"""Attention transfer (Zagoruyko and Komodakis, "Paying More Attention to Attention", ICLR 2017).

The activation-based attention map of a layer's output ``A`` of shape ``(N, C, H, W)`` is the mean over the
channels of ``|A|**p`` (``p = 2`` by default, the authors' ``x.pow(2).mean(1)``), flattened per sample and
L2-normalised::

    Q(A) = q / ||q||_2,   q = mean_c |A_c|**p  (one vector of H*W positions per sample)
    L_AT = mean over the batch and the positions of (Q(A_s(z)) - Q(A_t(x)))**2

which is the authors' implementation, ``(at(s) - at(t)).pow(2).mean()``. The paper writes
``beta/2 * || Q_s/||Q_s|| - Q_t/||Q_t|| ||_p`` summed over the layer pairs with ``beta = 1000``; here one term
compares one pair and its weight is lambda. The teacher's and the student's channels may differ. When the
two maps' spatial sizes differ, the larger *feature map* is average-pooled to the smaller's before the
attention maps are taken. Features are compared in float32 (float64 stays float64).

Both layers default to the last stage of their network whose map has more than one position: attention over
a single position is 1 after normalisation, so a 1x1 last stage (``vggm`` at 64 px) would give no gradient.

Example:
    >>> from cqdkit.losses.term import Outputs, TermBatch
    >>> term = AttentionTransfer(teacher_layer="t", student_layer="s")
    >>> student = Outputs(None, {"s": torch.ones(2, 4, 3, 3)})
    >>> teacher = Outputs(None, {"t": torch.ones(2, 8, 6, 6)})
    >>> round(term(student, teacher, TermBatch(torch.zeros(2), torch.arange(2))).item(), 6)
    0.0
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..errors import SpecError
from .term import (
    DistillContext,
    DistillTerm,
    LayerShapes,
    Outputs,
    TermBatch,
    at_least_float32,
    features_as_maps,
    match_size,
)


class AttentionTransfer(DistillTerm):
    """The AT term: mean squared difference of the two layers' normalised attention maps."""

    def __init__(self, *, teacher_layer: str, student_layer: str, p: float = 2.0) -> None:
        super().__init__(teacher_layers=(teacher_layer,), student_layers=(student_layer,), teacher_logits=False)
        if not p > 0:
            raise SpecError(f"attention transfer needs p > 0 (the exponent of |A|), got p={p}")
        self.p = float(p)

    def attention(self, feature: torch.Tensor) -> torch.Tensor:
        """``(N, H*W)``: each sample's ``mean_c |A|**p``, flattened and L2-normalised."""
        return F.normalize(feature.abs().pow(self.p).mean(dim=1).flatten(1), dim=1)

    def forward(self, student: Outputs, teacher: Outputs, batch: TermBatch) -> torch.Tensor:
        student_map = at_least_float32(features_as_maps(student.features[self.student_layers[0]]))
        teacher_map = at_least_float32(features_as_maps(teacher.features[self.teacher_layers[0]]))
        student_map, teacher_map = match_size(student_map, teacher_map)
        return (self.attention(student_map) - self.attention(teacher_map)).square().mean()


def attention(context: DistillContext, teacher: str = "", student: str = "", p: float = 2.0) -> AttentionTransfer:
    """The attention transfer term between the teacher's layer ``teacher`` and the student's layer ``student``
    (module names or stage indices, ``-1`` the last stage; empty: the last stage with more than one position),
    with attention ``mean_c |A|**p``."""
    teacher_layer = context.teacher.resolve(teacher) if teacher else _last_spatial_stage(context.teacher, "teacher")
    student_layer = context.student.resolve(student) if student else _last_spatial_stage(context.student, "student")
    return AttentionTransfer(teacher_layer=teacher_layer, student_layer=student_layer, p=p)


def _positions(shape: tuple[int, ...]) -> int:
    """The positions an attention map has over one sample's feature: ``H*W`` of a map, ``L`` of tokens."""
    if len(shape) == 3:
        return shape[1] * shape[2]
    if len(shape) == 2:
        return shape[0]
    return 1


def _last_spatial_stage(layers: LayerShapes, role: str) -> str:
    """The last stage of ``layers`` whose output has more than one position."""
    for name in reversed(layers.stages):
        if _positions(layers.shape(name)) > 1:
            return name
    architecture = getattr(layers, "architecture", f"the {role}")
    raise SpecError(f"attention transfer needs a map larger than 1x1, and no stage of {architecture} (the {role}) "
                    f"has one (stages: {', '.join(layers.stages) or 'none'}); name a {role} layer explicitly or use "
                    "a larger input size")
