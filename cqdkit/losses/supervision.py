"""Supervision transfer (Gupta, Hoffman and Malik, "Cross Modal Distillation for Supervision Transfer", CVPR 2016).

The student's mid-level features on the degraded image are regressed directly onto the teacher's features
of the same layer on the paired high-quality image, with an L2 loss and no labels::

    L_ST = mean over the batch and the elements of (phi_s(z) - phi_t(x))**2

The paper minimises ``1/2 * sum of squares`` over the elements; here the term is the mean, so its weight does
not depend on the layer's size. There is no regressor (that is FitNets, ``fitnet``): the two layers must have
the same channels. When their spatial sizes differ, the larger map is average-pooled to the smaller's first.
Both layers default to the last stage of their network (for ``vggm``, pool5, Gupta et al.'s choice). Features
are compared in float32 (float64 stays float64).

Example:
    >>> from cqdkit.losses.term import Outputs, TermBatch
    >>> term = SupervisionTransfer(teacher_layer="t", student_layer="s")
    >>> student = Outputs(None, {"s": torch.zeros(2, 4, 3, 3)})
    >>> teacher = Outputs(None, {"t": torch.ones(2, 4, 3, 3)})
    >>> term(student, teacher, TermBatch(torch.zeros(2), torch.arange(2))).item()
    1.0
"""

from __future__ import annotations

import torch

from ..errors import SpecError
from .term import (
    DistillContext,
    DistillTerm,
    Outputs,
    TermBatch,
    at_least_float32,
    channels_of,
    features_as_maps,
    match_size,
)


class SupervisionTransfer(DistillTerm):
    """The supervision transfer term: squared error between the student's and the teacher's layer."""

    def __init__(self, *, teacher_layer: str, student_layer: str) -> None:
        super().__init__(teacher_layers=(teacher_layer,), student_layers=(student_layer,), teacher_logits=False)

    def forward(self, student: Outputs, teacher: Outputs, batch: TermBatch) -> torch.Tensor:
        student_map = features_as_maps(student.features[self.student_layers[0]])
        teacher_map = features_as_maps(teacher.features[self.teacher_layers[0]])
        student_map, teacher_map = match_size(at_least_float32(student_map), at_least_float32(teacher_map))
        return (student_map - teacher_map).square().mean()


def supervision_transfer(context: DistillContext, teacher: str = "", student: str = "") -> SupervisionTransfer:
    """The supervision transfer term between the teacher's layer ``teacher`` and the student's layer ``student``
    (module names or stage indices, ``-1`` the last stage; empty: the last stage).

    Raises:
        SpecError: the two layers have different channels (there is no regressor to map one onto the other).
    """
    teacher_layer, student_layer = context.teacher.resolve(teacher), context.student.resolve(student)
    teacher_channels = channels_of(context.teacher.shape(teacher_layer))
    student_channels = channels_of(context.student.shape(student_layer))
    if teacher_channels != student_channels:
        raise SpecError(f"supervision transfer regresses the student's layer {student_layer} ({student_channels} "
                        f"channels) directly onto the teacher's layer {teacher_layer} ({teacher_channels} channels), "
                        "so their channels must be equal; choose layers with the same channels, or use fitnet, "
                        "which learns a 1x1 regressor between them")
    return SupervisionTransfer(teacher_layer=teacher_layer, student_layer=student_layer)
