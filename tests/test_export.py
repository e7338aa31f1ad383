"""``cqdkit export``: the exported student reproduces the trained model's outputs outside cqdkit."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cqdkit.cli import cli
from cqdkit.export import load_trained
from cqdkit.files import OWNED_LIST
from tests.test_run_cli import TINY


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("runs") / "tiny"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CQDKIT_CACHE", str(cache))
        result = CliRunner().invoke(cli, ["run", "--degrade", "lowres", *TINY, "--epochs", "1", "--no-baseline",
                                          "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _test_images(run_dir):
    """The run's own test z views, as the data pipeline hands them to the model (uint8 NCHW)."""
    from cqdkit.train.config import RunConfig
    from cqdkit.train.experiment import Experiment

    experiment = Experiment(RunConfig.load(run_dir / "config.json"), run_dir)
    items = [experiment.test_set[i] for i in range(len(experiment.test_set))]
    return torch.stack([torch.as_tensor(item[1]) for item in items])


def test_onnx_export_matches_the_trained_student_in_onnxruntime(run_dir, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    out = tmp_path / "student.onnx"
    result = CliRunner().invoke(cli, ["export", str(run_dir), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output

    metadata = json.loads((tmp_path / "student.onnx.json").read_text())
    assert metadata["method"] == "a-cqd" and metadata["input"]["shape"] == ["N", 3, 32, 32]
    assert len(metadata["classes"]) == 3 and metadata["max_abs_difference_vs_torch"] < 1e-4

    images = _test_images(run_dir)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    exported = session.run(None, {"images": images.numpy().astype(np.float32)})[0]
    student = load_trained(run_dir / "a-cqd" / "model.safetensors").module
    with torch.no_grad():
        expected = student(images).numpy()
    assert exported.shape == (len(images), 3)  # any batch size, not only the traced one
    np.testing.assert_allclose(exported, expected, atol=1e-4)
    assert (exported.argmax(1) == expected.argmax(1)).all()


def test_torchscript_export_of_another_model_of_the_run(run_dir, tmp_path):
    out = tmp_path / "teacher.pt"
    result = CliRunner().invoke(cli, ["export", str(run_dir), "--format", "torchscript", "--model", "a",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    images = _test_images(run_dir)[:5]
    scripted = torch.jit.load(str(out))
    teacher = load_trained(run_dir / "a" / "model.safetensors").module
    with torch.no_grad():
        torch.testing.assert_close(scripted(images.float()), teacher(images), atol=1e-5, rtol=1e-5)
        # the preprocessing is inside: raw 0..255 pixels in, not normalised ones
        assert not torch.allclose(scripted(images.float()), teacher.backbone(images.float()))


def test_export_errors_name_what_is_missing(run_dir, tmp_path):
    result = CliRunner().invoke(cli, ["export", str(run_dir), "--model", "b"])
    assert result.exit_code == 2
    assert "no trained model 'b'" in result.output and "a-cqd" in result.output
    result = CliRunner().invoke(cli, ["export", str(tmp_path)])
    assert result.exit_code == 2 and "results.json not found" in result.output
    result = CliRunner().invoke(cli, ["export", str(run_dir), "--format", "tflite"])
    assert result.exit_code == 2 and "tflite" in result.output


@pytest.mark.parametrize("field, value, named", [
    ("mean", "abc", "field mean must be a list of 3 finite numbers"),
    ("std", [0.2, 0.0, 0.2], "field std must be a list of 3 finite numbers above 0"),
    ("num_classes", 5, "model.safetensors: the weights do not fit a convnet-s with 5 classes"),
])
def test_a_model_json_that_does_not_fit_is_a_one_line_error(run_dir, tmp_path, field, value, named):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    description_path = run / "a-cqd" / "model.json"
    description = json.loads(description_path.read_text())
    description[field] = value
    description_path.write_text(json.dumps(description))
    result = CliRunner().invoke(cli, ["export", str(run), "--out", str(tmp_path / "student.onnx")])
    assert result.exit_code == 2, (result.output, result.exception)
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("error: ")
    assert named in result.output and "model.json" in result.output
    assert not (tmp_path / "student.onnx").exists()


def test_router_exports_as_one_graph_that_routes_and_classifies(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from cqdkit.models import create_backbone
    from cqdkit.routing import Expert, QualityRouter
    from cqdkit.models.preprocessing import Normalizer

    torch.manual_seed(0)
    experts = [Expert("convnet-s", create_backbone("convnet-s", num_classes=4), Normalizer([0.5] * 3, [0.25] * 3))
               for _ in range(2)]
    router = QualityRouter(["clean", "lowres"], experts, num_classes=4, image_size=16)
    pixels = torch.cat([torch.full((3, 3, 16, 16), 128.0), torch.rand(3, 3, 16, 16) * 255])
    with torch.no_grad():
        mean_spectrum = router.features(pixels).mean(1)
    threshold = float(mean_spectrum[:3].max() + mean_spectrum[3:].min()) / 2  # flat images below, noise above
    features = router.spectrum.num_features
    router.set_classifier(torch.stack([torch.zeros(features), torch.ones(features) / features]),
                          torch.tensor([0.0, -threshold]), torch.zeros(features), torch.ones(features))
    router.eval().save(tmp_path / "router.safetensors")

    result = CliRunner().invoke(cli, ["export", str(tmp_path), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    session = onnxruntime.InferenceSession(str(tmp_path / "export" / "router.onnx"))
    exported = torch.from_numpy(session.run(None, {"images": pixels.numpy()})[0])
    with torch.no_grad():
        quality = router.predict_quality(pixels)
        expected = torch.stack([router.experts[q](router.normalizers[q](pixels[i:i + 1]))[0]
                                for i, q in enumerate(quality.tolist())])
    assert quality.tolist() == [0, 0, 0, 1, 1, 1]
    torch.testing.assert_close(exported, expected, atol=1e-4, rtol=1e-4)
    assert json.loads((tmp_path / "export" / "router.onnx.json").read_text())["qualities"] == ["clean", "lowres"]
    assert sorted(p.name for p in (tmp_path / "export").iterdir() if p.name != OWNED_LIST) == ["router.onnx", "router.onnx.json"]  # one file
