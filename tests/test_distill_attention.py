"""Attention transfer (``at``) and supervision transfer (``st``): values and gradients against independent
formulas written from the papers, invariants, and their factories on real networks' layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cqdkit.errors import SpecError
from cqdkit.losses.attention import AttentionTransfer, attention
from cqdkit.losses.supervision import SupervisionTransfer, supervision_transfer
from cqdkit.losses.term import DistillContext, Outputs, TermBatch
from cqdkit.models.convnet import ConvNet
from cqdkit.models.features import FeatureTap, Layers
from cqdkit.models.vggm import VGGM

# -- independent references, written from the papers' definitions ---------------------------------------------


def pool_np(feature: np.ndarray, height: int, width: int) -> np.ndarray:
    """Adaptive average pooling of one sample's ``(C, H, W)`` to ``(C, height, width)``: output cell ``i`` averages
    input rows ``floor(i*H/height)`` to ``ceil((i+1)*H/height) - 1`` (likewise the columns)."""
    channels, in_height, in_width = feature.shape
    pooled = np.zeros((channels, height, width))
    for i in range(height):
        rows = range((i * in_height) // height, -(-((i + 1) * in_height) // height))
        for j in range(width):
            cols = range((j * in_width) // width, -(-((j + 1) * in_width) // width))
            for c in range(channels):
                pooled[c, i, j] = sum(feature[c, r, k] for r in rows for k in cols) / (len(rows) * len(cols))
    return pooled


def common_size_np(student: np.ndarray, teacher: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both samples' maps at the smaller height and the smaller width."""
    height, width = min(student.shape[1], teacher.shape[1]), min(student.shape[2], teacher.shape[2])
    return pool_np(student, height, width), pool_np(teacher, height, width)


def attention_np(feature: np.ndarray, p: float) -> np.ndarray:
    """Zagoruyko and Komodakis' Q/||Q|| for one sample ``(C, H, W)``: per position, the mean over channels of |A|^p."""
    channels, height, width = feature.shape
    q = np.array([sum(abs(feature[c, i, j]) ** p for c in range(channels)) / channels
                  for i in range(height) for j in range(width)])
    return q / np.sqrt(sum(v * v for v in q))


def at_reference(student: np.ndarray, teacher: np.ndarray, p: float = 2.0) -> float:
    """The AT loss: the mean over samples and positions of the squared difference of normalised attention."""
    total, count = 0.0, 0
    for s, t in zip(student.astype(np.float64), teacher.astype(np.float64)):
        s, t = common_size_np(s, t)
        for a, b in zip(attention_np(s, p), attention_np(t, p)):
            total += (a - b) ** 2
            count += 1
    return total / count


def st_reference(student: np.ndarray, teacher: np.ndarray) -> float:
    """Supervision transfer: the mean over samples and elements of (phi_s - phi_t)^2."""
    total, count = 0.0, 0
    for s, t in zip(student.astype(np.float64), teacher.astype(np.float64)):
        s, t = common_size_np(s, t)
        for a, b in zip(s.ravel(), t.ravel()):
            total += (a - b) ** 2
            count += 1
    return total / count


