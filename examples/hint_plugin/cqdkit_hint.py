"""cqdkit-hint: FitNets hints (Romero et al., ICLR 2015) as a cqdkit distiller, in one file.

The student's layer, through a learned 1x1 convolution (the *regressor*, which this term owns), matches the
teacher's layer with a squared error: ``mean((regressor(student_feature) - teacher_feature) ** 2)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cqdkit.plugin import Distiller, Param, hookimpl


def build_hint(context: Any, teacher: str = "", student: str = "") -> Any:
    """The factory: called once per training with the run's DistillContext; returns the term."""
    import torch.nn.functional as F
    from torch import nn

    from cqdkit.losses import DistillTerm, features_as_maps

    teacher_layer = context.teacher.resolve(teacher)  # "" -> the last stage; "-2", "features.6", ... as named
    student_layer = context.student.resolve(student)

    class Hint(DistillTerm):
        def __init__(self) -> None:
            super().__init__(teacher_layers=(teacher_layer,), student_layers=(student_layer,), teacher_logits=False)
            self.regressor = nn.Conv2d(context.student.channels(student_layer),
                                       context.teacher.channels(teacher_layer), kernel_size=1)

        def forward(self, student_outputs: Any, teacher_outputs: Any, batch: Any) -> Any:
            guided = features_as_maps(student_outputs.features[student_layer]).float()
            hint = features_as_maps(teacher_outputs.features[teacher_layer]).float()
            regressed = self.regressor(guided)
            if regressed.shape[-2:] != hint.shape[-2:]:
                regressed = F.adaptive_avg_pool2d(regressed, hint.shape[-2:])
            return (regressed - hint).square().mean()

    return Hint()


LAYER_HELP = "a module name, or a stage index (-1: the last stage; empty: the last stage)"


@hookimpl
def cqdkit_losses() -> Iterator[Distiller]:
    yield Distiller(
        name="hint",
        summary="FitNets hints: a 1x1 regressor of a student layer matches a teacher layer (example plugin)",
        factory=build_hint,
        params=(Param(name="teacher", default="", help=f"the teacher's layer: {LAYER_HELP}"),
                Param(name="student", default="", help=f"the student's layer: {LAYER_HELP}")),
        search={"lambda": (0.1, 1.0, 10.0)},
    )
