"""``cqdkit explain``: saliency, tau, confusion reductions, the report and the command on a tiny run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cqdkit.cli.explain import explain
from cqdkit.errors import CqdkitError
from cqdkit.explain.confusion import PairReduction, confusion_matrix, pairwise_confusion, top_reductions
from cqdkit.explain.report import Explanation, write_report
from cqdkit.explain.saliency import saliency
from cqdkit.explain.tau import box_fraction
from cqdkit.models.preprocessing import Normalizer
from tests.test_run_cli import TINY as RUN_TINY

# -- saliency ----------------------------------------------------------------------------------


def test_saliency_of_a_linear_model_is_its_analytic_gradient():
    torch.manual_seed(0)
    channels, height, width, classes = 3, 4, 5, 4
    linear = nn.Linear(channels * height * width, classes).double()
    model = nn.Sequential(nn.Flatten(), linear)
    normalizer = Normalizer([0.4, 0.5, 0.6], [0.2, 0.25, 0.3])
    images = torch.randint(0, 256, (2, channels, height, width), dtype=torch.uint8)
    labels = torch.tensor([1, 3])

    maps = saliency(model.float(), normalizer, images, labels)

    weights = linear.weight.detach().double()  # (classes, C*H*W)
    inputs = (images.double() * normalizer.scale.double() - normalizer.shift.double()).flatten(1)
    probs = torch.softmax(inputs @ weights.T + linear.bias.detach().double(), dim=1)
    d_input = weights[labels] - probs @ weights  # d log p(y) / d input, per image
    d_pixels = d_input.view(2, channels, height, width) * normalizer.scale.double()
    expected = d_pixels.pow(2).sum(1).sqrt()
    assert maps.shape == (2, height, width) and maps.dtype == torch.float32
    torch.testing.assert_close(maps.double(), expected, rtol=1e-4, atol=1e-9)


class OnePixel(nn.Module):
    """Logits ``(sum(a * image), 0)``: at a zero image d log p(0) / d image = a / 2."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        score = (images * self.a).sum(dim=(1, 2, 3))
        return torch.stack([score, torch.zeros_like(score)], dim=1)


def test_saliency_is_the_l2_norm_over_channels_and_leaves_parameter_gradients_alone():
    a = torch.zeros(3, 4, 4)
    a[:, 1, 2] = torch.tensor([6.0, 8.0, 0.0])  # gradient (3, 4, 0) at pixel (1, 2): L2 5 (L1 7, max 4)
    model = OnePixel(a)
    maps = saliency(model, None, torch.zeros(1, 3, 4, 4), torch.tensor([0]))
    expected = torch.zeros(1, 4, 4)
    expected[0, 1, 2] = 5.0
    torch.testing.assert_close(maps, expected)
    assert model.a.grad is None and not model.training


def test_saliency_rejects_bad_shapes():
    model = OnePixel(torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match="B, C, H, W"):
        saliency(model, None, torch.zeros(3, 2, 2), torch.tensor([0]))
    with pytest.raises(ValueError, match="labels"):
        saliency(model, None, torch.zeros(2, 3, 2, 2), torch.tensor([0]))


# -- tau ---------------------------------------------------------------------------------------


