"""FitNets (Romero, Ballas, Kahou, Chassang, Gatta and Bengio, ICLR 2015): hints from the teacher's features.

The student's *guided* layer, through a learned regressor ``r`` (a 1x1 convolution, owned by the term),
matches the teacher's *hint* layer::

    L_HT = mean over the batch and the elements of (r(v_s(z)) - u_t(x))**2

where ``v_s`` and ``u_t`` are the two layers' outputs; when their spatial sizes differ, the larger map is
average-pooled to the smaller's first. The paper writes ``1/2 ||u - r(v)||^2`` summed over the elements
and trains the hint in a stage of its own before knowledge distillation; here the term is the mean (so its
weight does not depend on the layer's size) and trains with the cross-entropy and any other term at once,
as RepDistiller and mdistiller do. Both layers default to the last stage of their network.

Example:
    >>> from cqdkit.losses.term import Outputs, TermBatch
    >>> term = FitNet(teacher_layer="t", student_layer="s", teacher_channels=8, student_channels=4)
    >>> student = Outputs(None, {"s": torch.zeros(2, 4, 3, 3)})
    >>> teacher = Outputs(None, {"t": torch.ones(2, 8, 3, 3)})
    >>> term(student, teacher, TermBatch(torch.zeros(2), torch.arange(2))).item() > 0
    True
"""

from __future__ import annotations

import torch
from torch import nn

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


class FitNet(DistillTerm):
    """The hint term: squared error between a 1x1 regression of the student's layer and the teacher's layer."""

    def __init__(self, *, teacher_layer: str, student_layer: str, teacher_channels: int, student_channels: int) -> None:
        super().__init__(teacher_layers=(teacher_layer,), student_layers=(student_layer,), teacher_logits=False)
        self.regressor = nn.Conv2d(student_channels, teacher_channels, kernel_size=1)

    def forward(self, student: Outputs, teacher: Outputs, batch: TermBatch) -> torch.Tensor:
        guided = at_least_float32(features_as_maps(student.features[self.student_layers[0]]))
        hint = at_least_float32(features_as_maps(teacher.features[self.teacher_layers[0]]))
        regressed, hint = match_size(self.regressor(guided.to(self.regressor.weight.dtype)), hint.to(guided.dtype))
        return (regressed - hint).square().mean()


def fitnet(context: DistillContext, teacher: str = "", student: str = "") -> FitNet:
    """The FitNets hint term between the teacher's layer ``teacher`` and the student's layer ``student``
    (module names or stage indices, ``-1`` the last stage; empty: the last stage)."""
    teacher_layer, student_layer = context.teacher.resolve(teacher), context.student.resolve(student)
    return FitNet(teacher_layer=teacher_layer, student_layer=student_layer,
                  teacher_channels=channels_of(context.teacher.shape(teacher_layer)),
                  student_channels=channels_of(context.student.shape(student_layer)))
