"""Distillation losses: values and gradients pinned to their formulas, invariants, and the conformance check."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cqdkit.errors import SpecError, TrainingError, UnknownNameError
from cqdkit.plugin import DistillLoss, PluginManager
from cqdkit.testing.losses import check_loss


@pytest.fixture(scope="module")
def pm() -> PluginManager:
    return PluginManager(autoload=False)


def make(pm: PluginManager, name: str, temperature: float = 1.0):
    return pm.loss(name).factory(temperature=temperature)


def logits(seed: int, n: int = 4, c: int = 6, scale: float = 3.0, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, c, generator=generator, dtype=dtype)


def entropy(logit: torch.Tensor, temperature: float) -> torch.Tensor:
    p = F.softmax(logit / temperature, dim=1)
    return -(p * p.log()).sum(1).mean()


sizes = st.tuples(st.integers(1, 6), st.integers(2, 8), st.integers(0, 2**16), st.floats(0.1, 20.0))
temperatures = st.sampled_from([0.5, 1.0, 2.0, 10.0])


def test_builtin_losses_are_registered(pm: PluginManager) -> None:
    assert {"softce", "logit-l2", "kl"} <= {e.name for e in pm.entries("loss")}
    with pytest.raises(UnknownNameError, match="did you mean 'softce'"):
        pm.loss("softc")


def test_plugin_module_imports_no_torch() -> None:
    code = "import sys, cqdkit.losses.plugin, cqdkit.losses; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# -- values and gradients pinned to the formulas ------------------------------------------------


def test_softce_value_by_hand(pm: PluginManager) -> None:
    student, teacher = torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[0.0, 0.0]])
    # T=1: p_s = (1/4, 3/4), p_t = (1/2, 1/2): -(1/2 log 1/4 + 1/2 log 3/4)
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert make(pm, "softce", 1.0)(student, teacher).item() == pytest.approx(expected, rel=1e-6)
    # T=2 halves the logits: p_s = softmax(0, log(3)/2) = (1, sqrt 3)/(1 + sqrt 3)
    p1 = 1 / (1 + math.sqrt(3))
    expected_t2 = -(0.5 * math.log(p1) + 0.5 * math.log(1 - p1))
    assert make(pm, "softce", 2.0)(student, teacher).item() == pytest.approx(expected_t2, rel=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 3.0, 10.0])
def test_softce_matches_formula_and_gradient(pm: PluginManager, temperature: float) -> None:
    student = logits(1).requires_grad_(True)
    teacher = logits(2)
    value = make(pm, "softce", temperature)(student, teacher)
    p_s, p_t = F.softmax(student / temperature, 1), F.softmax(teacher / temperature, 1)
    assert value.item() == pytest.approx(-(p_t * p_s.log()).sum(1).mean().item(), rel=1e-10)
    value.backward()
    expected = (p_s - p_t).detach() / temperature / student.shape[0]
    torch.testing.assert_close(student.grad, expected)


def test_softce_at_t1_is_torch_cross_entropy_with_soft_targets(pm: PluginManager) -> None:
    student, teacher = logits(3), logits(4)
    expected = F.cross_entropy(student, F.softmax(teacher, 1))
    torch.testing.assert_close(make(pm, "softce", 1.0)(student, teacher), expected)


def test_logit_l2_value_and_gradient(pm: PluginManager) -> None:
    student = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], requires_grad=True)
    teacher = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    value = make(pm, "logit-l2", 5.0)(student, teacher)  # temperature ignored
    assert value.item() == pytest.approx(((0 + 4 + 9) + (1 + 1 + 1)) / 2)  # sum over classes, mean over batch
    value.backward()
    torch.testing.assert_close(student.grad, 2 * (student.detach() - teacher) / 2)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kl_is_t_squared_times_softce_minus_teacher_entropy(pm: PluginManager, temperature: float) -> None:
    student = logits(5).requires_grad_(True)
    teacher = logits(6)
    value = make(pm, "kl", temperature)(student, teacher)
    softce = make(pm, "softce", temperature)(student, teacher)
    expected = temperature**2 * (softce - entropy(teacher, temperature))
    torch.testing.assert_close(value, expected)
    value.backward()
    p_s, p_t = F.softmax(student / temperature, 1), F.softmax(teacher / temperature, 1)
    torch.testing.assert_close(student.grad, temperature * (p_s - p_t).detach() / student.shape[0])


# -- invariants ----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(sizes, sizes, temperatures)
def test_softce_is_at_least_teacher_entropy(pm: PluginManager, a, b, temperature: float) -> None:
    n, c = a[0], a[1]
    student, teacher = logits(a[2], n, c, a[3]), logits(b[2], n, c, b[3])
    loss = make(pm, "softce", temperature)
    h = entropy(teacher, temperature)
    assert loss(student, teacher) >= h - 1e-9
    torch.testing.assert_close(loss(teacher, teacher), h)
    shift = torch.randn(n, 1, dtype=teacher.dtype)  # a per-sample constant leaves the softmax unchanged
    torch.testing.assert_close(loss(student + shift, teacher - shift), loss(student, teacher))


@settings(max_examples=40, deadline=None)
@given(sizes, sizes, temperatures)
def test_kl_is_nonnegative_and_zero_only_for_equal_distributions(pm: PluginManager, a, b, temperature) -> None:
    n, c = a[0], a[1]
    student, teacher = logits(a[2], n, c, a[3]), logits(b[2], n, c, b[3])
    loss = make(pm, "kl", temperature)
    assert loss(student, teacher) >= -1e-9
    assert abs(loss(teacher + 7.0, teacher).item()) < 1e-9  # same distribution, shifted logits
    different = F.softmax(student / temperature, 1) - F.softmax(teacher / temperature, 1)
    if different.abs().max() > 1e-3:
        assert loss(student, teacher) > 0


@settings(max_examples=40, deadline=None)
@given(sizes, sizes, st.floats(-5.0, 5.0))
def test_logit_l2_symmetry_and_shifts(pm: PluginManager, a, b, shift: float) -> None:
    n, c = a[0], a[1]
    student, teacher = logits(a[2], n, c, a[3]), logits(b[2], n, c, b[3])
    loss = make(pm, "logit-l2")
    torch.testing.assert_close(loss(student, teacher), loss(teacher, student))
    torch.testing.assert_close(loss(student + shift, teacher + shift), loss(student, teacher))
    # unlike the softmax losses, a shift of the student alone costs C * shift^2 per sample
    torch.testing.assert_close(loss(teacher + shift, teacher), torch.tensor(c * shift**2, dtype=teacher.dtype))


@pytest.mark.parametrize("name", ["softce", "logit-l2", "kl"])
def test_bfloat16_autocast_computes_in_float32(pm: PluginManager, name: str) -> None:
    student, teacher = logits(7, dtype=torch.float32), logits(8, dtype=torch.float32)
    loss = make(pm, name, 4.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss(student.bfloat16(), teacher.bfloat16())
    assert low.dtype == torch.float32
    reference = loss(student.bfloat16().float(), teacher.bfloat16().float())
    torch.testing.assert_close(low, reference)


@pytest.mark.parametrize("name", ["softce", "kl"])
def test_large_logits_stay_finite(pm: PluginManager, name: str) -> None:
    student = torch.tensor([[1e4, -1e4, 0.0]], requires_grad=True)
    teacher = torch.tensor([[-1e4, 1e4, 0.0]])
    value = make(pm, name, 1.0)(student, teacher)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(student.grad).all()


@pytest.mark.parametrize("name", ["softce", "logit-l2", "kl"])
def test_mismatched_logits_are_a_clear_error(pm: PluginManager, name: str) -> None:
    with pytest.raises(TrainingError, match=r"\(4, 6\).*\(4, 5\)"):
        make(pm, name)(torch.zeros(4, 6), torch.zeros(4, 5))


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
@pytest.mark.parametrize("name", ["softce", "kl"])
def test_bad_temperature_is_a_spec_error(pm: PluginManager, name: str, temperature: float) -> None:
    with pytest.raises(SpecError, match="temperature"):
        make(pm, name, temperature)


# -- the conformance check -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["softce", "logit-l2", "kl"])
def test_builtin_losses_conform(pm: PluginManager, name: str) -> None:
    check_loss(name, manager=pm)


def _entry(make_loss) -> DistillLoss:
    return DistillLoss(name="broken", summary="a loss that breaks the contract", factory=make_loss)


class _WrongGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student, teacher):
        ctx.save_for_backward(student, teacher)
        return (student - teacher).square().sum(1).mean()

    @staticmethod
    def backward(ctx, grad):
        student, teacher = ctx.saved_tensors
        return grad * (student - teacher) / student.shape[0], None  # missing the factor 2


def _f(x: torch.Tensor) -> torch.Tensor:
    """At least float32, as the contract asks of every loss."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _in_place(student, teacher):
    teacher.mul_(1.0)
    teacher.add_(1.0)
    return (student - teacher).square().sum(1).mean()


@pytest.mark.parametrize(
    ("make_loss", "message"),
    [
        (lambda temperature: lambda s, t: (s - t).square().sum(), "mean over the batch"),
        (lambda temperature: lambda s, t: (s - t).square().sum(1), "expected a scalar"),
        (lambda temperature: lambda s, t: (s - t).square().sum(1).mean().double(), "float64 result"),
        (lambda temperature: _WrongGradient.apply, "finite differences"),
        (lambda temperature: _in_place, "modified the teacher"),
        (lambda temperature: lambda s, t: -(_f(s) - _f(t)).square().sum(1).mean(), "near the teacher"),
        (lambda temperature: lambda s, t: (_f(s) - _f(t)).square().sum(1).mean().log(), "finite"),
    ],
)
def test_check_loss_catches_broken_losses(make_loss, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_loss(_entry(make_loss))


def test_check_loss_minimum_check_can_be_disabled() -> None:
    def make_loss(temperature: float):
        return lambda s, t: (_f(s) - _f(t) - 1.0).square().sum(1).mean()  # minimum away from the teacher

    with pytest.raises(AssertionError, match="not zero"):
        check_loss(_entry(make_loss))
    check_loss(_entry(make_loss), minimum_at_teacher=False)
