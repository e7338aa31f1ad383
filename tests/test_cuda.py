"""On a GPU: bf16 autocast, channels_last, the cached and the online teacher, checkpoint/resume, and torchrun
with NCCL. Run with ``pytest -m cuda`` (benchmarks/gpu_check.sh does); skipped without CUDA."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import torch
from click.testing import CliRunner

from cqdkit.cli import cli
from cqdkit.models.preprocessing import Normalizer
from cqdkit.train.engine import Objective, Optimization, TeacherSignal, fit
from cqdkit.train.evaluate import predict
from cqdkit.train.hardware import Hardware
from cqdkit.train.teacher import FrozenTeacher

from .test_run_cli import TINY
from .test_train_engine import PairedTensors, distilling, tiny_model

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

GPU = Hardware(device=torch.device("cuda"), amp=True, channels_last=True)
NORMALIZER = Normalizer([0.5] * 3, [0.25] * 3)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


def test_bf16_autocast_and_channels_last_are_on_for_cuda():
    from cqdkit.models import create_backbone

    model = GPU.prepare(create_backbone("convnet-s", num_classes=3))
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    inputs = GPU.to_input(NORMALIZER.to(GPU.device), images)
    assert inputs.is_contiguous(memory_format=torch.channels_last) and inputs.device.type == "cuda"
    with GPU.autocast():
        logits = model(inputs)
    assert logits.dtype == torch.bfloat16
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_cached_and_online_teacher_train_the_same_student_on_cuda(tmp_path):
    data = PairedTensors()
    frozen = FrozenTeacher(tiny_model(seed=3)).to(GPU.device)
    logits, _ = predict(frozen, NORMALIZER, data, "x", GPU)
    weights = []
    for name, signal in (("cached", TeacherSignal(cached=logits)),
                         ("online", TeacherSignal(teacher=frozen, normalizer=NORMALIZER))):
        model = tiny_model(seed=1)
        objective = distilling(lambda s, t: (s.float() - t).square().mean(), 1.0, signal)
        fit(model, NORMALIZER, data, objective, Optimization(epochs=2, batch_size=8, lr=0.05), GPU, tmp_path / name)
        weights.append({k: v.float().cpu() for k, v in model.state_dict().items()})
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=2e-2, atol=2e-2)  # bf16 on both


class Killed(Exception):
    pass


def test_a_run_resumed_on_the_gpu_ends_with_the_same_weights(tmp_path, monkeypatch):
    from cqdkit.train import engine

    data = PairedTensors()
    optimization = Optimization(epochs=4, batch_size=8, lr=0.05, lr_end=0.005, seed=1)
    straight = tiny_model()
    fit(straight, NORMALIZER, data, Objective(view="z"), optimization, GPU, tmp_path / "straight")
    real_save = engine.save_checkpoint

    def save_then_die(directory, *, epoch, **kwargs):
        real_save(directory, epoch=epoch, **kwargs)
        if epoch == 2:
            raise Killed

    monkeypatch.setattr(engine, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        fit(tiny_model(), NORMALIZER, data, Objective(view="z"), optimization, GPU, tmp_path / "resumed")
    monkeypatch.undo()
    resumed = tiny_model()
    fit(resumed, NORMALIZER, data, Objective(view="z"), optimization, GPU, tmp_path / "resumed")
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


def test_cqdkit_run_on_cuda_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "--degrade", "lowres", *TINY, "--device", "cuda", "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["environment"]["device"].startswith("cuda")


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_torchrun_with_nccl_on_one_device(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "CQDKIT_CACHE": os.environ["CQDKIT_CACHE"]}
    command = ["torchrun", "--standalone", "--nproc_per_node=1", "-m", "cqdkit", "run", "--degrade", "lowres", *TINY,
               "--device", "cuda", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert set(json.loads((out / "results.json").read_text())["models"]) == {"a", "a-cqd", "b"}
