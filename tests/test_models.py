"""Backbones: VGG-M's architecture, the ConvNet family, timm resolution through the plugin manager."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from cqdkit.errors import CqdkitError, SpecError, UnknownNameError
from cqdkit.models import create_backbone, model_input_config
from cqdkit.models.vggm import VGGM
from cqdkit.plugin import Backbone, BackboneCatalog, PluginManager, hookimpl

IMAGENET_MEAN = (0.485, 0.456, 0.406)


@pytest.fixture(scope="module")
def pm() -> PluginManager:
    return PluginManager(autoload=False)


@pytest.fixture(scope="module")
def vggm10(pm: PluginManager) -> nn.Module:
    torch.manual_seed(0)
    return create_backbone("vggm", num_classes=10, manager=pm).eval()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- VGG-M -------------------------------------------------------------------------------------------


def test_vggm_has_the_papers_parameter_count(pm: PluginManager) -> None:
    with torch.device("meta"):  # no memory, no initialisation
        model = create_backbone("vggm", num_classes=1000, manager=pm)
    assert n_params(model) == 102_908_520


def test_vggm_layers(vggm10: nn.Module) -> None:
    convs = [m for m in vggm10.features if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (96, (7, 7), (2, 2), (0, 0)),
        (256, (5, 5), (2, 2), (1, 1)),
        (512, (3, 3), (1, 1), (1, 1)),
        (512, (3, 3), (1, 1), (1, 1)),
        (512, (3, 3), (1, 1), (1, 1)),
    ]
    linears = [m for m in vggm10.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512 * 36, 4096), (4096, 4096), (4096, 10)]
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in vggm10.modules()) == 2


def test_vggm_at_224_pools_to_6x6_without_resampling(vggm10: nn.Module) -> None:
    seen = {}
    handle = vggm10.pool.register_forward_hook(lambda m, i, o: seen.update(before=i[0], after=o))
    with torch.no_grad():
        out = vggm10(torch.randn(1, 3, 224, 224))
    handle.remove()
    assert out.shape == (1, 10)
    assert seen["before"].shape == (1, 512, 6, 6)
    assert torch.equal(seen["before"], seen["after"])  # the adaptive pool is the identity at 224


@pytest.mark.parametrize("size", [19, 32, 64, 100])
def test_vggm_runs_on_small_inputs(vggm10: nn.Module, size: int) -> None:
    with torch.no_grad():
        out = vggm10(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_vggm_from_scratch_keeps_the_signals_scale() -> None:
    """Without batch norm, a from-scratch vggm learns only if its initialisation carries a unit-scale input
    through all eight layers at about unit scale (PyTorch's default init shrinks it about 100x: chance)."""
    torch.manual_seed(0)
    model = VGGM(num_classes=12).eval()
    with torch.no_grad():
        features = model.fc(model.pool(model.features(torch.randn(4, 3, 48, 48))))
    rms = float(features.square().mean().sqrt())
    assert 0.1 < rms < 10, rms


def test_vggm_too_small_input_is_a_clear_error(vggm10: nn.Module) -> None:
    with pytest.raises(CqdkitError, match="at least 19x19 pixels, got 18x18"):
        vggm10(torch.zeros(1, 3, 18, 18))


def test_vggm_lrn_matches_matconvnet_parameters(vggm10: nn.Module) -> None:
    """torch's alpha=5e-4 over a 5-channel window equals MatConvNet's [5 2 1e-4 0.75]."""
    lrn = vggm10.features[2]
    x = 10 * torch.rand(1, 8, 3, 3)
    squares = torch.nn.functional.pad(x.square(), (0, 0, 0, 0, 2, 2))  # zero channels on both sides
    window = sum(squares[:, i : i + 8] for i in range(5))
    expected = x / (2.0 + 1e-4 * window) ** 0.75
    torch.testing.assert_close(lrn(x), expected)


def test_vggm_extra_input_channels(pm: PluginManager) -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = create_backbone("vggm", num_classes=3, in_chans=4, manager=pm).eval()
        assert model(torch.empty(1, 4, 32, 32)).shape == (1, 3)
        assert model(torch.empty(1, 4, 224, 224)).shape == (1, 3)
    assert model_input_config(model).mean == (*IMAGENET_MEAN, 0.5)


def test_vggm_pretrained_explains_how_to_load_weights(pm: PluginManager) -> None:
    with pytest.raises(CqdkitError, match="--student-weights PATH"):
        create_backbone("vggm", num_classes=10, pretrained=True, manager=pm)


# -- ConvNet-S / ConvNet-M ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "low", "high"), [("convnet-s", 5e4, 2e5), ("convnet-m", 3e5, 6e5)])
@pytest.mark.parametrize("in_chans", [1, 4])
def test_convnets(pm: PluginManager, name: str, low: float, high: float, in_chans: int) -> None:
    model = create_backbone(name, num_classes=7, in_chans=in_chans, manager=pm).eval()
    assert low < n_params(model) < high
    with torch.no_grad():
        for size in (8, 32, 64):
            assert model(torch.randn(2, in_chans, size, size)).shape == (2, 7)
    assert len(model_input_config(model).mean) == in_chans


def test_convnet_m_is_the_bigger_teacher(pm: PluginManager) -> None:
    small = create_backbone("convnet-s", num_classes=10, manager=pm)
    big = create_backbone("convnet-m", num_classes=10, manager=pm)
    assert n_params(big) > 3 * n_params(small)


def test_convnet_pretrained_is_an_error(pm: PluginManager) -> None:
    with pytest.raises(CqdkitError, match="no pretrained weights"):
        create_backbone("convnet-s", num_classes=10, pretrained=True, manager=pm)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_class_count_is_a_spec_error(pm: PluginManager, bad) -> None:
    with pytest.raises(SpecError, match="num_classes must be a positive integer"):
        create_backbone("convnet-s", num_classes=bad, manager=pm)


# -- timm through the plugin manager --------------------------------------------------------------


def test_timm_model_by_name(pm: PluginManager) -> None:
    model = create_backbone("test_resnet", num_classes=5, in_chans=4, manager=pm).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 4, 64, 64)).shape == (2, 5)
    assert model.get_classifier().out_features == 5


