"""MatConvNet weights: files of both layouts, converted for vggm and timm's vgg16, compute what MatConvNet does.

The real networks are 100M+ parameters, so the numerical tests use the real modules (cqdkit's VGGM, timm's
VGG) with narrower convolutions and linear layers (:func:`tiny`), and files that follow the real layer
sequence with those widths. The reference forward pass below is written from MatConvNet's documented
formulas (vl_nnconv, vl_nnnormalize, vl_nnpool) on H x W x C arrays, independently of the converter. The
real widths are checked for shapes and geometry on the meta device (no memory for weights).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from numpy.lib.stride_tricks import sliding_window_view
from safetensors.torch import load_file, save_file
from scipy.io import savemat
from torch import nn

from cqdkit.cli import cli
from cqdkit.errors import CqdkitError, DataError
from cqdkit.models import create_backbone, load_weights, model_input_config
from cqdkit.models.matconvnet import MatConvNet, MatLayer, convert, read_matconvnet, skeleton
from cqdkit.models.preprocessing import AverageImage
from cqdkit.plugin import Backbone, hookimpl
from cqdkit.train.engine import Normalizer
from cqdkit.files import OWNED_LIST

Layer = dict
Make = Callable[[tuple[int, ...]], np.ndarray]

LRN = (5, 2, 1e-4, 0.75)  # Chatfield's vgg-m, MatConvNet convention
AVERAGE = np.array([123.68, 116.779, 103.939])
TINY_VGGM = (4, 8, 8, 8, 8, 16, 16)  # conv1-5, fc6, fc7 (real: 96, 256, 512, 512, 512, 4096, 4096)
TINY_VGG16 = (4, 4, 4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 16, 16)  # 13 convs, fc6, fc7
REAL_VGGM = (96, 256, 512, 512, 512, 4096, 4096)
REAL_VGG16 = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512, 4096, 4096)


# -- networks as MatConvNet describes them ---------------------------------------------------------------


def random_weights(seed: int) -> Make:
    rng = np.random.default_rng(seed)
    return lambda shape: (rng.standard_normal(shape) * math.sqrt(2 / math.prod(shape[:-1]))).astype(np.float32)


def conv(make: Make, name: str, size: int, cin: int, cout: int, stride: int = 1, pad: int = 0) -> Layer:
    return {"name": name, "type": "conv", "filters": make((size, size, cin, cout)), "biases": make((1, cout))[0],
            "stride": (stride, stride), "pad": (pad,) * 4}


def pool(name: str, size: int, stride: int, pad: tuple[int, int, int, int]) -> Layer:
    return {"name": name, "type": "pool", "method": "max", "pool": (size, size), "stride": (stride, stride), "pad": pad}


def simple(name: str, kind: str, **fields) -> Layer:
    return {"name": name, "type": kind, **fields}


def vggm_layers(make: Make, widths: tuple[int, ...] = TINY_VGGM, classes: int = 10) -> list[Layer]:
    """imagenet-vgg-m.mat's layer sequence; pool pads as MatConvNet's Caffe importer sets them at 224."""
    c1, c2, c3, c4, c5, f6, f7 = widths
    return [
        conv(make, "conv1", 7, 3, c1, stride=2), simple("relu1", "relu"), simple("norm1", "lrn", param=LRN),
        pool("pool1", 3, 2, (0, 0, 0, 0)),
        conv(make, "conv2", 5, c1, c2, stride=2, pad=1), simple("relu2", "relu"), simple("norm2", "lrn", param=LRN),
        pool("pool2", 3, 2, (0, 1, 0, 1)),
        conv(make, "conv3", 3, c2, c3, pad=1), simple("relu3", "relu"),
        conv(make, "conv4", 3, c3, c4, pad=1), simple("relu4", "relu"),
        conv(make, "conv5", 3, c4, c5, pad=1), simple("relu5", "relu"), pool("pool5", 3, 2, (0, 0, 0, 0)),
        conv(make, "fc6", 6, c5, f6), simple("relu6", "relu"), simple("drop6", "dropout"),
        conv(make, "fc7", 1, f6, f7), simple("relu7", "relu"), simple("drop7", "dropout"),
        conv(make, "fc8", 1, f7, classes), simple("prob", "softmax"),
    ]


def vgg16_layers(make: Make, widths: tuple[int, ...] = TINY_VGG16, classes: int = 10) -> list[Layer]:
    """imagenet-vgg-verydeep-16.mat's layer sequence."""
    layers, cin, convs = [], 3, iter(widths[:13])
    for block, count in enumerate((2, 2, 3, 3, 3), start=1):
        for i in range(1, count + 1):
            cout = next(convs)
            layers += [conv(make, f"conv{block}_{i}", 3, cin, cout, pad=1), simple(f"relu{block}_{i}", "relu")]
            cin = cout
        layers.append(pool(f"pool{block}", 2, 2, (0, 0, 0, 0)))
    f6, f7 = widths[13:]
    return layers + [
        conv(make, "fc6", 7, cin, f6), simple("relu6", "relu"),
        conv(make, "fc7", 1, f6, f7), simple("relu7", "relu"),
        conv(make, "fc8", 1, f7, classes), simple("prob", "softmax"),
    ]