def pool_torch(feature: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Adaptive average pooling of ``(N, C, H, W)``, by slicing (differentiable, float64)."""
    in_height, in_width = feature.shape[2:]
    rows = []
    for i in range(height):
        top, bottom = (i * in_height) // height, -(-((i + 1) * in_height) // height)
        cells = []
        for j in range(width):
            left, right = (j * in_width) // width, -(-((j + 1) * in_width) // width)
            cells.append(feature[:, :, top:bottom, left:right].mean(dim=(2, 3)))
        rows.append(torch.stack(cells, dim=-1))
    return torch.stack(rows, dim=-2)


def common_size_torch(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    height, width = min(student.shape[2], teacher.shape[2]), min(student.shape[3], teacher.shape[3])
    return pool_torch(student, height, width), pool_torch(teacher, height, width)


def at_reference_torch(student: torch.Tensor, teacher: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """AT in float64 torch, written apart from the term: sum over channels / C, divide by the root of the sum of
    squares."""
    student, teacher = common_size_torch(student, teacher)

    def normalised(feature: torch.Tensor) -> torch.Tensor:
        q = (feature.abs() ** p).sum(dim=1).reshape(feature.shape[0], -1) / feature.shape[1]
        return q / (q * q).sum(dim=1, keepdim=True).sqrt()

    difference = normalised(student) - normalised(teacher)
    return (difference * difference).sum() / difference.numel()


def st_reference_torch(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    student, teacher = common_size_torch(student, teacher)
    difference = student - teacher
    return (difference * difference).sum() / difference.numel()


# -- helpers -----------------------------------------------------------------------------------------------------


def batch_of(n: int) -> TermBatch:
    return TermBatch(labels=torch.zeros(n, dtype=torch.long), index=torch.arange(n))


def run(term, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return term(Outputs(None, {"s": student}), Outputs(None, {"t": teacher}), batch_of(student.shape[0]))


def at_term(p: float | None = None) -> AttentionTransfer:
    """The AT term between layers "t" and "s"; ``p=None``: the class's default exponent."""
    if p is None:
        return AttentionTransfer(teacher_layer="t", student_layer="s")
    return AttentionTransfer(teacher_layer="t", student_layer="s", p=p)


def st_term() -> SupervisionTransfer:
    return SupervisionTransfer(teacher_layer="t", student_layer="s")


def random_map(seed: int, shape: tuple[int, ...], dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


#: (batch, student (C, H, W), teacher (C, H, W), seed): spatial sizes drawn independently, so often different.
map_pairs = st.tuples(
    st.integers(1, 3),
    st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)),
    st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)),
    st.integers(0, 2**16),
)


