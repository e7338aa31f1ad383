"""Loading and saving weights: safetensors round trip, safe .pth loading, head mismatch, bad files."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from cqdkit.errors import DataError
from cqdkit.models import load_weights, read_state_dict, save_weights
from cqdkit.models.convnet import ConvNet
from cqdkit.files import OWNED_LIST


def small(num_classes: int = 10, seed: int = 0) -> ConvNet:
    torch.manual_seed(seed)
    return ConvNet((4, 8), num_classes=num_classes)


def assert_same_weights(a: nn.Module, b: nn.Module, *, skip: tuple[str, ...] = ()) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if not key.startswith(skip):
            assert torch.equal(sa[key], sb[key]), key


def test_safetensors_round_trip(tmp_path: Path) -> None:
    source, target = small(seed=0), small(seed=1)
    source.features[1].running_mean.fill_(0.25)  # buffers travel too
    path = save_weights(source, tmp_path / "sub" / "model.safetensors")
    assert path.is_file() and [p.name for p in path.parent.iterdir() if p.name != OWNED_LIST] == ["model.safetensors"]  # no temp left
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = load_weights(target, path, strict=True)
    assert_same_weights(source, target)
    assert report.loaded == sorted(source.state_dict()) and not (report.skipped or report.missing)


def test_save_replaces_atomically_and_keeps_the_old_file_on_failure(tmp_path: Path, monkeypatch) -> None:
    path = save_weights(small(seed=0), tmp_path / "model.safetensors")
    before = path.read_bytes()
    import safetensors.torch

    def broken(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_weights(small(seed=1), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name != OWNED_LIST] == ["model.safetensors"]


def test_save_needs_a_safetensors_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"\.safetensors.*model\.pth"):
        save_weights(small(), tmp_path / "model.pth")


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module-prefix"])
def test_pth_files_load_with_weights_only(tmp_path: Path, wrap: str) -> None:
    source, target = small(seed=0), small(seed=1)
    state = source.state_dict()
    payload = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state, "optimizer": {}},
        "module-prefix": {f"module.{k}": v for k, v in state.items()},
    }[wrap]
    torch.save(payload, tmp_path / "model.pth")
    load_weights(target, tmp_path / "model.pth", strict=True)
    assert_same_weights(source, target)


class _Payload:
    """Unpickling this would run code: it creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    state = dict(small().state_dict())
    state["evil"] = _Payload(marker)
    torch.save(state, tmp_path / "evil.pt")
    with pytest.raises(DataError, match=r"evil\.pt.*refused.*pickled"):
        load_weights(small(), tmp_path / "evil.pt")
    assert not marker.exists()


def test_different_class_count_skips_the_classifier(tmp_path: Path) -> None:
    source, target = small(num_classes=10, seed=0), small(num_classes=5, seed=1)
    head_before = target.classifier.weight.detach().clone()
    save_weights(source, tmp_path / "teacher.safetensors")
    expected = r"teacher\.safetensors.*classifier\.bias, classifier\.weight.*class count"
    with pytest.warns(UserWarning, match=expected):
        report = load_weights(target, tmp_path / "teacher.safetensors")
    assert report.skipped == ["classifier.bias", "classifier.weight"]
    assert torch.equal(target.classifier.weight, head_before)
    assert_same_weights(source.features, target.features)


def test_different_class_count_is_an_error_when_strict(tmp_path: Path) -> None:
    save_weights(small(num_classes=10), tmp_path / "teacher.safetensors")
    with pytest.raises(DataError, match=r"classifier\.weight \(10, 8\) vs \(5, 8\)"):
        load_weights(small(num_classes=5), tmp_path / "teacher.safetensors", strict=True)


def test_another_architecture_is_an_error(tmp_path: Path) -> None:
    save_weights(ConvNet((6, 8), num_classes=10), tmp_path / "other.safetensors")
    with pytest.raises(DataError, match=r"other\.safetensors.*another shape.*features\.0\.weight"):
        load_weights(small(), tmp_path / "other.safetensors")


def test_file_without_a_matching_tensor_is_an_error(tmp_path: Path) -> None:
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "unrelated.pth")
    with pytest.raises(DataError, match="no tensor that matches"):
        load_weights(small(), tmp_path / "unrelated.pth")


def test_missing_tensors_warn_or_fail_when_strict(tmp_path: Path) -> None:
    state = {k: v for k, v in small().state_dict().items() if not k.startswith("features.4")}
    torch.save(state, tmp_path / "partial.pth")
    with pytest.warns(UserWarning, match=r"missing features\.4\.weight"):
        report = load_weights(small(), tmp_path / "partial.pth")
    assert "features.4.weight" in report.missing
    with pytest.raises(DataError, match=r"missing features\.4\.weight"):
        load_weights(small(), tmp_path / "partial.pth", strict=True)


@pytest.mark.parametrize("name", ["bad.safetensors", "bad.pth", "bad.pt"])
def test_corrupt_files_are_data_errors(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x00not a weights file" * 10)
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        load_weights(small(), path)


def test_truncated_safetensors_is_a_data_error(tmp_path: Path) -> None:
    path = save_weights(small(), tmp_path / "model.safetensors")
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"model\.safetensors.*not a valid safetensors"):
        read_state_dict(path)


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.safetensors.*does not exist"):
        load_weights(small(), tmp_path / "nope.safetensors")
    (tmp_path / "weights.npz").write_bytes(b"x")
    with pytest.raises(DataError, match=r"weights\.npz.*expected a \.safetensors, \.pth or \.pt"):
        load_weights(small(), tmp_path / "weights.npz")


def test_pth_holding_something_else_is_a_data_error(tmp_path: Path) -> None:
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(DataError, match="mapping of names to tensors"):
        load_weights(small(), tmp_path / "list.pth")


def test_head_of_a_model_without_config_is_its_last_linear_layer(tmp_path: Path) -> None:
    def plain(num_classes: int) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, num_classes))

    save_weights(plain(10), tmp_path / "plain.safetensors")
    with pytest.warns(UserWarning, match="class count"):
        report = load_weights(plain(3), tmp_path / "plain.safetensors")
    assert report.skipped == ["2.bias", "2.weight"]


def with_average_image() -> nn.Sequential:
    from cqdkit.models.preprocessing import AverageImage

    torch.manual_seed(0)
    return nn.Sequential(AverageImage(), nn.Conv2d(3, 4, 3))


def test_an_average_image_loads_whatever_its_size_and_weights_without_one_clear_it(tmp_path: Path) -> None:
    source = with_average_image()
    source[0].residual = torch.arange(75.0).view(3, 5, 5)
    with_image = save_weights(source, tmp_path / "with.safetensors")
    model = with_average_image()
    load_weights(model, with_image, strict=True)
    assert torch.equal(model[0].residual, source[0].residual)
    assert torch.equal(model[0](torch.zeros(1, 3, 5, 5)), -source[0].residual[None])
    without = tmp_path / "without.safetensors"
    from safetensors.torch import save_file

    save_file({k: v for k, v in source.state_dict().items() if not k.startswith("0.")}, str(without))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = load_weights(model, without, strict=True)
    assert report.missing == [] and model[0].residual.numel() == 0  # nothing to subtract any more


def test_a_checkpoint_from_before_average_images_loads_strictly() -> None:
    model = with_average_image()
    old = {k: v for k, v in model.state_dict().items() if k != "0.residual"}
    model.load_state_dict(old, strict=True)
    with pytest.raises(RuntimeError, match=r"0\.residual: expected an empty tensor or a 3 x H x W image"):
        model.load_state_dict({**old, "0.residual": torch.zeros(4, 4)}, strict=True)