def save_network(path: Path, layers: list[Layer], layout: str, average: np.ndarray,
                 image_size: tuple[int, int] = (224, 224), variables: int | None = None) -> Path:
    """Write ``layers`` as MatConvNet would: ``old`` (filters/biases, 'normalize', top-level normalization,
    full [t b l r] vectors) or ``simplenn`` (weights cells, 'lrn', meta, scalar stride/pad where they can be);
    only the first ``variables`` variables when given (a file cut between two)."""
    cells = np.empty((1, len(layers)), dtype=object)
    for i, layer in enumerate(layers):
        cells[0, i] = _matlab_layer(layer, layout)
    classes = int(next(layer["filters"].shape[3] for layer in reversed(layers) if layer["type"] == "conv"))
    names = np.empty((1, classes), dtype=object)
    names[0, :] = [f"class {i}" for i in range(classes)]
    normalization = {"averageImage": np.asarray(average, np.float32), "imageSize": np.array([[*image_size, 3.0]]),
                     "interpolation": "bilinear", "keepAspect": 1.0}
    if layout == "old":
        contents = {"layers": cells, "normalization": normalization, "classes": {"description": names}}
    else:
        meta = {"normalization": normalization, "classes": {"description": names}, "inputs": {"name": "input"}}
        contents = {"layers": cells, "meta": meta}
    savemat(path, dict(list(contents.items())[:variables]))
    return path


def _matlab_layer(layer: Layer, layout: str) -> dict:
    out = {key: value for key, value in layer.items() if key not in ("filters", "biases", "param")}
    for key in ("stride", "pad", "pool"):
        if key in layer:
            values = np.array(layer[key], dtype=float)
            out[key] = values[:1] if layout == "simplenn" and np.all(values == values[0]) else values.reshape(1, -1)
    if layer["type"] == "conv":
        filters, biases = layer["filters"], layer["biases"].reshape(1, -1)
        if layout == "old":
            out.update(filters=filters, biases=biases)
        else:
            weights = np.empty((1, 2), dtype=object)
            weights[0, 0], weights[0, 1] = filters, biases
            out.update(weights=weights, size=np.array(filters.shape, float), dilate=1.0, opts=np.empty((0, 0)))
    if layer["type"] == "lrn":
        out.update(type="normalize" if layout == "old" else "lrn", param=np.array(layer["param"], float))
    return out


# -- MatConvNet's forward pass, from its documentation ---------------------------------------------------