def draw_maps(pair, same_channels: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    n, student_shape, teacher_shape, seed = pair
    if same_channels:
        teacher_shape = (student_shape[0],) + teacher_shape[1:]
    return random_map(seed, (n, *student_shape)), random_map(seed + 1, (n, *teacher_shape))


# -- attention transfer: values --------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(map_pairs, st.sampled_from([None, 1.0, 2.0, 3.0]))
def test_at_value_matches_the_papers_formula(pair, p) -> None:
    student, teacher = draw_maps(pair)
    term = at_term(p)  # None: the default exponent, which must be 2
    expected = at_reference(student.numpy(), teacher.numpy(), 2.0 if p is None else p)
    assert run(term, student, teacher).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("student_size, teacher_size", [((8, 8), (4, 4)), ((3, 5), (6, 4)), ((2, 2), (7, 7))])
def test_at_value_when_spatial_sizes_differ(student_size, teacher_size) -> None:
    student, teacher = random_map(1, (3, 5, *student_size)), random_map(2, (3, 7, *teacher_size))
    value = run(at_term(), student, teacher).item()
    assert value == pytest.approx(at_reference(student.numpy(), teacher.numpy()), rel=1e-9)
    assert value > 1e-4  # the maps differ, so must the attention


def test_at_value_by_hand() -> None:
    # one channel, two positions: student |A|^2 = (1, 0) -> (1, 0); teacher (1, 1) -> (1, 1)/sqrt 2
    student = torch.tensor([[[[1.0, 0.0]]]], dtype=torch.float64)
    teacher = torch.tensor([[[[1.0, -1.0]]]], dtype=torch.float64)
    expected = ((1 - 2**-0.5) ** 2 + 0.5) / 2
    assert run(at_term(), student, teacher).item() == pytest.approx(expected, rel=1e-12)


def test_at_computes_low_precision_features_in_float32() -> None:
    student, teacher = random_map(3, (2, 4, 5, 5)), random_map(4, (2, 6, 5, 5))
    value = run(at_term(), student.to(torch.bfloat16), teacher.to(torch.float16))
    assert value.dtype == torch.float32
    expected = at_reference(student.to(torch.bfloat16).double().numpy(), teacher.to(torch.float16).double().numpy())
    assert value.item() == pytest.approx(expected, rel=1e-5)


# -- attention transfer: gradients and invariants ----------------------------------------------------------------


@pytest.mark.parametrize("student_shape, teacher_shape", [((2, 3, 4, 4), (2, 5, 4, 4)), ((2, 3, 6, 5), (2, 2, 3, 3))])
@pytest.mark.parametrize("p", [None, 3.0])
def test_at_gradient(student_shape, teacher_shape, p) -> None:
    student, teacher = random_map(5, student_shape), random_map(6, teacher_shape)
    term = at_term(p)
    assert torch.autograd.gradcheck(lambda s: run(term, s, teacher), (student.clone().requires_grad_(True),))

    ours = student.clone().requires_grad_(True)
    run(term, ours, teacher).backward()
    reference = student.clone().requires_grad_(True)
    at_reference_torch(reference, teacher, 2.0 if p is None else p).backward()
    torch.testing.assert_close(ours.grad, reference.grad, rtol=1e-9, atol=1e-12)
    assert ours.grad.abs().max() > 1e-6


@settings(max_examples=20, deadline=None)
@given(map_pairs)
def test_at_is_zero_with_zero_gradient_when_the_student_matches_the_teacher(pair) -> None:
    teacher, _ = draw_maps(pair)
    student = teacher.clone().requires_grad_(True)
    value = run(at_term(), student, teacher)
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(student.grad, torch.zeros_like(teacher), rtol=0, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(map_pairs, st.floats(1e-2, 1e2))
def test_at_is_invariant_to_rescaling_the_student_map(pair, scale: float) -> None:
    student, teacher = draw_maps(pair)
    torch.testing.assert_close(run(at_term(), scale * student, teacher), run(at_term(), student, teacher),
                               rtol=1e-9, atol=1e-12)


def test_at_rejects_a_non_positive_exponent() -> None:
    with pytest.raises(SpecError, match="p > 0"):
        at_term(0.0)


# -- supervision transfer: values, gradients --------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(map_pairs)
def test_st_value_matches_the_papers_formula(pair) -> None:
    student, teacher = draw_maps(pair, same_channels=True)
    expected = st_reference(student.numpy(), teacher.numpy())
    assert run(st_term(), student, teacher).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("student_size, teacher_size", [((8, 8), (4, 4)), ((3, 5), (6, 4)), ((2, 2), (7, 7))])
def test_st_value_when_spatial_sizes_differ(student_size, teacher_size) -> None:
    student, teacher = random_map(7, (2, 4, *student_size)), random_map(8, (2, 4, *teacher_size))
    assert run(st_term(), student, teacher).item() == pytest.approx(st_reference(student.numpy(), teacher.numpy()),
                                                                     rel=1e-9)


def test_st_value_by_hand() -> None:
    student, teacher = torch.zeros(2, 3, 2, 2), torch.full((2, 3, 2, 2), 2.0)
    teacher[1] = 0.0  # half the elements differ by 2: mean of squares 4 / 2
    assert run(st_term(), student, teacher).item() == pytest.approx(2.0)


def test_st_computes_low_precision_features_in_float32() -> None:
    student, teacher = random_map(9, (2, 4, 3, 3)), random_map(10, (2, 4, 3, 3))
    value = run(st_term(), student.to(torch.bfloat16), teacher.to(torch.bfloat16))
    assert value.dtype == torch.float32
    expected = st_reference(student.to(torch.bfloat16).double().numpy(), teacher.to(torch.bfloat16).double().numpy())
    assert value.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("student_shape, teacher_shape", [((2, 3, 4, 4), (2, 3, 4, 4)), ((2, 3, 6, 5), (2, 3, 3, 3)),
                                                          ((2, 3, 2, 2), (2, 3, 5, 4))])
def test_st_gradient(student_shape, teacher_shape) -> None:
    student, teacher = random_map(11, student_shape), random_map(12, teacher_shape)
    term = st_term()
    assert torch.autograd.gradcheck(lambda s: run(term, s, teacher), (student.clone().requires_grad_(True),))

    ours = student.clone().requires_grad_(True)
    run(term, ours, teacher).backward()
    reference = student.clone().requires_grad_(True)
    st_reference_torch(reference, teacher).backward()
    torch.testing.assert_close(ours.grad, reference.grad, rtol=1e-9, atol=1e-12)
    assert ours.grad.abs().max() > 1e-6


@settings(max_examples=20, deadline=None)
@given(map_pairs)
def test_st_is_zero_with_zero_gradient_when_the_student_matches_the_teacher(pair) -> None:
    teacher, _ = draw_maps(pair)
    student = teacher.clone().requires_grad_(True)
    value = run(st_term(), student, teacher)
    value.backward()
    assert value.item() == 0.0
    torch.testing.assert_close(student.grad, torch.zeros_like(teacher), rtol=0, atol=0)


# -- factories on real networks' layers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def networks() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"teacher": ConvNet((8, 16, 32), num_classes=3), "student": ConvNet((4, 8, 16), num_classes=3),
            "twin": ConvNet((4, 8, 32), num_classes=3)}


@pytest.fixture(scope="module")
def layers(networks) -> dict[str, Layers]:
    return {name: Layers.probe(model, image_size=32) for name, model in networks.items()}


def context(teacher: Layers, student: Layers) -> DistillContext:
    return DistillContext(teacher=teacher, student=student, num_classes=3, num_samples=10)


def test_at_factory_defaults_to_the_last_stages(layers) -> None:
    term = attention(context(layers["teacher"], layers["student"]))
    assert isinstance(term, AttentionTransfer)
    assert term.teacher_layers == (layers["teacher"].stages[-1],) == ("features.10",)
    assert term.student_layers == (layers["student"].stages[-1],) == ("features.10",)
    assert term.teacher_logits is False and term.live_teacher is False and term.p == 2.0
    assert list(term.parameters()) == []


def test_at_factory_resolves_names_indices_and_p(layers) -> None:
    term = attention(context(layers["teacher"], layers["student"]), teacher="features.6", student="-3", p=3.0)
    assert term.teacher_layers == ("features.6",) and term.student_layers == ("features.2",) and term.p == 3.0


def test_st_factory_defaults_to_the_last_stages(layers) -> None:
    term = supervision_transfer(context(layers["teacher"], layers["twin"]))
    assert isinstance(term, SupervisionTransfer)
    assert term.teacher_layers == ("features.10",) and term.student_layers == ("features.10",)
    assert term.teacher_logits is False and term.live_teacher is False
    assert list(term.parameters()) == []


def test_st_factory_accepts_equal_channels_at_different_sizes(layers) -> None:
    term = supervision_transfer(context(layers["teacher"], layers["student"]), teacher="features.6", student="-1")
    assert term.teacher_layers == ("features.6",) and term.student_layers == ("features.10",)


@pytest.mark.parametrize("factory", [attention, supervision_transfer])
@pytest.mark.parametrize("side", ["teacher", "student"])
def test_factories_reject_an_unknown_layer_listing_the_valid_ones(layers, factory, side) -> None:
    with pytest.raises(SpecError, match=r"no layer 'features\.99'.*features\.10") as error:
        factory(context(layers["teacher"], layers["twin"]), **{side: "features.99"})
    assert "features.2" in str(error.value)


def test_st_factory_rejects_different_channels_suggesting_fitnet(layers) -> None:
    with pytest.raises(SpecError, match="fitnet") as error:
        supervision_transfer(context(layers["teacher"], layers["student"]))
    message = str(error.value)
    assert "features.10" in message and "32 channels" in message and "16 channels" in message


def test_at_factory_falls_back_past_a_1x1_last_stage() -> None:
    vggm = Layers.probe(VGGM(num_classes=3), image_size=64)
    assert vggm.stages[-1] == "features.14" and vggm.shape("features.14")[1:] == (1, 1)
    term = attention(context(vggm, vggm))
    assert term.teacher_layers == ("features.13",) and term.student_layers == ("features.13",)
    assert attention(context(vggm, vggm), teacher="-1").teacher_layers == ("features.14",)  # named: as named


def test_at_factory_raises_when_no_stage_has_more_than_one_position() -> None:
    tiny = Layers.probe(ConvNet((4, 8), num_classes=3), image_size=2)  # stage maps 2x2 then 1x1
    one_by_one = Layers(tiny.architecture, tiny.names, tiny.shapes, tuple(n for n in tiny.stages
                                                                           if tiny.shape(n)[1:] == (1, 1)))
    assert one_by_one.stages
    with pytest.raises(SpecError, match="larger than 1x1"):
        attention(context(one_by_one, tiny))


@pytest.mark.parametrize("factory, student_name", [(attention, "student"), (supervision_transfer, "twin")])
def test_terms_train_the_students_layers_below(networks, layers, factory, student_name) -> None:
    teacher_net, student_net = networks["teacher"], networks[student_name]
    term = factory(context(layers["teacher"], layers[student_name]))
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(13))
    with FeatureTap(teacher_net, term.teacher_layers) as tap, torch.no_grad():
        teacher_net(images)
        teacher = Outputs(None, tap.take())
    with FeatureTap(student_net, term.student_layers) as tap:
        logits = student_net(images)
        student = Outputs(logits, tap.take())
    student_net.zero_grad()
    value = term(student, teacher, batch_of(2))
    value.backward()
    assert value.ndim == 0 and value.item() > 0
    assert student_net.features[0].weight.grad.abs().sum() > 0
