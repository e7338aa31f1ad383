"""The relational distillation terms (PKT, SP, RKD) against the papers' definitions.

Each term's value is checked against an independent float64 formula written here with explicit loops over
the samples, its gradient with gradcheck and against a separate float64 torch re-implementation, and the
invariants the papers state (0 when the student's relations equal the teacher's, invariance to the order of
the batch and, where the potentials are normalised, to scale); a batch of one sample gives a connected 0;
the factories resolve layers from a :class:`DistillContext`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from cqdkit.losses.pkt import ProbabilisticTransfer, pkt
from cqdkit.losses.rkd import RelationalKD, rkd
from cqdkit.losses.similarity import SimilarityPreserving, similarity_preserving
from cqdkit.losses.term import DistillContext, DistillTerm, Outputs, TermBatch
from cqdkit.models.convnet import ConvNet
from cqdkit.models.features import FeatureTap, Layers

#: One sample's feature shapes: vectors and maps (some with a single position).
SHAPES = ((3,), (7,), (4, 2, 3), (2, 1, 1), (5, 3, 3))
HYPOTHESIS = settings(max_examples=20, deadline=None)


def evaluate(term: DistillTerm, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    size = len(student)
    return term(Outputs(None, {"s": student}), Outputs(None, {"t": teacher}),
                TermBatch(torch.zeros(size, dtype=torch.long), torch.arange(size)))


def make_pkt() -> ProbabilisticTransfer:
    return ProbabilisticTransfer(teacher_layer="t", student_layer="s")


def make_sp() -> SimilarityPreserving:
    return SimilarityPreserving(teacher_layer="t", student_layer="s")


def make_rkd(distance: float = 25.0, angle: float = 50.0) -> RelationalKD:
    return RelationalKD(teacher_layer="t", student_layer="s", distance=distance, angle=angle)


@st.composite
def pairs(draw: st.DrawFn, same_shape: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A student's and a teacher's features, float64, of 2 to 6 samples."""
    size = draw(st.integers(2, 6))
    student_shape = draw(st.sampled_from(SHAPES))
    teacher_shape = student_shape if same_shape else draw(st.sampled_from(SHAPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.normal(size=(size, *student_shape)), rng.normal(size=(size, *teacher_shape))


# ---------------------------------------------------------------------------------------------------------------
# Independent references, float64, loops over the samples (from the papers' definitions)
# ---------------------------------------------------------------------------------------------------------------


def embed(feature: np.ndarray) -> np.ndarray:
    """One vector per sample: a map averaged over its positions."""
    return feature.mean(axis=(2, 3)) if feature.ndim == 4 else feature


def pkt_conditional(x: np.ndarray) -> list[list[float]]:
    """``p[i][j] = p_{i|j}`` of PKT's cosine kernel, 0 on the diagonal."""
    n = len(x)
    kernel = [[(float(x[i] @ x[j]) / (np.linalg.norm(x[i]) * np.linalg.norm(x[j])) + 1) / 2 for j in range(n)]
              for i in range(n)]
    p = [[0.0] * n for _ in range(n)]
    for j in range(n):
        total = sum(kernel[k][j] for k in range(n) if k != j)
        for i in range(n):
            if i != j:
                p[i][j] = kernel[i][j] / total
    return p


def pkt_is_exact_on(student: np.ndarray, teacher: np.ndarray, margin: float = 1e-4) -> bool:
    """PKT equals its formula only where every ``p_{i|j} >= eps`` (below it the logs are clamped, by design:
    two nearly opposite samples would make the loss and its gradient unbounded)."""
    return all(p >= margin for x in (student, teacher) for j, row in enumerate(pkt_conditional(embed(x)))
               for i, p in enumerate(row) if i != j)


def pkt_reference(student: np.ndarray, teacher: np.ndarray) -> float:
    s, t = pkt_conditional(embed(student)), pkt_conditional(embed(teacher))
    n = len(s)
    return sum(t[i][j] * math.log(t[i][j] / s[i][j]) for j in range(n) for i in range(n) if i != j) / n


def sp_reference(student: np.ndarray, teacher: np.ndarray) -> float:
    def gram(feature: np.ndarray) -> list[list[float]]:
        q = feature.reshape(len(feature), -1)
        n = len(q)
        g = [[float(sum(q[i][d] * q[j][d] for d in range(q.shape[1]))) for j in range(n)] for i in range(n)]
        return [[g[i][j] / math.sqrt(sum(v * v for v in g[i])) for j in range(n)] for i in range(n)]

    s, t = gram(student), gram(teacher)
    n = len(s)
    return sum((t[i][j] - s[i][j]) ** 2 for i in range(n) for j in range(n)) / n**2


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def rkd_reference(student: np.ndarray, teacher: np.ndarray, distance: float = 25.0, angle: float = 50.0) -> float:
    s, t = embed(student), embed(teacher)
    n = len(s)
    pairs_ = [(i, j) for i in range(n) for j in range(n) if i != j]
    triplets = [(i, j, k) for i in range(n) for j in range(n) for k in range(n) if len({i, j, k}) == 3]

    def psi_d(x: np.ndarray) -> dict[tuple[int, int], float]:
        d = {(i, j): float(np.linalg.norm(x[i] - x[j])) for i, j in pairs_}
        mu = sum(d.values()) / len(d)
        return {key: value / mu for key, value in d.items()}

    def psi_a(x: np.ndarray, i: int, j: int, k: int) -> float:
        e_ij = (x[i] - x[j]) / np.linalg.norm(x[i] - x[j])
        e_kj = (x[k] - x[j]) / np.linalg.norm(x[k] - x[j])
        return float(e_ij @ e_kj)

    ds, dt = psi_d(s), psi_d(t)
    loss_d = sum(huber(ds[p] - dt[p]) for p in pairs_) / len(pairs_)
    loss_a = sum(huber(psi_a(s, *c) - psi_a(t, *c)) for c in triplets) / len(triplets) if triplets else 0.0
    return distance * loss_d + angle * loss_a


# Separate float64 torch re-implementations (differentiable), for the gradients.


def torch_embed(feature: torch.Tensor) -> torch.Tensor:
    return feature.flatten(2).mean(2) if feature.ndim == 4 else feature


def pkt_torch(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    s, t = torch_embed(student), torch_embed(teacher)
    n = len(s)
    loss = student.new_zeros(())
    for j in range(n):
        others = [i for i in range(n) if i != j]
        ks = (F.cosine_similarity(s[others], s[j].expand(n - 1, -1), dim=1, eps=0) + 1) / 2
        kt = (F.cosine_similarity(t[others], t[j].expand(n - 1, -1), dim=1, eps=0) + 1) / 2
        ps, pt = ks / ks.sum(), kt / kt.sum()
        loss = loss + (pt * (pt / ps).log()).sum()
    return loss / n


def sp_torch(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    def similarity(feature: torch.Tensor) -> torch.Tensor:
        q = feature.reshape(len(feature), -1)
        g = torch.einsum("id,jd->ij", q, q)
        return g / g.norm(dim=1, keepdim=True)

    return (similarity(teacher) - similarity(student)).pow(2).mean()


def rkd_torch(student: torch.Tensor, teacher: torch.Tensor, distance: float = 25.0,
              angle: float = 50.0) -> torch.Tensor:
    s, t = torch_embed(student), torch_embed(teacher)
    ds, dt = torch.pdist(s), torch.pdist(t)  # the pairs i < j: their mean is the mean over all i != j
    loss = distance * F.smooth_l1_loss(ds / ds.mean(), dt / dt.mean())
    triplets = list(itertools.permutations(range(len(s)), 3))
    if triplets:
        def cosine(x: torch.Tensor, i: int, j: int, k: int) -> torch.Tensor:
            return F.cosine_similarity(x[i] - x[j], x[k] - x[j], dim=0, eps=0)

        angles_s = torch.stack([cosine(s, *c) for c in triplets])
        angles_t = torch.stack([cosine(t, *c) for c in triplets])
        loss = loss + angle * F.smooth_l1_loss(angles_s, angles_t)
    return loss


TERMS: dict[str, tuple[Callable[[], DistillTerm], Callable[..., float], Callable[..., torch.Tensor]]] = {
    "pkt": (make_pkt, pkt_reference, pkt_torch),
    "sp": (make_sp, sp_reference, sp_torch),
    "rkd": (make_rkd, rkd_reference, rkd_torch),
}


# ---------------------------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TERMS)
@HYPOTHESIS
@given(data=pairs())
def test_value_matches_the_papers_formula(name: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    make, reference, _ = TERMS[name]
    student, teacher = data
    assume(name != "pkt" or pkt_is_exact_on(student, teacher))
    expected = reference(student, teacher)
    exact = evaluate(make(), torch.from_numpy(student), torch.from_numpy(teacher))
    assert exact.dtype == torch.float64 and exact.ndim == 0
    assert exact.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    student_32, teacher_16 = torch.from_numpy(student).float(), torch.from_numpy(teacher).half()  # a cached teacher
    single = evaluate(make(), student_32, teacher_16)
    assert single.dtype == torch.float32
    rounded = reference(student_32.double().numpy(), teacher_16.double().numpy())
    assert single.item() == pytest.approx(rounded, rel=1e-4, abs=1e-5)


@HYPOTHESIS
@given(data=pairs(), distance=st.sampled_from((0.0, 1.0, 25.0)), angle=st.sampled_from((0.0, 2.0, 50.0)))
def test_rkd_weights_its_distance_and_angle_losses(data: tuple[np.ndarray, np.ndarray], distance: float,
                                                   angle: float) -> None:
    student, teacher = data
    value = evaluate(make_rkd(distance, angle), torch.from_numpy(student), torch.from_numpy(teacher))
    assert value.item() == pytest.approx(rkd_reference(student, teacher, distance, angle), rel=1e-9, abs=1e-12)


def test_rkd_angle_loss_reads_triplets_only() -> None:
    """Three collinear points against a triangle: psi_A differs, so the angle loss alone is positive."""
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    teacher = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    angle_only = evaluate(make_rkd(0.0, 1.0), student, teacher).item()
    assert angle_only > 0.05
    assert angle_only == pytest.approx(rkd_reference(student.numpy(), teacher.numpy(), 0.0, 1.0), rel=1e-12)


@pytest.mark.parametrize("name", TERMS)
def test_bf16_inputs_are_computed_in_float32(name: str) -> None:
    make, reference, _ = TERMS[name]
    generator = torch.Generator().manual_seed(3)
    student = torch.randn(5, 4, 3, 3, generator=generator).bfloat16()
    teacher = torch.randn(5, 6, 2, 2, generator=generator).bfloat16()
    value = evaluate(make(), student, teacher)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(reference(student.double().numpy(), teacher.double().numpy()), rel=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TERMS)
@HYPOTHESIS
@given(data=pairs())
def test_gradient_matches_a_float64_reimplementation(name: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    make, _, reimplementation = TERMS[name]
    assume(name != "pkt" or pkt_is_exact_on(*data))
    student, teacher = (torch.from_numpy(a) for a in data)
    term = make()
    assert torch.autograd.gradcheck(lambda s: evaluate(term, s, teacher), (student.clone().requires_grad_(),))
    ours = student.clone().requires_grad_()
    evaluate(term, ours, teacher).backward()
    theirs = student.clone().requires_grad_()
    reimplementation(theirs, teacher).backward()
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("name", TERMS)
def test_teacher_gets_no_gradient(name: str) -> None:
    make = TERMS[name][0]
    student = torch.randn(4, 5, requires_grad=True)
    teacher = torch.randn(4, 3, requires_grad=True)
    evaluate(make(), student, teacher).backward()
    assert teacher.grad is None and student.grad is not None


@pytest.mark.parametrize("name", ["pkt", "rkd"])
def test_duplicate_and_zero_embeddings_stay_finite(name: str) -> None:
    make = TERMS[name][0]
    student = torch.randn(5, 4, dtype=torch.float64)
    student[1] = student[0]
    student[3] = 0
    teacher = torch.randn(5, 6, dtype=torch.float64)
    teacher[2] = teacher[4]
    student.requires_grad_()
    value = evaluate(make(), student, teacher)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(student.grad).all()


def test_pkt_opposite_embeddings_stay_finite() -> None:
    """Two opposite embeddings: K = 0 between them, so each column has no mass; eps keeps it finite."""
    student = torch.tensor([[1.0, -2.0], [-1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    value = evaluate(make_pkt(), student, torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    value.backward()
    assert value.item() == pytest.approx(-math.log(1e-7))  # p^t = 1 against p^s = 0, for both samples
    assert torch.isfinite(student.grad).all()


def test_rkd_coincident_embeddings_have_no_distance_and_no_direction() -> None:
    vectors = torch.tensor([[1.0, 2.0], [1.0, 2.0], [4.0, 6.0]], dtype=torch.float64)
    distances, angles = RelationalKD.potentials(vectors)
    assert distances[0, 1] == 0 and distances[1, 0] == 0  # not eps: t_0 and t_1 are one point
    assert distances[0, 2] == pytest.approx(5 / (20 / 6))  # 5 / mean(0, 0, 5, 5, 5, 5)
    assert angles[1, 0, 2] == 0 and angles[0, 1, 2] == 0  # e_01 and e_10 have no direction
    assert angles[2, 0, 1] == pytest.approx(1.0)
    distances, angles = RelationalKD.potentials(torch.ones(4, 3))
    assert not distances.any() and not angles.any()


def test_rkd_all_embeddings_equal_is_finite() -> None:
    student = torch.ones(4, 3, requires_grad=True)
    value = evaluate(make_rkd(), student, torch.randn(4, 3))
    value.backward()
    assert torch.isfinite(value) and value.item() > 0 and torch.isfinite(student.grad).all()


# ---------------------------------------------------------------------------------------------------------------
# Invariants
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TERMS)
@HYPOTHESIS
@given(data=pairs(same_shape=True))
def test_zero_when_the_student_equals_the_teacher(name: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    feature = torch.from_numpy(data[0]).float()
    assert abs(evaluate(TERMS[name][0](), feature, feature.clone()).item()) < 1e-6
    other = torch.from_numpy(data[1]).float()
    if len(feature) >= 3:  # two samples have one relation each way, the same for any two distinct embeddings
        assert evaluate(TERMS[name][0](), other, feature).item() > 0


@pytest.mark.parametrize("name", TERMS)
@HYPOTHESIS
@given(data=pairs(), seed=st.integers(0, 2**32 - 1))
def test_invariant_to_the_order_of_the_batch(name: str, data: tuple[np.ndarray, np.ndarray], seed: int) -> None:
    student, teacher = (torch.from_numpy(a) for a in data)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(student)))
    term = TERMS[name][0]()
    assert evaluate(term, student[order], teacher[order]).item() == pytest.approx(
        evaluate(term, student, teacher).item(), rel=1e-10, abs=1e-12)


@HYPOTHESIS
@given(data=pairs(), scale=st.floats(0.01, 100.0))
def test_pkt_invariant_to_rescaling_the_student(data: tuple[np.ndarray, np.ndarray], scale: float) -> None:
    student, teacher = (torch.from_numpy(a) for a in data)
    assert evaluate(make_pkt(), scale * student, teacher).item() == pytest.approx(
        evaluate(make_pkt(), student, teacher).item(), rel=1e-9, abs=1e-12)


@HYPOTHESIS
@given(data=pairs(), student_scale=st.floats(0.01, 100.0), teacher_scale=st.floats(0.01, 100.0))
def test_rkd_distance_loss_invariant_to_scale(data: tuple[np.ndarray, np.ndarray], student_scale: float,
                                              teacher_scale: float) -> None:
    student, teacher = (torch.from_numpy(a) for a in data)
    for term in (make_rkd(1.0, 0.0), make_rkd()):
        assert evaluate(term, student_scale * student, teacher_scale * teacher).item() == pytest.approx(
            evaluate(term, student, teacher).item(), rel=1e-9, abs=1e-12)


def test_rkd_zero_when_the_student_is_a_scaled_teacher() -> None:
    teacher = torch.randn(6, 5, 2, 2, dtype=torch.float64)
    assert evaluate(make_rkd(), 7.5 * teacher, teacher).item() == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Small batches
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TERMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_batch_of_one_is_a_connected_zero(name: str, dtype: torch.dtype) -> None:
    student = torch.randn(1, 4, 3, 3).to(dtype).requires_grad_()
    value = evaluate(TERMS[name][0](), student, torch.randn(1, 8, 2, 2))
    assert value.ndim == 0 and torch.isfinite(value) and value.item() == 0
    value.backward()
    assert student.grad is not None and not student.grad.any()


def test_rkd_batch_of_two_has_no_angle_loss() -> None:
    student = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(2, 5, dtype=torch.float64)
    value = evaluate(make_rkd(0.0, 50.0), student, teacher)
    value.backward()
    assert value.item() == 0 and student.grad is not None
    # Two points: psi_D is 1 for both, so the distance loss is 0 too.
    assert evaluate(make_rkd(), student, teacher).item() == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Factories
# ---------------------------------------------------------------------------------------------------------------


FACTORIES = {"pkt": (pkt, ProbabilisticTransfer), "sp": (similarity_preserving, SimilarityPreserving),
             "rkd": (rkd, RelationalKD)}


@pytest.fixture(scope="module")
def networks() -> tuple[ConvNet, ConvNet, DistillContext]:
    torch.manual_seed(0)
    teacher, student = ConvNet((8, 16, 32), num_classes=3), ConvNet((4, 8, 16), num_classes=3)
    context = DistillContext(teacher=Layers.probe(teacher, image_size=32), student=Layers.probe(student, image_size=32),
                             num_classes=3, num_samples=10)
    return teacher, student, context


@pytest.mark.parametrize("name", FACTORIES)
def test_factory_defaults_to_the_last_stages(name: str, networks: tuple[ConvNet, ConvNet, DistillContext]) -> None:
    factory, cls = FACTORIES[name]
    context = networks[2]
    term = factory(context)
    assert isinstance(term, cls) and isinstance(term, DistillTerm)
    assert term.teacher_layers == (context.teacher.stages[-1],) == ("features.10",)
    assert term.student_layers == (context.student.stages[-1],) == ("features.10",)
    assert term.teacher_logits is False and term.live_teacher is False
    assert not list(term.parameters())


@pytest.mark.parametrize("name", FACTORIES)
def test_factory_resolves_stage_indices_and_names(name: str, networks: tuple[ConvNet, ConvNet, DistillContext]) -> None:
    factory = FACTORIES[name][0]
    context = networks[2]
    term = factory(context, teacher="-2", student="features.2")
    assert term.teacher_layers == (context.teacher.stages[-2],) == ("features.6",)
    assert term.student_layers == ("features.2",)


def test_rkd_factory_passes_its_weights(networks: tuple[ConvNet, ConvNet, DistillContext]) -> None:
    term = rkd(networks[2], distance=1.5, angle=0.0)
    assert (term.distance, term.angle) == (1.5, 0.0)
    with pytest.raises(Exception, match="angle"):
        rkd(networks[2], angle=-1.0)


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("layer", ["", "-2"])
def test_term_trains_the_student_through_its_layer(name: str, layer: str,
                                                  networks: tuple[ConvNet, ConvNet, DistillContext]) -> None:
    teacher_net, student_net, context = networks
    term = FACTORIES[name][0](context, teacher=layer, student=layer)
    generator = torch.Generator().manual_seed(1)
    x, z = torch.rand(6, 3, 32, 32, generator=generator), torch.rand(6, 3, 32, 32, generator=generator)
    with torch.no_grad(), FeatureTap(teacher_net, term.teacher_layers) as tap:
        teacher_net(x)
        teacher = Outputs(None, tap.take())
    student_net.zero_grad()
    with FeatureTap(student_net, term.student_layers) as tap:
        logits = student_net(z)
        student = Outputs(logits, tap.take())
    value = term(student, teacher, TermBatch(torch.zeros(6, dtype=torch.long), torch.arange(6)))
    assert value.ndim == 0 and torch.isfinite(value) and value.item() > 0
    value.backward()
    assert student_net.features[0].weight.grad.abs().sum() > 0