def reference_logits(layers: list[Layer], average: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Class scores of MatConvNet's ``vl_simplenn`` (test mode) for an H x W x 3 uint8 RGB ``image``."""
    average = np.asarray(average, np.float64)
    x = image.astype(np.float64) - (average.reshape(1, 1, 3) if average.size == 3 else average)
    for layer in layers:
        kind = layer["type"]
        if kind == "conv":
            x = _conv(x, layer)
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "lrn":
            x = _lrn(x, *layer["param"])
        elif kind == "pool":
            x = _pool(x, layer)
        elif kind == "softmax":
            break  # the logits are its input
        else:
            assert kind == "dropout"  # the identity at test time
    return x.reshape(-1)


def _conv(x: np.ndarray, layer: Layer) -> np.ndarray:
    """y(i,j,o) = b(o) + sum_{u,v,c} f(u,v,c,o) x(sy*i + u - top, sx*j + v - left, c), zero padding."""
    top, bottom, left, right = layer["pad"]
    filters = layer["filters"].astype(np.float64)
    x = np.pad(x, ((top, bottom), (left, right), (0, 0)))
    windows = sliding_window_view(x, filters.shape[:2], axis=(0, 1))[::layer["stride"][0], ::layer["stride"][1]]
    return np.einsum("ijcuv,uvco->ijo", windows, filters) + layer["biases"]


def _pool(x: np.ndarray, layer: Layer) -> np.ndarray:
    """Max over each window clipped to the map; floor((H + top + bottom - pool) / stride) + 1 outputs."""
    top, bottom, left, right = layer["pad"]
    x = np.pad(x, ((top, bottom), (left, right), (0, 0)), constant_values=-np.inf)
    windows = sliding_window_view(x, layer["pool"], axis=(0, 1))[::layer["stride"][0], ::layer["stride"][1]]
    return windows.max(axis=(3, 4))


def _lrn(x: np.ndarray, n: float, kappa: float, alpha: float, beta: float) -> np.ndarray:
    """y_k = x_k / (kappa + alpha * sum_{q in Q(k)} x_q^2)^beta, Q(k) = [k - floor((n-1)/2), k + ceil((n-1)/2)]."""
    out = np.empty_like(x)
    for k in range(x.shape[2]):
        low, high = max(0, k - math.floor((n - 1) / 2)), min(x.shape[2], k + math.ceil((n - 1) / 2) + 1)
        out[..., k] = x[..., k] / (kappa + alpha * (x[..., low:high] ** 2).sum(axis=2)) ** beta
    return out


# -- torch side ------------------------------------------------------------------------------------------


def tiny(arch: str, widths: tuple[int, ...], num_classes: int = 10) -> nn.Module:
    """Backbone ``arch`` (its own module classes, in its own order) with the given widths for its convolutions
    and linear layers, in order; the classifier keeps ``num_classes``."""
    with torch.device("meta"):
        model = create_backbone(arch, num_classes=num_classes)
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == len(widths) + 1
    channels = old_channels = 3
    for (name, layer), width in zip(layers, [*widths, num_classes]):
        if isinstance(layer, nn.Conv2d):
            new: nn.Module = nn.Conv2d(channels, width, layer.kernel_size, layer.stride, layer.padding)
            old_channels = layer.out_channels
        else:
            new = nn.Linear(channels * (layer.in_features // old_channels), width)
            old_channels = layer.out_features
        parent, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent), attribute, new)
        channels = width
    for module in model.modules():
        if isinstance(module, AverageImage):
            module.residual = torch.zeros(0)  # off the meta device
    return model.eval()


def torch_logits(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """Logits of uint8 N x H x W x 3 images through cqdkit's preprocessing of ``model``."""
    config = model_input_config(model)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2)
    with torch.no_grad():
        return model(Normalizer(config.mean, config.std)(batch)).double().numpy()


def images(count: int = 3, size: int = 224, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def largest_difference(logits: np.ndarray, batch: np.ndarray, layers: list[Layer], average: np.ndarray) -> float:
    """The largest logit difference from the reference, relative to the reference's largest logit."""
    worst = 0.0
    for ours, image in zip(logits, batch):
        expected = reference_logits(layers, average, image)
        scale = np.abs(expected).max()
        assert scale > 1e-3
        worst = max(worst, float(np.abs(ours - expected).max() / scale))
    return worst


def assert_matches_reference(model: nn.Module, layers: list[Layer], average: np.ndarray) -> None:
    batch = images()
    assert largest_difference(torch_logits(model, batch), batch, layers, average) < 1e-4


def varying_average(seed: int = 2) -> np.ndarray:
    """A 224 x 224 x 3 average image that varies over the image, as imagenet-vgg-m.mat's does: a smooth
    gradient plus noise around the ImageNet means, float32 as the file stores it."""
    rows, cols = np.meshgrid(np.linspace(-1, 1, 224), np.linspace(-1, 1, 224), indexing="ij")
    smooth = 25 * np.stack([rows, cols, rows * cols], axis=2)
    noise = np.random.default_rng(seed).normal(0, 15, (224, 224, 3))
    return (AVERAGE + smooth + noise).astype(np.float32).astype(np.float64)


# -- converted networks compute what MatConvNet computes -------------------------------------------------


@pytest.mark.parametrize("layout", ["old", "simplenn"])
@pytest.mark.parametrize("average", ["per-channel", "constant image", "varying image"])
def test_converted_vggm_computes_what_matconvnet_does(tmp_path, layout, average):
    layers = vggm_layers(random_weights(0))
    image = {"per-channel": AVERAGE.reshape(1, 1, 3), "constant image": np.broadcast_to(AVERAGE, (224, 224, 3)),
             "varying image": varying_average()}[average]
    path = save_network(tmp_path / "vgg-m.mat", layers, layout, image)
    model = tiny("vggm", TINY_VGGM)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = load_weights(model, path, strict=True)
    spatial = average != "per-channel"
    assert report.loaded == sorted(k for k in model.state_dict() if spatial or k != "average_image.residual")
    assert tuple(model.average_image.residual.shape) == ((3, 224, 224) if spatial else (0,))
    config = model_input_config(model)
    mean = np.float32(image).mean(axis=(0, 1), dtype=np.float64) / 255
    assert config.mean == pytest.approx(tuple(mean)) and config.std == (1 / 255,) * 3
    assert_matches_reference(model, layers, image)


def test_a_varying_average_image_is_subtracted_pixel_by_pixel_not_as_its_mean(tmp_path):
    """The full image matches MatConvNet to 1e-4; its per-channel mean (what cqdkit did before) does not."""
    layers, average = vggm_layers(random_weights(0)), varying_average()
    model = tiny("vggm", TINY_VGGM)
    load_weights(model, save_network(tmp_path / "vgg-m.mat", layers, "simplenn", average), strict=True)
    batch = images()
    assert largest_difference(torch_logits(model, batch), batch, layers, average) < 1e-4
    model.average_image.residual = torch.zeros(0)  # the per-channel mean only
    assert largest_difference(torch_logits(model, batch), batch, layers, average) > 1e-2


def bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """C x H x W ``image`` resized by bilinear interpolation between pixel centres (edges clamped)."""
    def taps(size: int, new: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        where = np.maximum((np.arange(new) + 0.5) * size / new - 0.5, 0)
        low = np.minimum(np.floor(where).astype(int), size - 1)
        return low, np.minimum(low + 1, size - 1), where - low

    top, bottom, dy = taps(image.shape[1], height)
    left, right, dx = taps(image.shape[2], width)
    rows = image[:, top] * (1 - dy)[:, None] + image[:, bottom] * dy[:, None]
    return rows[:, :, left] * (1 - dx) + rows[:, :, right] * dx


def test_at_another_input_size_the_average_image_is_resized_bilinearly(tmp_path):
    average = varying_average()
    model = tiny("vggm", TINY_VGGM)
    load_weights(model, save_network(tmp_path / "n.mat", vggm_layers(random_weights(0)), "old", average))
    residual = (average - np.float32(average).mean(axis=(0, 1), dtype=np.float64)).transpose(2, 0, 1)
    for height, width in ((224, 224), (100, 160)):
        x = torch.rand(2, 3, height, width, dtype=torch.float64).float() * 255
        with torch.no_grad():
            out = model.average_image(x).double().numpy()
        expected = x.double().numpy() - bilinear(residual, height, width)
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-3)


def test_converted_vgg16_computes_what_matconvnet_does(tmp_path):
    layers = vgg16_layers(random_weights(1))
    path = save_network(tmp_path / "vgg16.mat", layers, "simplenn", AVERAGE.reshape(1, 1, 3))
    model = tiny("vgg16", TINY_VGG16)
    load_weights(model, path, strict=True)
    assert_matches_reference(model, layers, AVERAGE)


def test_a_model_without_an_average_image_layer_gets_the_per_channel_mean_with_a_warning(tmp_path):
    average = varying_average()
    net = read_matconvnet(save_network(tmp_path / "n.mat", vgg16_layers(random_weights(1)), "old", average))
    assert net.spatial and net.average == pytest.approx(tuple(average.mean(axis=(0, 1))), rel=1e-6)
    with pytest.warns(UserWarning, match=r"'.*n.mat': VGG has no AverageImage input layer, so the file's 224x224x3 "
                                         r"average image is reduced to its per-channel mean"):
        conversion = convert(net, tiny("vgg16", TINY_VGG16))
    assert conversion.mean == pytest.approx(tuple(v / 255 for v in net.average))
    assert conversion.average_image == {"size": [224, 224], "spatial": False}
    assert not any("average" in key for key in conversion.state_dict)


def test_load_weights_keeps_the_features_of_a_file_with_another_class_count(tmp_path):
    layers = vggm_layers(random_weights(0), classes=10)
    path = save_network(tmp_path / "vgg-m.mat", layers, "simplenn", AVERAGE.reshape(1, 1, 3))
    model = tiny("vggm", TINY_VGGM, num_classes=5)
    with pytest.warns(UserWarning, match=r"classifier tensors classifier\.bias, classifier\.weight"):
        report = load_weights(model, path)
    assert report.skipped == ["classifier.bias", "classifier.weight"]
    assert torch.equal(model.features[0].weight, torch.from_numpy(layers[0]["filters"]).permute(3, 2, 0, 1))
    assert model_input_config(model).std == (1 / 255,) * 3


# -- the real networks' shapes and geometry --------------------------------------------------------------


def in_memory(layers: list[Layer], name: str) -> MatConvNet:
    """What read_matconvnet returns for a file of ``layers`` (without writing 100M zeros to disk)."""
    fields = ("filters", "biases", "stride", "pad", "pool", "method", "param")
    return MatConvNet(
        Path(name), "simplenn",
        tuple(MatLayer(i + 1, layer["name"], layer["type"], **{k: layer[k] for k in fields if k in layer})
              for i, layer in enumerate(layers)),
        AVERAGE.reshape(1, 1, 3), (224, 224),
    )


def zeros(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, np.float32)  # untouched pages: no memory


@pytest.mark.parametrize("arch, layers", [
    ("vggm", vggm_layers(zeros, REAL_VGGM, classes=1000)),
    ("vgg16", vgg16_layers(zeros, REAL_VGG16, classes=1000)),
], ids=["vggm", "vgg16"])
def test_the_real_networks_fit_the_real_backbones(arch, layers):
    model = skeleton(arch, 1000)
    state = convert(in_memory(layers, f"{arch}.mat"), model).state_dict
    own = {k: v.shape for k, v in model.state_dict().items() if k != "average_image.residual"}  # per-channel: none
    assert {k: v.shape for k, v in state.items()} == own


def test_the_real_vggm_geometry_is_checked_pool_by_pool():
    layers = vggm_layers(zeros, REAL_VGGM, classes=1000)
    layers[7]["pad"] = (0, 0, 0, 0)  # pool2 in floor mode: 12x12 instead of vggm's 13x13
    with pytest.raises(DataError, match=r"layer 8 'pool2' \(pool\) does not match VGGM's features\.7 .*"
                                        r"on its 26x26 input \(imageSize 224x224\).* gives 12x12, the model's 13x13"):
        convert(in_memory(layers, "vgg-m.mat"), skeleton("vggm", 1000))


# -- refusals ----------------------------------------------------------------------------------------------


def _set(index: int, **fields) -> Callable[[list[Layer]], None]:
    return lambda layers: layers[index].update(fields)


MISMATCHES = {
    "conv stride": (_set(4, stride=(1, 1)), r"layer 5 'conv2' \(conv\) does not match VGGM's features\.4 .*stride 1x1"),
    "filter size": (_set(8, filters=np.zeros((5, 5, 8, 8), np.float32)), r"layer 9 'conv3' .* 5x5x8x8 filters"),
    "asymmetric conv pad": (_set(4, pad=(1, 0, 1, 0)), r"layer 5 'conv2' .*pad \[1, 0, 1, 0\]"),
    "pool pad at the top": (_set(3, pad=(1, 0, 1, 0)), r"layer 4 'pool1' \(pool\) .*pad \[0 b 0 r\]"),
    "average pooling": (_set(14, method="avg"), r"layer 15 'pool5' .*the file's pool is avg"),
    "caffe's lrn alpha": (_set(2, param=(5, 2, 5e-4, 0.75)),
                          r"layer 3 'norm1' \(lrn\) .*LocalResponseNorm\(size=5, alpha=0\.0025, beta=0\.75, k=2\)"),
    "lrn kappa": (_set(6, param=(5, 1, 1e-4, 0.75)), r"layer 7 'norm2' \(lrn\) .*k=1\)"),
    "leaky relu": (_set(1, leak=0.1), r"layer 2 'relu1' \(relu\) .*leaks"),
    "another layer type": (_set(5, type="bnorm"), r"layer 6 'relu2' \(bnorm\) .*needs a MatConvNet 'relu' layer"),
    "fc6 smaller than the map": (_set(15, filters=np.zeros((3, 3, 8, 16), np.float32)),
                                 r"layer 16 'fc6' .*as large as its 6x6x8 input"),
    "a missing layer": (lambda layers: layers.pop(12), r"layer 13 'relu5' \(relu\) does not match VGGM's features\.12"),
    "an extra layer": (lambda layers: layers.insert(-1, simple("relu8", "relu")),
                       r"layer 23 'relu8' \(relu\) has no counterpart: VGGM ends before it"),
}


@pytest.mark.parametrize("change", MISMATCHES, ids=list(MISMATCHES))
def test_a_layer_that_differs_is_refused_by_name(tmp_path, change):
    mutate, message = MISMATCHES[change]
    layers = vggm_layers(random_weights(0))
    mutate(layers)
    path = save_network(tmp_path / "bad.mat", layers, "old", AVERAGE.reshape(1, 1, 3))
    with pytest.raises(DataError, match=f"MatConvNet file '.*bad.mat': {message}"):
        convert(read_matconvnet(path), tiny("vggm", TINY_VGGM))


def test_a_truncated_network_is_refused(tmp_path):
    path = save_network(tmp_path / "short.mat", vggm_layers(random_weights(0))[:15], "old", AVERAGE)
    with pytest.raises(DataError, match=r"'.*short.mat' ends before VGGM's layer fc\.1 \(Linear"):
        convert(read_matconvnet(path), tiny("vggm", TINY_VGGM))


def test_a_network_made_for_another_input_size_is_refused(tmp_path):
    path = save_network(tmp_path / "n.mat", vggm_layers(random_weights(0)), "old", AVERAGE, image_size=(256, 256))
    with pytest.raises(DataError, match=r"VGGM's pool \(AdaptiveAvgPool2d.*\) is not the identity on the 7x7 map "
                                        r"it gets at the file's imageSize 256x256"):
        convert(read_matconvnet(path), tiny("vggm", TINY_VGGM))


def test_a_model_without_a_matconvnet_counterpart_is_refused(tmp_path):
    path = save_network(tmp_path / "n.mat", vggm_layers(random_weights(0)), "old", AVERAGE)
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 7, stride=2))
    with pytest.raises(CqdkitError, match=r"Sequential cannot take MatConvNet weights: its layer 0 \(BatchNorm2d"):
        convert(read_matconvnet(path), model)


