"""cqdkit-dkd's own tests: the cqdkit conformance kit, and DKD pinned to the paper's formula.

Run from the repository root:  python -m pytest plugins/cqdkit-dkd/tests -q
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cqdkit_dkd
from cqdkit.errors import SpecError, TrainingError
from cqdkit.losses import KLDivergence
from cqdkit.plugin import DistillLoss, PluginManager
from cqdkit.testing import check_loss
from cqdkit_dkd.loss import DecoupledKD, decoupled_terms


def softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max())
    return e / e.sum()


def kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sum(p * np.log(p / q)))


def direct_dkd(student, teacher, labels, temperature, alpha, beta) -> float:
    """The paper's Equation (5), written out sample by sample in float64 numpy."""
    total = 0.0
    for s, t, y in zip(student, teacher, labels):
        q, p = softmax(s / temperature), softmax(t / temperature)
        others = np.arange(len(s)) != y
        tckd = kl(np.array([p[y], 1 - p[y]]), np.array([q[y], 1 - q[y]]))
        nckd = kl(p[others] / (1 - p[y]), q[others] / (1 - q[y]))
        total += alpha * tckd + beta * nckd
    return temperature**2 * total / len(labels)


def direct_gradient(student, teacher, labels, temperature, alpha, beta) -> np.ndarray:
    """d DKD / d student logits, derived by hand: with q, p the student's and teacher's softmax at T and
    q_hat, p_hat their distributions over the non-target classes, per sample and times T / N,
    alpha (q[y] - p[y]) at the target class and alpha q_hat (p[y] - q[y]) + beta (q_hat - p_hat) elsewhere."""
    grad = np.zeros_like(student)
    for i, (s, t, y) in enumerate(zip(student, teacher, labels)):
        q, p = softmax(s / temperature), softmax(t / temperature)
        others = np.arange(len(s)) != y
        q_hat, p_hat = q[others] / (1 - q[y]), p[others] / (1 - p[y])
        grad[i, y] = alpha * (q[y] - p[y])
        grad[i, others] = alpha * q_hat * (p[y] - q[y]) + beta * (q_hat - p_hat)
    return grad * temperature / len(labels)


@st.composite
def problems(draw):
    batch, classes = draw(st.integers(1, 6)), draw(st.integers(2, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    student, teacher = 3 * rng.standard_normal((2, batch, classes))
    labels = rng.integers(0, classes, batch)
    temperature = draw(st.sampled_from([1.0, 4.0, 10.0]))
    alpha, beta = draw(st.sampled_from([(1.0, 8.0), (0.5, 2.0), (0.0, 1.0)]))
    return student, teacher, labels, temperature, alpha, beta


@settings(max_examples=15, deadline=None, derandomize=True)
@given(problem=problems())
def test_value_and_gradient_match_the_formula(problem):
    student, teacher, labels, temperature, alpha, beta = problem
    loss = DecoupledKD(temperature, alpha, beta)
    s = torch.tensor(student, requires_grad=True)
    value = loss(s, torch.tensor(teacher), torch.tensor(labels))
    value.backward()
    expected = direct_dkd(student, teacher, labels, temperature, alpha, beta)
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    gradient = direct_gradient(student, teacher, labels, temperature, alpha, beta)
    np.testing.assert_allclose(s.grad.numpy(), gradient, rtol=1e-7, atol=1e-12)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(problem=problems())
def test_kd_is_tckd_plus_damped_nckd(problem):
    """The paper's Equation (4), for any target class: KD = TCKD + (1 - p_t[y]) NCKD."""
    student, teacher, labels, temperature, _, _ = problem
    s, t, y = torch.tensor(student), torch.tensor(teacher), torch.tensor(labels)
    tckd, nckd = decoupled_terms(s, t, y, temperature)
    p_target = torch.softmax(t / temperature, dim=1).gather(1, y[:, None]).squeeze(1)
    decomposed = temperature**2 * (tckd + (1 - p_target) * nckd).mean()
    assert decomposed.item() == pytest.approx(KLDivergence(temperature)(s, t).item(), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("params", [{}, {"alpha": 0.5, "beta": 2.0}, {"alpha": 0.0}])
def test_passes_the_cqdkit_conformance_check(params):
    manager = PluginManager(autoload=False)
    manager.register(cqdkit_dkd)
    if not params:
        check_loss("dkd", manager=manager, temperatures=(1.0, 10.0))
    else:
        factory = functools.partial(manager.loss("dkd").factory, **params)
        check_loss(DistillLoss(name="dkd", summary="DKD with other weights", factory=factory))


def test_without_labels_the_target_is_the_teachers_top_class():
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 8, 5, generator=generator)
    loss = cqdkit_dkd.dkd()
    assert (loss.temperature, loss.alpha, loss.beta) == (4.0, 1.0, 8.0)
    assert torch.equal(loss(student, teacher), loss(student, teacher, teacher.argmax(1)))
    other = (teacher.argmax(1) + 1) % 5
    assert not torch.allclose(loss(student, teacher), loss(student, teacher, other))


def test_with_labels_it_is_a_mean_over_the_batch_and_computes_in_float32():
    generator = torch.Generator().manual_seed(1)
    student, teacher = 3 * torch.randn(2, 6, 4, generator=generator)
    labels = torch.randint(0, 4, (6,), generator=generator)
    loss = DecoupledKD()
    value = loss(student, teacher, labels)
    repeated = loss(student.repeat(2, 1), teacher.repeat(2, 1), labels.repeat(2))
    assert repeated.item() == pytest.approx(value.item(), rel=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss(student.bfloat16(), teacher.bfloat16(), labels)
    assert low.dtype == torch.float32 and torch.isfinite(low)


def test_confident_logits_stay_finite():
    student = torch.tensor([[80.0, -80.0, 0.0]], requires_grad=True)
    teacher = torch.tensor([[-80.0, 80.0, 0.0]])
    value = DecoupledKD(temperature=1.0)(student, teacher, torch.tensor([0]))
    value.backward()
    assert torch.isfinite(value) and value.item() > 100 and torch.isfinite(student.grad).all()


def test_bad_parameters_and_inputs_are_reported():
    with pytest.raises(SpecError, match="temperature must be a positive number, got 0"):
        DecoupledKD(temperature=0)
    with pytest.raises(SpecError, match="beta must be a non-negative number, got -1"):
        cqdkit_dkd.dkd(beta=-1)
    loss = DecoupledKD()
    logits = torch.zeros(2, 3)
    with pytest.raises(TrainingError, match=r"labels must be class indices in \[0, 3\), got \[0, 3\]"):
        loss(logits, logits, torch.tensor([0, 3]))
    with pytest.raises(TrainingError, match=r"shape \(2,\)"):
        loss(logits, logits, torch.tensor([0.0, 1.0]))
    with pytest.raises(TrainingError, match="C >= 2"):
        loss(torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(TrainingError, match=r"student \(2, 3\) and teacher \(2, 4\)"):
        loss(logits, torch.zeros(2, 4))
