"""ImageNet initialisation: the paper profile's default, found before training, recorded in config.json."""

from __future__ import annotations

import hashlib
import json
import socket

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from cqdkit.cli import cli
from cqdkit.models.download import URL_ENV
from cqdkit.models.matconvnet import convert_file
from cqdkit.models.pretrained import locate_pretrained, store_path
from cqdkit.train.config import RunConfig
from cqdkit.train.experiment import Experiment
from cqdkit.train.methods import get_method

from .test_matconvnet import AVERAGE, TinyVggm, random_weights, save_network, vggm_layers
from .test_run_cli import TINY

TINY_DATA = {"classes": 3, "train_per_class": 8, "test_per_class": 4, "image_size": 48}


@pytest.fixture(autouse=True)
def offline_private_caches(tmp_path, tmp_path_factory, monkeypatch):
    """A private cqdkit cache (the weight store lives there), an empty, offline Hugging Face cache, and MatConvNet's
    models location on a port nothing listens on."""
    import huggingface_hub.constants

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv(URL_ENV, f"http://127.0.0.1:{probe.getsockname()[1]}/")
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path / "cqdkit-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


def config(**changes) -> RunConfig:
    values = dict(dataset_options=TINY_DATA, image_size=32, epochs=1, batch_size=8, device="cpu")
    return RunConfig(**{**values, **changes})


def test_the_paper_profile_starts_from_pretrained_weights_and_the_cpu_profile_does_not():
    assert config(profile="paper").resolved().pretrained is True
    assert config(dataset="cub").profile_values()["pretrained"] is True
    assert config().resolved().pretrained is False  # synthetic data: the CPU profile
    assert config(profile="paper", pretrained=False).resolved().pretrained is False


def test_unavailable_weights_are_one_line_before_anything_trains(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--degrade", "gray", *TINY, "--profile", "paper", "--teacher", "test_resnet", "--student",
            "test_resnet", "--epochs", "1", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "test_resnet" in message and "--no-pretrained" in message and "--teacher-weights" in message
    assert not list(out.rglob("latest.json"))
    vggm = CliRunner().invoke(cli, [*args[:-2], "--teacher", "vggm", "--student", "vggm", "--out", str(out)])
    assert vggm.exit_code == 2 and "convert-weights imagenet-vgg-m.mat --arch vggm" in " ".join(vggm.output.split())
    assert "downloading it failed: cannot reach http://127.0.0.1:" in " ".join(vggm.output.split())
    scratch = CliRunner().invoke(cli, [*args, "--no-pretrained"])
    assert scratch.exit_code == 0, scratch.output
    recorded = json.loads((out / "config.json").read_text())["initial_weights"]
    assert recorded["teacher"]["source"] == "seeded random init" and isinstance(recorded["teacher"]["seed"], int)


def fill_hub_cache(hub, repository: str, state: dict[str, torch.Tensor]) -> None:
    """The Hugging Face cache layout that a download would have left."""
    folder = hub / f"models--{repository.replace('/', '--')}"
    revision = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    (folder / "snapshots" / revision).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "snapshots" / revision / "model.safetensors"))


def test_timm_weights_load_from_the_local_hub_cache_and_are_recorded(offline_private_caches, tmp_path):
    import timm

    torch.manual_seed(7)
    cached = {k: torch.randn_like(v) if v.is_floating_point() else v
              for k, v in timm.create_model("test_resnet").state_dict().items()}
    fill_hub_cache(offline_private_caches, "timm/test_resnet.r160_in1k", cached)
    experiment = Experiment(config(profile="paper", teacher="test_resnet", student="test_resnet", degrade="gray"),
                            tmp_path / "run")
    source = experiment.initial_weights["teacher"]
    assert (source["source"], source["repository"], source["cached"]) == ("timm hub", "timm/test_resnet.r160_in1k", True)
    model, _ = experiment.initial_model(get_method("a"))
    own = model.state_dict()
    body = [k for k in cached if not k.startswith("fc.")]
    assert body and all(torch.equal(own[k], cached[k]) for k in body)
    assert own["fc.weight"].shape[0] == 3  # a fresh 3-way classifier


def test_a_converted_file_in_the_weight_store_is_the_pretrained_start(tmp_path):
    from cqdkit.models import create_backbone

    torch.manual_seed(3)
    stored = create_backbone("convnet-s", num_classes=1000).state_dict()
    path = store_path("convnet-s")
    path.parent.mkdir(parents=True)
    save_file(stored, str(path))
    assert locate_pretrained("convnet-s")["path"] == str(path)
    experiment = Experiment(config(pretrained=True, degrade="gray"), tmp_path / "run")
    source = experiment.initial_weights["student"]
    assert source["source"] == "file" and len(source["sha256"]) == 64
    model, _ = experiment.initial_model(get_method("b"))
    file = load_file(str(path))
    assert all(torch.equal(model.state_dict()[k], file[k]) for k in file if not k.startswith("classifier."))
    path.unlink()
    with pytest.raises(Exception, match="convnet-s has no pretrained weights"):
        Experiment(config(pretrained=True, degrade="gray"), tmp_path / "other")


def test_config_json_records_the_matconvnet_file_the_stored_weights_were_converted_from(tmp_path, register_plugin):
    register_plugin(TinyVggm(), name="tiny-vggm")
    mat = save_network(tmp_path / "imagenet-vgg-m.mat", vggm_layers(random_weights(0)), "old",
                       AVERAGE + np.random.default_rng(0).normal(0, 10, (224, 224, 3)))
    convert_file(mat, "tiny-vggm", store_path("tiny-vggm"))
    experiment = Experiment(config(pretrained=True, teacher="tiny-vggm", student="tiny-vggm", degrade="gray"),
                            tmp_path / "run")
    recorded = json.loads(json.dumps(experiment.describe()))["initial_weights"]["teacher"]
    assert recorded["matconvnet"] == {"source": str(mat), "sha256": hashlib.sha256(mat.read_bytes()).hexdigest()}
    model, _ = experiment.initial_model(get_method("a"))
    assert model.average_image.residual.shape == (3, 224, 224)  # the average image, subtracted pixel by pixel
    trained = experiment.train_or_load("b")  # model.json says the network subtracts it itself
    described = json.loads((trained.directory / "model.json").read_text())["average_image"]
    assert described["size"] == [224, 224] and described["spatial"] is True