def test_a_matlab_v73_hdf5_file_is_refused_with_what_to_do(tmp_path):
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    path = tmp_path / "imagenet-vgg-m.mat"
    path.write_bytes(header.ljust(116) + bytes(8) + b"\x00\x02IM" + b"\x89HDF\r\n\x1a\n" + bytes(512))
    with pytest.raises(DataError, match=r"'.*imagenet-vgg-m.mat' is a MATLAB v7.3 \(HDF5\) file, .*"
                                        r"save\('imagenet-vgg-m-v7.mat', '-struct', 'net', '-v7'\)"):
        read_matconvnet(path)


def _write(tmp_path: Path, what: str) -> Path:
    path = tmp_path / f"{what}.mat"
    layers = vggm_layers(random_weights(0))
    if what == "text":
        path.write_text("not a MATLAB file\n" * 20)
    elif what == "no-layers":
        savemat(path, {"weights": np.zeros(3)})
    elif what == "no-normalization":
        savemat(path, {"layers": np.empty((1, 0), dtype=object), "meta": {"classes": 1.0}})
    elif what == "bad-average":
        save_network(path, layers, "old", np.zeros(2))
    elif what == "bad-stride":
        save_network(path, [layers[0] | {"stride": (1, 2, 3)}], "old", AVERAGE)
    elif what == "no-lrn-param":
        save_network(path, [layers[0], layers[1], {"name": "norm1", "type": "normalize"}], "old", AVERAGE)
    return path


