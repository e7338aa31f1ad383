"""LSUV initialisation (--init): unit output variance layer by layer, reproducible, applied where the rule says."""

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from cqdkit.errors import TrainingError
from cqdkit.models.lsuv import TOLERANCE, lsuv_init, weight_layers
from cqdkit.train.config import RunConfig
from cqdkit.train.engine import is_deep_plain
from cqdkit.train.experiment import Experiment
from cqdkit.train.methods import get_method


def plain_net(depth: int, width: int = 8) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 5))


def output_stds(model: nn.Module, inputs: torch.Tensor) -> list[float]:
    stds = []
    hooks = [layer.register_forward_hook(lambda m, a, out: stds.append(float(out.std())))
             for _, layer in weight_layers(model)]
    with torch.no_grad():
        model(inputs)
    for hook in hooks:
        hook.remove()
    return stds


@settings(max_examples=15, deadline=None)
@given(depth=st.integers(2, 12), scale=st.floats(0.01, 100.0), seed=st.integers(0, 2**16))
def test_every_layer_outputs_unit_variance_on_the_batch_whatever_the_input_scale(depth, scale, seed):
    torch.manual_seed(seed)
    model, inputs = plain_net(depth), scale * torch.randn(16, 3, 12, 12)
    lsuv_init(model, inputs)
    assert all(abs(s - 1) < TOLERANCE for s in output_stds(model, inputs))


def test_only_the_weights_scale_each_layer_by_one_factor_and_the_same_start_gives_the_same_result():
    inputs = torch.randn(8, 3, 12, 12)
    torch.manual_seed(3)
    before = plain_net(5)
    results = []
    for _ in range(2):
        model = plain_net(5)
        model.load_state_dict(before.state_dict())
        lsuv_init(model, inputs)
        results.append(model.state_dict())
    assert all(torch.equal(results[0][key], results[1][key]) for key in results[0])
    for name, layer in weight_layers(before):
        scaled = results[0][f"{name}.weight"]
        factor = (scaled / layer.weight).flatten()
        assert torch.allclose(factor, factor[0].expand_as(factor), rtol=1e-4) and factor[0] > 0
        assert torch.equal(results[0][f"{name}.bias"], layer.bias)
    assert model.training  # the mode it was in


def test_a_batch_that_gives_no_variance_to_scale_is_a_clear_error():
    without_bias = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.Flatten(), nn.Linear(400, 2))
    with pytest.raises(TrainingError, match=r"layer '0' on the batch has standard deviation 0.0; it needs varied"):
        lsuv_init(without_bias, torch.zeros(4, 3, 12, 12))
    with pytest.raises(TrainingError, match=r"layer '0' on the batch has standard deviation nan"):
        lsuv_init(plain_net(3), torch.full((4, 3, 12, 12), float("nan")))


def test_the_auto_rule_takes_deep_networks_without_normalisation_only():
    assert is_deep_plain(plain_net(11)) and not is_deep_plain(plain_net(10))
    normalised = nn.Sequential(plain_net(12), nn.BatchNorm1d(5))
    assert not is_deep_plain(normalised)


TINY = dict(dataset_options={"classes": 3, "train_per_class": 8, "test_per_class": 2, "image_size": 32},
            image_size=32, batch_size=8, epochs=1, teacher="convnet-s", student="convnet-s", device="cpu")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cqdkit-cache"))


def initial_teacher(tmp_path, init):
    experiment = Experiment(RunConfig(**TINY, init=init), tmp_path / init)
    model, normalizer = experiment.initial_model(get_method("a"))
    return experiment, model, normalizer


def test_init_lsuv_starts_the_experiments_teacher_at_unit_variance_on_its_training_x(tmp_path):
    lsuv, model, normalizer = initial_teacher(tmp_path, "lsuv")
    images = torch.stack([lsuv.train_set[i].x for i in range(len(lsuv.train_set))])
    stds = output_stds(model.eval(), normalizer(images))
    assert all(abs(s - 1) < 2 * TOLERANCE for s in stds[:-1])  # 24 images here, 24 in LSUV's batch
    random, other, _ = initial_teacher(tmp_path, "random")
    assert lsuv.teacher_key() != random.teacher_key()  # a teacher of another init is another teacher
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    auto, same, _ = initial_teacher(tmp_path, "auto")  # convnet-s has batch norm: auto keeps its own init
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), other.state_dict().values()))


def test_an_unknown_init_is_refused():
    with pytest.raises(Exception, match=r"--init must be one of auto, lsuv, random, got 'xavier'"):
        RunConfig(**TINY, init="xavier").resolved()


def test_probes_of_speed_and_layer_shapes_never_run_lsuv(tmp_path, monkeypatch):
    import cqdkit.models.lsuv as lsuv
    from cqdkit.train.probe import estimate_training

    def refuse(*args, **kwargs):
        raise AssertionError("a probe ran LSUV")

    experiment = Experiment(RunConfig(**TINY, init="lsuv"), tmp_path)
    monkeypatch.setattr(lsuv, "lsuv_init", refuse)
    assert experiment._layers("a").names  # the layer-shape probe
    assert estimate_training(experiment, ["a", "b"])["seconds"] > 0
    with pytest.raises(AssertionError, match="a probe ran LSUV"):  # while a training's init does
        experiment.initial_model(get_method("a"))
