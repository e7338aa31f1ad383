"""The test kit for distiller plugins (cqdkit.testing.check_distiller) passes cqdkit's own and catches the
mistakes a plugin author makes: parts the trainer cannot see, randomness it cannot resume."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from cqdkit.errors import PluginError
from cqdkit.losses import DistillTerm, features_as_maps
from cqdkit.plugin import Distiller
from cqdkit.testing import check_distiller

BUILT_IN = ["fitnet", "at", "st", "pkt", "sp", "rkd", "crd"]


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_distiller_passes_the_kit(name, cqdkit_plugin_manager):
    check_distiller(name, manager=cqdkit_plugin_manager)


class _Regression(DistillTerm):
    """A FitNets-like term whose regressor is stored the way ``hide`` says."""

    def __init__(self, context: Any, hide: str) -> None:
        teacher, student = context.teacher.default, context.student.default
        super().__init__(teacher_layers=(teacher,), student_layers=(student,), teacher_logits=False)
        conv = nn.Conv2d(context.student.channels(student), context.teacher.channels(teacher), 1)
        if hide == "outside":  # a plain attribute, not a submodule: no optimizer, no checkpoint
            self.__dict__["regressor"] = conv
        else:
            self.regressor = conv
        self.generator = torch.Generator().manual_seed(0) if hide == "private-rng" else None

    def forward(self, student, teacher, batch):
        s = features_as_maps(student.features[self.student_layers[0]]).float()
        t = features_as_maps(teacher.features[self.teacher_layers[0]]).float()
        value = (self.__dict__.get("regressor", None) or self.regressor)(s) - t
        if self.generator is not None:  # noise from a generator that no checkpoint holds
            value = value * (1 + 0.1 * torch.rand(value.shape, generator=self.generator))
        return value.square().mean()


@pytest.mark.parametrize("hide, complaint", [
    ("outside", "not submodules or parameters of the term"),
    ("private-rng", "after a resume"),
])
def test_the_kit_catches_parts_the_trainer_cannot_see_and_randomness_it_cannot_resume(hide, complaint):
    entry = Distiller(name="broken", summary="a broken hint", factory=lambda context: _Regression(context, hide))
    with pytest.raises(AssertionError, match=complaint):
        check_distiller(entry)


def test_a_well_kept_regression_passes_and_a_per_sample_value_does_not():
    check_distiller(Distiller(name="kept", summary="a kept hint", factory=lambda context: _Regression(context, "")))

    class PerSample(_Regression):
        def forward(self, student, teacher, batch):
            return super().forward(student, teacher, batch).expand(2)

    with pytest.raises(PluginError, match="shape"):
        check_distiller(Distiller(name="vector", summary="one value per sample",
                                  factory=lambda context: PerSample(context, "")))