@pytest.mark.parametrize("what, message", [
    ("missing", r"'.*missing.mat' does not exist"),
    ("text", r"'.*text.mat' is not a readable MATLAB \.mat file"),
    ("no-layers", r"'.*no-layers.mat' has no 'layers' variable.*\(variables: weights\)"),
    ("no-normalization", r"'.*no-normalization.mat' has no meta\.normalization"),
    ("bad-average", r"'.*bad-average.mat': averageImage has shape \(1, 2\); expected 3 values"),
    ("bad-stride", r"'.*bad-stride.mat': layer 1 'conv1' \(conv\): stride must be 1 or 2 integers, "
                   r"got \[1.0, 2.0, 3.0\]"),
    ("no-lrn-param", r"'.*no-lrn-param.mat': layer 3 'norm1' \(lrn\): param must be \[N kappa alpha beta\], got \[\]"),
])
def test_unreadable_files_are_refused_clearly(tmp_path, what, message):
    with pytest.raises(DataError, match=f"MatConvNet file {message}"):
        read_matconvnet(_write(tmp_path, what))


@pytest.mark.parametrize("layout", ["old", "simplenn"])
def test_a_file_cut_short_anywhere_is_one_data_error(tmp_path, layout):
    """Every length up to 200 bytes, the ends of the file's variables, the last 64 bytes (padding included)
    and every 13th length in between: a DataError naming the file, never a traceback from scipy."""
    layers = vggm_layers(random_weights(0))
    full = save_network(tmp_path / "full.mat", layers, layout, AVERAGE.reshape(1, 1, 3)).read_bytes()
    read_matconvnet(tmp_path / "full.mat")
    # where a variable ends: the size of the file of the variables before (the same bytes, but the header's date)
    boundaries = [save_network(tmp_path / f"{count}.mat", layers, layout, AVERAGE.reshape(1, 1, 3),
                               variables=count).stat().st_size for count in range(1, 3 if layout == "old" else 2)]
    assert all(full[128:size] == (tmp_path / f"{i + 1}.mat").read_bytes()[128:] for i, size in enumerate(boundaries))
    lengths = sorted({*range(201), *boundaries, *range(201, len(full), 13), *range(len(full) - 64, len(full))})
    cut = tmp_path / "imagenet-vgg-m.mat"
    for length in lengths:
        cut.write_bytes(full[:length])
        with pytest.raises(DataError, match=r"^MatConvNet file '.*imagenet-vgg-m\.mat' (is|has) ") as error:
            read_matconvnet(cut)
        assert "\n" not in str(error.value), length