def test_timm_name_with_pretrained_tag_resolves(pm: PluginManager) -> None:
    assert pm.backbone("resnet18.a1_in1k").name == "resnet18.a1_in1k"
    with pytest.raises(UnknownNameError, match="resnet18"):
        pm.backbone("resnet18.no_such_tag")


def test_input_config_of_a_timm_model_is_timms(pm: PluginManager) -> None:
    import timm.data

    model = create_backbone("resnet18.a1_in1k", num_classes=3, manager=pm)
    expected = timm.data.resolve_model_data_config(model)
    config = model_input_config(model)
    assert config.mean == tuple(expected["mean"]) and config.std == tuple(expected["std"])
    assert config.interpolation == expected["interpolation"] == "bicubic"


def test_unknown_name_suggests_close_matches(pm: PluginManager) -> None:
    with pytest.raises(UnknownNameError) as caught:
        pm.backbone("vggn")
    assert "vggm" in caught.value.matches
    with pytest.raises(UnknownNameError, match="did you mean.*'resnet18'"):
        pm.backbone("resnet81")


def test_cqdkit_names_resolve_without_asking_timm(pm: PluginManager, monkeypatch) -> None:
    import cqdkit.models.timm_catalog as catalog

    def fail(name: str) -> bool:
        raise AssertionError(f"timm was asked about {name!r}")

    monkeypatch.setattr(catalog, "contains", fail)
    for name in ("vggm", "convnet-s", "convnet-m"):
        assert pm.backbone(name).name == name


def test_cqdkit_names_win_over_a_catalog_that_claims_them() -> None:
    class Greedy:
        @hookimpl
        def cqdkit_backbones(self):
            yield BackboneCatalog(
                name="greedy", summary="claims every name", contains=lambda name: True,
                list_names=lambda pattern: [], factory=lambda name, **kw: nn.Identity(),
            )

    manager = PluginManager(autoload=False)
    manager.register(Greedy(), name="greedy")
    entry = manager.backbone("vggm")
    assert isinstance(entry, Backbone) and entry.summary.startswith("VGG-M")


def test_timm_without_pretrained_weights_is_a_clear_error(pm: PluginManager) -> None:
    with pytest.raises(CqdkitError, match="timm has no pretrained weights for 'darknet17'"):
        create_backbone("darknet17", num_classes=3, pretrained=True, manager=pm)


def test_pretrained_offline_is_a_clear_error(pm: PluginManager, monkeypatch) -> None:
    import timm.models._builder as builder

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(builder, "load_state_dict_from_hf", offline)
    monkeypatch.setattr(builder, "load_state_dict_from_url", offline)
    with pytest.raises(CqdkitError, match=r"could not be fetched.*--teacher-weights PATH"):
        create_backbone("test_resnet", num_classes=3, pretrained=True, manager=pm)


def test_plugin_module_imports_neither_torch_nor_timm() -> None:
    code = (
        "import sys, cqdkit.models.plugin, cqdkit.models\n"
        "from cqdkit.plugin import PluginManager\n"
        "pm = PluginManager(autoload=False); pm.backbone('vggm'); pm.entries('backbone')\n"
        "print('torch' in sys.modules, 'timm' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False False"


def test_vggm_class_is_exported() -> None:
    import cqdkit.models

    assert cqdkit.models.VGGM is VGGM