class ReadsInsideBox(nn.Module):
    """A random conv net that sees the image only through a box mask."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.LazyLinear(3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images * self.mask)


def test_tau_is_one_for_a_model_that_only_reads_inside_the_box():
    torch.manual_seed(1)
    mask = torch.zeros(1, 1, 12, 16)
    mask[..., 3:9, 5:11] = 1.0  # rows 3-8, columns 5-10: box (5, 3, 11, 9)
    model = ReadsInsideBox(mask)
    images = torch.randint(0, 256, (4, 3, 12, 16), dtype=torch.uint8)
    model(images.float())  # materialise the lazy layer
    maps = saliency(model, Normalizer([0.5] * 3, [0.25] * 3), images, torch.tensor([0, 1, 2, 0]))
    assert (maps.sum(dim=(1, 2)) > 0).all()
    np.testing.assert_allclose(box_fraction(maps, np.tile([5.0, 3.0, 11.0, 9.0], (4, 1))), 1.0, rtol=1e-12)
    assert (box_fraction(maps, np.tile([0.0, 0.0, 5.0, 12.0], (4, 1))) == 0).all()  # left of the box


def test_tau_of_a_uniform_map_is_the_area_ratio_counting_partial_pixels():
    boxes = [[2, 2, 6, 4], [1.5, 2.25, 5.5, 4.75], [-3, -3, 20, 20], [4, 0, 4, 8]]
    expected = [8 / 80, (4 * 2.5) / 80, 1.0, 0.0]  # the third is clipped to the image; the last is empty
    np.testing.assert_allclose(box_fraction(np.ones((4, 8, 10)), boxes), expected)


def test_tau_counts_a_cut_pixel_by_the_area_inside():
    maps = np.zeros((1, 5, 5))
    maps[0, 2, 3] = 7.0
    assert box_fraction(maps, [[3.5, 2.0, 4.0, 3.0]])[0] == pytest.approx(0.5)
    assert box_fraction(maps, [[3.5, 2.5, 9.0, 9.0]])[0] == pytest.approx(0.25)


def test_tau_is_nan_without_a_box_or_without_gradient():
    maps = np.ones((3, 4, 4))
    maps[2] = 0.0
    tau = box_fraction(maps, [[0, 0, 2, 2], [np.nan, 0, 2, 2], [0, 0, 2, 2]])
    assert tau[0] == 0.25 and math.isnan(tau[1]) and math.isnan(tau[2])


@pytest.mark.parametrize(
    ("maps", "boxes", "message"),
    [
        (np.ones((2, 4, 4)), [[0, 0, 1, 1]], "boxes must be"),
        (np.ones((4, 4)), [[0, 0, 1, 1]], "maps must be"),
        (-np.ones((1, 4, 4)), [[0, 0, 1, 1]], "non-negative"),
        (np.ones((1, 4, 4)), [[3, 0, 1, 1]], "x1 < x0"),
    ],
)
def test_tau_rejects_bad_input(maps, boxes, message):
    with pytest.raises(CqdkitError, match=message):
        box_fraction(maps, boxes)


coordinate = st.floats(-5, 25, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    corners=st.tuples(coordinate, coordinate, coordinate, coordinate),
    grow=st.floats(0, 5),
)
def test_tau_lies_in_0_1_grows_with_the_box_and_is_1_for_the_whole_image(seed, corners, grow):
    maps = np.random.default_rng(seed).exponential(size=(1, 16, 20)) ** 3
    x0, x1 = sorted(corners[::2])
    y0, y1 = sorted(corners[1::2])
    tau = box_fraction(maps, [[x0, y0, x1, y1]])[0]
    larger = box_fraction(maps, [[x0 - grow, y0 - grow, x1 + grow, y1 + grow]])[0]
    assert 0.0 <= tau <= larger + 1e-12 <= 1.0 + 1e-12
    assert box_fraction(maps, [[0, 0, 20, 16]])[0] == pytest.approx(1.0)


# -- confusions --------------------------------------------------------------------------------


def test_confusion_matrix_is_normalised_per_true_class():
    labels = [0, 0, 0, 0, 1, 1, 2]
    predictions = [0, 1, 1, 3, 1, 0, 2]
    c = confusion_matrix(labels, predictions, 4)
    expected = np.array([[0.25, 0.5, 0, 0.25], [0.5, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(c, expected)  # class 3 has no examples: a row of zeros
    pairwise = pairwise_confusion(c)
    assert pairwise[0, 1] == pairwise[1, 0] == 1.0 and pairwise[0, 3] == 0.25 and np.all(np.diag(pairwise) == 0)


def test_confusion_rejects_labels_out_of_range():
    with pytest.raises(CqdkitError, match=r"class indices in \[0, 3\)"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(CqdkitError, match="2 labels but 1 predictions"):
        confusion_matrix([0, 1], [0], 3)


def test_top_reductions_ranks_pairs_by_drop_and_keeps_only_drops():
    before = np.array([
        [0.6, 0.3, 0.1, 0.0],
        [0.2, 0.8, 0.0, 0.0],
        [0.0, 0.0, 0.5, 0.5],
        [0.0, 0.0, 0.1, 0.9],
    ])
    after = np.array([
        [0.9, 0.0, 0.0, 0.1],  # (0, 1): 0.5 -> 0.0; (0, 2): 0.1 -> 0.0; (0, 3): 0.0 -> 0.1 (worse)
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 0.8, 0.2],  # (2, 3): 0.6 -> 0.3
        [0.0, 0.0, 0.1, 0.9],
    ])
    pairs = top_reductions(before, after, k=5)
    assert [(p.i, p.j) for p in pairs] == [(0, 1), (2, 3), (0, 2)]
    assert pairs[0] == PairReduction(0, 1, 0.5, 0.0) and pairs[1].reduction == pytest.approx(0.3)
    assert [(p.i, p.j) for p in top_reductions(before, after, k=1)] == [(0, 1)]
    assert top_reductions(after, after) == []


# -- report ------------------------------------------------------------------------------------


def _explanation(tau: bool = True) -> Explanation:
    rng = np.random.default_rng(0)
    first, second = np.array([0.2, 0.4, np.nan, 0.6]), np.array([0.5, 0.3, np.nan, 0.9])
    return Explanation(
        run="runs/tiny",
        names=("B", "A+CQD"),
        methods=("b", "a-cqd"),
        classes=["cat", "dog", "fox"],
        accuracy=(0.5, 0.75),
        images=rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8),
        labels=np.array([0, 2]),
        boxes=np.array([[2.0, 3.0, 10.0, 12.0], [np.nan] * 4]),
        maps=(rng.random((2, 16, 16)), rng.random((2, 16, 16))),
        tau=(first, second) if tau else None,
        tau_energy=(first**2, second) if tau else None,
        box_area=np.array([0.25, 0.25, np.nan, 0.5]) if tau else None,
        tau_ids=["a", "b", "c", "d"] if tau else [],
        tau_note=None if tau else "z is made from the object crop",
        pairs=[PairReduction(0, 2, 0.5, 0.125)],
        pair_examples=[[(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),) * 2] * 2],
        test_images=12,
    )


def test_report_writes_figures_and_documents_with_the_numbers(tmp_path):
    files = write_report(tmp_path, _explanation())
    for name in ("saliency", "tau", "confusions"):
        assert files[name].read_bytes().startswith(b"\x89PNG"), name
    summary = json.loads(files["json"].read_text())
    assert summary["tau"]["images"] == 3
    assert summary["tau"]["mean"] == {"B": pytest.approx(0.4), "A+CQD": pytest.approx(17 / 30)}
    assert summary["tau"]["energy_mean"]["B"] == pytest.approx((0.04 + 0.16 + 0.36) / 3)
    assert summary["tau"]["uniform_mean"] == pytest.approx(1 / 3)
    assert summary["tau"]["A+CQD_higher"] == pytest.approx(2 / 3)
    assert summary["tau"]["per_image"][2] == {"id": "c", "B": None, "A+CQD": None}
    assert summary["pairs"] == [{"i": 0, "j": 2, "classes": ["cat", "fox"], "confusion_B": 0.5,
                                 "confusion_A+CQD": 0.125, "reduction": 0.375}]
    assert summary["test_z_accuracy"] == {"B": 0.5, "A+CQD": 0.75}
    markdown = files["markdown"].read_text()
    for text in ("| B | 0.4000 |", "| A+CQD | 0.5667 |", "| cat | fox | 0.500 | 0.125 | 0.375 |",
                 "![tau.png](tau.png)", "![saliency.png](saliency.png)", "| A+CQD | 75.0 |"):
        assert text in markdown, text
    page = files["html"].read_text()
    assert '<img src="confusions.png"' in page and "<td>0.5667</td>" in page and "A+CQD" in page


def test_report_without_tau_says_why(tmp_path):
    files = write_report(tmp_path, _explanation(tau=False))
    assert "tau" not in files and not (tmp_path / "tau.png").exists()
    assert json.loads(files["json"].read_text())["tau"] is None
    assert "tau was not computed: z is made from the object crop" in files["markdown"].read_text()


# -- the command -------------------------------------------------------------------------------

TINY = [*RUN_TINY, "--epochs", "1"]  # the later --epochs wins


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


def _tiny_run(tmp_path, degrade: str):
    from cqdkit.cli import cli

    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "--degrade", degrade, *TINY, "--no-baseline", "--out", str(out)],
                                catch_exceptions=False)  # no B: explain trains what the run lacks
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_explain_localization_run_end_to_end(tmp_path):
    run = _tiny_run(tmp_path, "localization")
    assert not (run / "b").exists()
    first = CliRunner().invoke(explain, [str(run), "--images", "10", "--examples", "2", "--quiet"],
                               catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "B (b): not in the run; training it now" in first.output
    assert "A+CQD (a-cqd): loading the trained model" in first.output
    assert (run / "b" / "model.safetensors").exists()
    out = run / "explain"
    for name in ("saliency.png", "tau.png", "report.md", "report.html", "report.json"):
        assert (out / name).exists(), name
    summary = json.loads((out / "report.json").read_text())
    assert summary["models"] == {"B": "b", "A+CQD": "a-cqd"} and summary["test_images"] == 12
    tau = summary["tau"]
    assert tau["images"] == 10 and len(tau["per_image"]) == 10
    assert all(0 <= row[name] <= 1 for row in tau["per_image"] for name in ("B", "A+CQD"))
    assert 0 < tau["uniform_mean"] < 1  # localization: the box is part of z
    assert f"{tau['mean']['B']:.4f}" in (out / "report.md").read_text()

    again = CliRunner().invoke(explain, [str(run), "--images", "1000", "--out", str(tmp_path / "all"), "--quiet"],
                               catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert "B (b): loading the trained model" in again.output and "training" not in again.output
    everything = json.loads((tmp_path / "all" / "report.json").read_text())
    assert everything["tau"]["images"] == 12  # capped at the test set
    assert everything["test_z_accuracy"] == summary["test_z_accuracy"]
    assert everything["pairs"] == summary["pairs"]


@pytest.mark.slow
def test_explain_skips_tau_when_z_is_the_object_crop(tmp_path):
    run = _tiny_run(tmp_path, "lowres")
    result = CliRunner().invoke(explain, [str(run), "--images", "4", "--examples", "1", "--quiet"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "tau skipped: z is made from the object crop (--degrade lowres)" in " ".join(result.output.split())
    summary = json.loads((run / "explain" / "report.json").read_text())
    assert summary["tau"] is None and (run / "explain" / "saliency.png").exists()
    assert not (run / "explain" / "tau.png").exists()


def test_explain_needs_a_run_directory(tmp_path):
    result = CliRunner().invoke(explain, [str(tmp_path)])
    assert isinstance(result.exception, CqdkitError) and "config.json" in str(result.exception)