# -- the command line ----------------------------------------------------------------------------------


class TinyVggm:
    """A backbone plugin: vggm with the test's widths (the CLI builds it like any backbone)."""

    @hookimpl
    def cqdkit_backbones(self):
        yield Backbone(name="tiny-vggm", summary="vggm, narrow", factory=lambda num_classes, **kw: tiny(
            "vggm", TINY_VGGM, num_classes))


def test_convert_weights_writes_safetensors_and_a_sidecar_that_load_weights_applies(tmp_path, register_plugin):
    register_plugin(TinyVggm(), name="tiny-vggm")
    layers = vggm_layers(random_weights(3))
    average = varying_average(4)
    source = save_network(tmp_path / "imagenet-vgg-m.mat", layers, "old", average)
    out = tmp_path / "out" / "vgg-m.safetensors"
    result = CliRunner().invoke(cli, ["convert-weights", str(source), "--arch", "tiny-vggm", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "the 224x224 average image subtracted pixel by pixel" in " ".join(result.output.split())
    assert sorted(p.name for p in out.parent.iterdir() if p.name != OWNED_LIST) == ["vgg-m.json", "vgg-m.safetensors"]  # no temporary left
    sidecar = json.loads(out.with_suffix(".json").read_text())
    mean = average.mean(axis=(0, 1)) / 255
    assert sidecar == {
        "source": str(source), "sha256": hashlib.sha256(source.read_bytes()).hexdigest(), "arch": "tiny-vggm",
        "layout": "old", "mean": pytest.approx(list(mean), rel=1e-6), "std": [1 / 255] * 3,
        "average_image": {"size": [224, 224], "spatial": True}, "image_size": [224, 224], "num_classes": 10,
    }
    stored = load_file(out)
    assert stored["average_image.residual"].shape == (3, 224, 224)
    model = tiny("vggm", TINY_VGGM)
    load_weights(model, out, strict=True)
    assert model_input_config(model).mean == pytest.approx(tuple(mean), rel=1e-6)
    assert_matches_reference(model, layers, average)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_the_average_image_travels_with_checkpoints_and_exports(tmp_path, register_plugin):
    """A run's saved model rebuilt by ``cqdkit export`` (a fresh backbone, strict load) and traced as TorchScript
    still subtracts the average image: its logits are MatConvNet's."""
    from cqdkit.export import export_model
    from cqdkit.models.weights import save_model

    register_plugin(TinyVggm(), name="tiny-vggm")
    layers, average = vggm_layers(random_weights(5)), varying_average(6)
    model = tiny("vggm", TINY_VGGM)
    load_weights(model, save_network(tmp_path / "n.mat", layers, "simplenn", average), strict=True)
    config = model_input_config(model)
    run = tmp_path / "run"
    save_model(run / "b" / "model.safetensors", model, {
        "architecture": "tiny-vggm", "num_classes": 10, "image_size": 224, "mean": list(config.mean),
        "std": list(config.std), "classes": [str(i) for i in range(10)], "method": "b"})
    (run / "results.json").write_text(json.dumps({"method": "b", "models": {"b": {"test_x": 0.5, "test_z": 0.5}}}))
    result = export_model(run, "torchscript")
    exported = torch.jit.load(str(result.path)).eval()
    batch = images()
    with torch.no_grad():
        logits = exported(torch.from_numpy(batch).permute(0, 3, 1, 2).float()).double().numpy()
    assert largest_difference(logits, batch, layers, average) < 1e-4


def test_convert_weights_reports_a_mismatch_in_one_line(tmp_path):
    layers = vggm_layers(random_weights(0))
    source = save_network(tmp_path / "n.mat", layers, "simplenn", AVERAGE.reshape(1, 1, 3))
    result = CliRunner().invoke(cli, ["convert-weights", str(source), "--arch", "vgg16"])
    assert result.exit_code == 2
    assert "layer 1 'conv1' (conv) does not match VGG's features.0" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "n.safetensors").exists()
    result = CliRunner().invoke(cli, ["convert-weights", str(source), "--arch", "vggm", "--out", "n.pth"])
    assert result.exit_code == 2 and "expected a path ending in .safetensors, got 'n.pth'" in result.stderr


def test_a_run_normalises_as_the_weights_file_records_also_for_the_model_started_from_the_teacher(
        tmp_path, monkeypatch):
    monkeypatch.setenv("CQDKIT_CACHE", str(tmp_path / "cache"))
    mean, std = [0.5, 0.4, 0.3], [1 / 255] * 3
    weights = tmp_path / "teacher.safetensors"
    state = create_backbone("convnet-s", num_classes=3).state_dict()
    save_file(state, weights, metadata={"mean": json.dumps(mean), "std": json.dumps(std)})  # as convert-weights does
    tiny_run = ["--dataset-option", "classes=3", "--dataset-option", "train_per_class=4",
                "--dataset-option", "test_per_class=2", "--dataset-option", "image_size=32", "--image-size", "32",
                "--batch-size", "4", "--epochs", "1", "--teacher", "convnet-s", "--student", "convnet-s", "--quiet"]
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "--degrade", "gray", "--method", "a-b", *tiny_run,
                                      "--teacher-weights", str(weights), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for model in ("a", "a-b"):
        description = json.loads((out / model / "model.json").read_text())
        assert (description["mean"], description["std"]) == (pytest.approx(mean), pytest.approx(std)), model
