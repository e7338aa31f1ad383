"""Contrastive representation distillation (cqdkit.losses.crd): the NCE value against an independent float64
re-implementation, gradients, the memory banks, Z, the negatives, state and the factory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cqdkit.errors import SpecError
from cqdkit.losses.build import probe_term
from cqdkit.losses.crd import UNSET, ContrastiveRepresentation, crd
from cqdkit.losses.term import DistillContext, Outputs, TermBatch, WeightedTerm
from cqdkit.models.convnet import ConvNet
from cqdkit.models.features import FeatureTap, Layers


def make_term(num_samples: int = 10, negatives: int = 3, dim: int = 4, tau: float = 0.5, momentum: float = 0.3,
              seed: int = 0) -> ContrastiveRepresentation:
    torch.manual_seed(seed)
    return ContrastiveRepresentation(teacher_layer="t", student_layer="s", teacher_channels=5, student_channels=3,
                                     num_samples=num_samples, dim=dim, negatives=negatives, tau=tau,
                                     momentum=momentum)


def make_inputs(n: int = 3, seed: int = 1, dtype: torch.dtype = torch.float32) -> tuple[Outputs, Outputs]:
    generator = torch.Generator().manual_seed(seed)
    s = torch.randn(n, 3, 2, 2, generator=generator, dtype=dtype)
    t = torch.randn(n, 5, 2, 2, generator=generator, dtype=dtype)
    return Outputs(None, {"s": s}), Outputs(None, {"t": t})


def batch_of(index: list[int]) -> TermBatch:
    return TermBatch(torch.zeros(len(index), dtype=torch.long), torch.tensor(index))


def fix_negatives(term: ContrastiveRepresentation, negatives: torch.Tensor) -> None:
    """Make the term use these negative indices (an instance attribute shadows the method)."""
    term.draw_negatives = lambda index: negatives  # type: ignore[method-assign]


def unit_rows(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


# ---- an independent float64 re-implementation ---------------------------------------------------------------


def np_embeddings(term: ContrastiveRepresentation, student: Outputs, teacher: Outputs) -> tuple[np.ndarray, np.ndarray]:
    def head(linear: torch.nn.Linear, feature: torch.Tensor) -> np.ndarray:
        w, b = linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy()
        v = feature.detach().double().numpy().mean(axis=(2, 3)) @ w.T + b
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    return head(term.student_head, student.features["s"]), head(term.teacher_head, teacher.features["t"])


def np_nce(anchor: np.ndarray, positive: np.ndarray, memory: np.ndarray, negatives: np.ndarray, z: float,
           tau: float, num_samples: int) -> float:
    """The paper's NCE loss, literally: -[log h+/(h+ + M Pn) + sum_j log M Pn/(h_j + M Pn)], mean over i."""
    m_pn = negatives.shape[1] * (1.0 / num_samples)
    total = 0.0
    for i in range(anchor.shape[0]):
        h_pos = np.exp(anchor[i] @ positive[i] / tau) / z
        value = np.log(h_pos / (h_pos + m_pn))
        for j in negatives[i]:
            h_neg = np.exp(anchor[i] @ memory[j] / tau) / z
            value += np.log(m_pn / (h_neg + m_pn))
        total += -value
    return total / anchor.shape[0]


def np_crd(term: ContrastiveRepresentation, student: Outputs, teacher: Outputs, negatives: np.ndarray,
           student_memory: np.ndarray, teacher_memory: np.ndarray, z_s: float, z_t: float) -> float:
    v_s, v_t = np_embeddings(term, student, teacher)
    n = student_memory.shape[0]
    return (np_nce(v_s, v_t, teacher_memory, negatives, z_s, term.tau, n)
            + np_nce(v_t, v_s, student_memory, negatives, z_t, term.tau, n))


