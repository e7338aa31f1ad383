"""FitNets (``fitnet``): value and gradient against the hint loss written from the paper, the regressor it owns,
and its factory on real networks' layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cqdkit.errors import SpecError
from cqdkit.losses.fitnet import FitNet, fitnet
from cqdkit.losses.term import DistillContext, Outputs, TermBatch
from cqdkit.models.convnet import ConvNet
from cqdkit.models.features import Layers

from .test_distill_attention import common_size_np


def hint_reference(guided: np.ndarray, hint: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> float:
    """Romero et al.'s L_HT with a 1x1 convolutional regressor r, as a mean over samples, channels and positions:
    r(v)[o, i, j] = bias[o] + sum_c weight[o, c] v[c, i, j]; the larger map average-pooled to the smaller's size."""
    total, count = 0.0, 0
    for v, u in zip(guided.astype(np.float64), hint.astype(np.float64)):
        regressed = np.array([[[bias[o] + sum(weight[o, c] * v[c, i, j] for c in range(v.shape[0]))
                                for j in range(v.shape[2])] for i in range(v.shape[1])] for o in range(len(bias))])
        regressed, u = common_size_np(regressed, u)
        total += float(((regressed - u) ** 2).sum())
        count += regressed.size
    return total / count


def outputs(student: torch.Tensor, teacher: torch.Tensor) -> tuple[Outputs, Outputs, TermBatch]:
    return Outputs(None, {"s": student}), Outputs(None, {"t": teacher}), TermBatch(torch.zeros(len(student)),
                                                                                   torch.arange(len(student)))


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 3), student_channels=st.integers(1, 4), teacher_channels=st.integers(1, 4),
       student_size=st.integers(1, 5), teacher_size=st.integers(1, 5), seed=st.integers(0, 99))
def test_fitnet_is_the_hint_loss_through_its_regressor(batch, student_channels, teacher_channels, student_size,
                                                        teacher_size, seed):
    torch.manual_seed(seed)
    term = FitNet(teacher_layer="t", student_layer="s", teacher_channels=teacher_channels,
                  student_channels=student_channels).double()
    student = torch.randn(batch, student_channels, student_size, student_size, dtype=torch.float64)
    teacher = torch.randn(batch, teacher_channels, teacher_size, teacher_size, dtype=torch.float64)
    value = term(*outputs(student, teacher))
    weight = term.regressor.weight.detach()[:, :, 0, 0].numpy()
    expected = hint_reference(student.numpy(), teacher.numpy(), weight, term.regressor.bias.detach().numpy())
    assert value.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_fitnet_gradients_reach_the_student_and_the_regressor_not_the_teacher():
    torch.manual_seed(0)
    term = FitNet(teacher_layer="t", student_layer="s", teacher_channels=3, student_channels=2).double()
    student = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    torch.autograd.gradcheck(lambda s: term(*outputs(s, teacher)), (student,))
    torch.autograd.gradcheck(lambda w: FitNet.forward(_with_weight(term, w), *outputs(student.detach(), teacher)),
                             (term.regressor.weight.detach().clone().requires_grad_(True),))
    term(*outputs(student, teacher)).backward()
    assert term.regressor.weight.grad is not None and term.regressor.weight.grad.abs().sum() > 0
    assert student.grad.abs().sum() > 0


def _with_weight(term: FitNet, weight: torch.Tensor) -> FitNet:
    """A copy of ``term`` whose regressor weight is ``weight`` (for a gradient check of the regressor)."""
    copy = FitNet(teacher_layer="t", student_layer="s", teacher_channels=weight.shape[0],
                  student_channels=weight.shape[1]).double()
    del copy.regressor.weight
    copy.regressor.weight = weight
    copy.regressor.bias = term.regressor.bias
    return copy


def test_a_perfect_regression_gives_zero_and_no_gradient():
    term = FitNet(teacher_layer="t", student_layer="s", teacher_channels=2, student_channels=2)
    with torch.no_grad():
        term.regressor.weight.copy_(torch.eye(2)[:, :, None, None])
        term.regressor.bias.zero_()
    feature = torch.randn(3, 2, 4, 4, requires_grad=True)
    value = term(*outputs(feature, feature.detach().clone()))
    value.backward()
    assert value.item() == 0.0 and feature.grad.abs().max() == 0.0


def test_the_factory_sizes_the_regressor_from_the_layers_and_refuses_unknown_ones():
    context = DistillContext(teacher=Layers.probe(ConvNet((8, 16, 32), num_classes=3), image_size=32),
                             student=Layers.probe(ConvNet((4, 8, 16), num_classes=3), image_size=32),
                             num_classes=3, num_samples=10)
    term = fitnet(context)
    assert term.teacher_layers == ("features.10",) and term.student_layers == ("features.10",)
    assert tuple(term.regressor.weight.shape) == (32, 16, 1, 1)
    earlier = fitnet(context, teacher="-2", student="-3")
    assert earlier.teacher_layers == ("features.6",) and earlier.student_layers == ("features.2",)
    assert tuple(earlier.regressor.weight.shape) == (16, 4, 1, 1)
    with pytest.raises(SpecError, match="no layer 'layer9'.*its stages: features.2, features.6, features.10"):
        fitnet(context, student="layer9")