# ---- the value ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_samples, negatives", [(10, 3), (50, 3)])  # the full-matrix and the gathering path
@pytest.mark.parametrize("training", [False, True])
def test_value_matches_the_nce_formula(num_samples, negatives, training):
    term = make_term(num_samples=num_samples, negatives=negatives).train(training)
    term.student_memory.copy_(unit_rows(num_samples, 4, 10))
    term.teacher_memory.copy_(unit_rows(num_samples, 4, 11))
    term.student_z.fill_(7.0)
    term.teacher_z.fill_(40.0)  # different, so a swap of Z_s and Z_t shows
    index = [2, 5, 7]
    neg = torch.tensor([[0, 1, 9], [9, 9, 3], [0, 6, 2]])
    fix_negatives(term, neg)
    student, teacher = make_inputs()
    expected = np_crd(term, student, teacher, neg.numpy(), term.student_memory.double().numpy().copy(),
                      term.teacher_memory.double().numpy().copy(), 7.0, 40.0)
    value = term(student, teacher, batch_of(index))
    assert value.shape == ()
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_value_with_the_negatives_the_term_draws():
    """Seeding the global generator identically reproduces the term's draw; the value is then the formula's."""
    term = make_term(num_samples=10, negatives=4).eval()
    term.student_z.fill_(3.0)
    term.teacher_z.fill_(5.0)
    student, teacher = make_inputs()
    index = torch.tensor([0, 4, 9])
    torch.manual_seed(123)
    value = term(student, teacher, TermBatch(torch.zeros(3), index))
    torch.manual_seed(123)
    neg = term.draw_negatives(index)
    expected = np_crd(term, student, teacher, neg.numpy(), term.student_memory.double().numpy(),
                      term.teacher_memory.double().numpy(), 3.0, 5.0)
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_autocast_computes_in_float32():
    term = make_term().eval()
    term.student_z.fill_(3.0)
    term.teacher_z.fill_(5.0)
    fix_negatives(term, torch.tensor([[0, 1, 3], [9, 9, 3]]))
    student, teacher = make_inputs(2)
    plain = term(student, teacher, batch_of([2, 5]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = term(student, teacher, batch_of([2, 5]))
    assert cast.dtype == torch.float32
    assert cast.item() == pytest.approx(plain.item(), rel=1e-5)


# ---- gradients ------------------------------------------------------------------------------------------------


def test_gradients_reach_both_heads_and_the_student_only():
    term = make_term().train()
    student, teacher = make_inputs()
    student.features["s"].requires_grad_(True)
    teacher.features["t"].requires_grad_(True)
    term(student, teacher, batch_of([1, 2, 3])).backward()
    for name, parameter in term.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0, name
    grad = student.features["s"].grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert teacher.features["t"].grad is None


def test_gradcheck_on_the_student_feature():
    term = make_term().double().eval()
    term.student_z.fill_(4.0)
    term.teacher_z.fill_(9.0)
    fix_negatives(term, torch.tensor([[0, 1, 9], [9, 8, 3]]))
    _, teacher = make_inputs(2, dtype=torch.float64)
    feature = torch.randn(2, 3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    feature.requires_grad_(True)

    def value(s: torch.Tensor) -> torch.Tensor:
        return term(Outputs(None, {"s": s}), teacher, batch_of([2, 5]))

    assert torch.autograd.gradcheck(value, (feature,))


# ---- the memory banks -----------------------------------------------------------------------------------------


def test_memory_update_rule_in_training_mode():
    term = make_term(momentum=0.3).train()
    term.student_z.fill_(4.0)
    term.teacher_z.fill_(9.0)
    student_before, teacher_before = term.student_memory.clone(), term.teacher_memory.clone()
    student, teacher = make_inputs()
    index = [1, 4, 7]
    v_s, v_t = (torch.from_numpy(v) for v in np_embeddings(term, student, teacher))
    term(student, teacher, batch_of(index))
    for after, before, v in ((term.student_memory, student_before, v_s), (term.teacher_memory, teacher_before, v_t)):
        mixed = 0.3 * before[index].double() + 0.7 * v
        expected = mixed / mixed.norm(dim=1, keepdim=True)
        torch.testing.assert_close(after[index].double(), expected, rtol=1e-5, atol=1e-6)
        others = [i for i in range(10) if i not in index]
        assert torch.equal(after[others], before[others])
        torch.testing.assert_close(after.norm(dim=1), torch.ones(10))
    assert not any("memory" in name for name, _ in term.named_parameters())


def test_memory_is_not_updated_in_eval_mode():
    term = make_term().eval()
    term.student_z.fill_(4.0)
    term.teacher_z.fill_(9.0)
    state = {k: v.clone() for k, v in term.state_dict().items()}
    term(*make_inputs(), batch_of([1, 4, 7]))
    for key, value in term.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_memories_start_as_unit_vectors():
    term = make_term(num_samples=20, dim=6)
    for memory in (term.student_memory, term.teacher_memory):
        assert memory.shape == (20, 6)
        torch.testing.assert_close(memory.norm(dim=1), torch.ones(20))
    assert not torch.equal(term.student_memory, term.teacher_memory)
    assert float(term.student_z) == UNSET and float(term.teacher_z) == UNSET


# ---- Z --------------------------------------------------------------------------------------------------------


def test_z_is_estimated_once_at_the_first_training_call():
    term = make_term(num_samples=10, negatives=3).train()
    neg = torch.tensor([[0, 1, 9], [9, 9, 3], [0, 6, 2]])
    fix_negatives(term, neg)
    student_memory, teacher_memory = term.student_memory.double().clone(), term.teacher_memory.double().clone()
    student, teacher = make_inputs()
    v_s, v_t = (torch.from_numpy(v) for v in np_embeddings(term, student, teacher))
    positive = (v_s * v_t).sum(dim=1, keepdim=True)
    scores_s = torch.cat([positive, torch.einsum("nd,nkd->nk", v_s, teacher_memory[neg])], dim=1)
    scores_t = torch.cat([positive, torch.einsum("nd,nkd->nk", v_t, student_memory[neg])], dim=1)
    z_s = float((scores_s / term.tau).exp().mean() * 10)
    z_t = float((scores_t / term.tau).exp().mean() * 10)

    value = term(student, teacher, batch_of([2, 5, 7]))
    assert float(term.student_z) == pytest.approx(z_s, rel=1e-5)
    assert float(term.teacher_z) == pytest.approx(z_t, rel=1e-5)
    # the first batch's loss uses the Z it estimated
    expected = np_crd(term, student, teacher, neg.numpy(), student_memory.numpy(), teacher_memory.numpy(), z_s, z_t)
    assert value.item() == pytest.approx(expected, rel=1e-5)

    for seed in (2, 3):  # other batches, other memories: Z stays
        term(*make_inputs(seed=seed), batch_of([0, 1, 3]))
        assert float(term.student_z) == pytest.approx(z_s, rel=1e-5)
        assert float(term.teacher_z) == pytest.approx(z_t, rel=1e-5)


def test_z_is_not_kept_from_an_eval_call():
    term = make_term().eval()
    value = term(*make_inputs(), batch_of([1, 2, 3]))
    assert torch.isfinite(value)
    assert float(term.student_z) == UNSET and float(term.teacher_z) == UNSET


# ---- the negatives --------------------------------------------------------------------------------------------


def test_negatives_never_include_the_positive():
    term = make_term(num_samples=5, negatives=4)
    index = torch.arange(5).repeat(200)
    torch.manual_seed(0)
    neg = term.draw_negatives(index)
    assert neg.shape == (1000, 4)
    assert (neg != index[:, None]).all()
    assert neg.min() >= 0 and neg.max() <= 4
    for i in range(5):  # every other index is drawn, about uniformly (800 draws each, 1/4 chance)
        counts = torch.bincount(neg[index == i].flatten(), minlength=5)
        assert counts[i] == 0
        others = counts[torch.arange(5) != i].double()
        assert ((others - 200).abs() < 60).all(), counts


def test_forward_uses_the_term_draw_and_the_global_generator():
    term = make_term(num_samples=5, negatives=4).eval()
    term.student_z.fill_(4.0)
    term.teacher_z.fill_(9.0)
    inputs = make_inputs()
    torch.manual_seed(7)
    first = term(*inputs, batch_of([0, 1, 2]))
    torch.manual_seed(7)
    again = term(*inputs, batch_of([0, 1, 2]))
    other = term(*inputs, batch_of([0, 1, 2]))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_negatives_are_capped_at_num_samples_minus_one():
    term = make_term(num_samples=6, negatives=4096)
    assert term.negatives == 5
    assert term.draw_negatives(torch.tensor([0, 3])).shape == (2, 5)
    assert make_term(num_samples=6, negatives=2).negatives == 2


def test_bad_parameters_are_refused():
    with pytest.raises(SpecError):
        make_term(num_samples=1)
    with pytest.raises(SpecError):
        make_term(tau=0.0)
    with pytest.raises(SpecError):
        make_term(momentum=1.5)


# ---- state ----------------------------------------------------------------------------------------------------


def test_state_dict_round_trip():
    term = make_term().train()
    optimizer = torch.optim.SGD(term.parameters(), lr=0.5)
    for seed in (1, 2):  # trained heads, updated memories, an estimated Z
        optimizer.zero_grad()
        term(*make_inputs(seed=seed), batch_of([seed, 5, 9])).backward()
        optimizer.step()
    state = term.state_dict()
    assert {"student_memory", "teacher_memory", "student_z", "teacher_z", "student_head.weight",
            "teacher_head.bias"} <= set(state)
    assert float(term.student_z) != UNSET

    copy = make_term(seed=99).train()
    assert not torch.equal(copy.student_memory, term.student_memory)
    copy.load_state_dict(state)
    inputs = make_inputs(seed=5)
    torch.manual_seed(3)
    expected = term(*inputs, batch_of([0, 1, 2]))
    torch.manual_seed(3)
    value = copy(*inputs, batch_of([0, 1, 2]))
    assert torch.equal(value, expected)
    for key, tensor in term.state_dict().items():
        assert torch.equal(copy.state_dict()[key], tensor), key


# ---- the factory ----------------------------------------------------------------------------------------------


def convnet_context(num_samples: int = 10) -> tuple[ConvNet, ConvNet, DistillContext]:
    torch.manual_seed(0)
    teacher, student = ConvNet((8, 16, 32), num_classes=3), ConvNet((4, 8, 16), num_classes=3)
    context = DistillContext(Layers.probe(teacher, image_size=32), Layers.probe(student, image_size=32),
                             num_classes=3, num_samples=num_samples)
    return teacher, student, context


def test_factory_builds_from_a_context():
    teacher, student, context = convnet_context()
    torch.manual_seed(0)
    term = crd(context)
    assert term.teacher_layers == (context.teacher.default,) and term.student_layers == (context.student.default,)
    assert term.teacher_logits is False
    assert term.student_head.in_features == 16 and term.teacher_head.in_features == 32
    assert term.student_head.out_features == 128 and term.student_memory.shape == (10, 128)
    assert term.negatives == 9 and term.tau == 0.07 and term.momentum == 0.5

    earlier = crd(context, teacher="-2", student="-2", dim=8, negatives=4, tau=0.1, momentum=0.9)
    assert earlier.student_head.in_features == 8 and earlier.teacher_head.in_features == 16
    assert earlier.teacher_memory.shape == (10, 8) and earlier.negatives == 4

    probe_term(WeightedTerm("crd", term, 1.0), context, "crd")  # the build-time contract check

    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with FeatureTap(teacher, term.teacher_layers) as tap, torch.no_grad():
        teacher(images)
        teacher_features = tap.take()
    with FeatureTap(student, term.student_layers) as tap:
        logits = student(images)
        student_features = tap.take()
    value = term.train()(Outputs(logits, student_features), Outputs(None, teacher_features), batch_of([0, 3, 6, 9]))
    assert value.shape == () and torch.isfinite(value)
    value.backward()
    assert student.features[0].weight.grad is not None and student.features[0].weight.grad.abs().sum() > 0
