"""MatConvNet networks (``.mat`` files) converted to PyTorch weights for cqdkit's ``vggm`` or timm's ``vgg16``.

The paper's VGG-M is MatConvNet's ``imagenet-vgg-m.mat`` (Chatfield et al. 2014), VGG-16 its
``imagenet-vgg-verydeep-16.mat``. Files are read with :func:`scipy.io.loadmat` (MATLAB v5/v7 files; nothing
is unpickled), in either of MatConvNet's layouts:

- ``old``: ``layers{i}.filters`` and ``.biases``, LRN layers of type ``normalize``, a top-level
  ``normalization`` (``averageImage``, ``imageSize``) and ``classes``;
- ``simplenn``: ``layers{i}.weights = {filters, biases}``, LRN type ``lrn``, ``meta.normalization`` and
  ``meta.classes``. (MatConvNet's Caffe importer wrote ``weights`` next to a top-level ``normalization``;
  such a file is read too, as ``old``.)

:func:`convert` walks the file's layers and the model's side by side, in order, and refuses (naming the
first layer that differs) anything that would not compute the same function at the file's
``imageSize``:

- ``conv``: filters H x W x Cin x Cout become torch's Cout x Cin x H x W; shapes, stride and padding
  (MatConvNet's [top bottom left right], symmetric in torch) must match. A conv whose filter covers its
  whole input map without padding (fc6: 6x6 for vgg-m at 224) fills an ``nn.Linear``: the filter is
  reordered to torch's flattening of (C, H, W).
- ``lrn``: ``vl_nnnormalize`` with ``[N kappa alpha beta]`` computes ``x / (kappa + alpha * sum x^2)^beta``
  over N channels; torch's ``LocalResponseNorm(size, alpha, beta, k)`` divides alpha by the size. The file
  must have ``N = size`` (odd, so both centre the window alike), ``kappa = k``, ``N * alpha = alpha`` and
  the same beta; other parameters are refused.
- ``pool``: max over the window clipped to the map; MatConvNet's output side is
  ``floor((H + padTop + padBottom - pool) / stride) + 1``. Without top/left padding, windows start where the
  model's ``MaxPool2d`` starts them, so the two agree exactly when their output sizes do: that is checked
  on each pool's input map at ``imageSize``. (A bottom/right pad of 0 is floor mode and one of stride - 1
  is ceil mode at every size.)
- ``relu`` without leak; ``dropout`` (the identity at test time); a final ``softmax`` is dropped, as the
  model outputs logits. The model's dropout, flatten and identity layers are skipped, and an adaptive
  average pool must be the identity at its input size.

The file's classifier is kept whatever its class count (:func:`cqdkit.models.load_weights` leaves out a
classifier of another shape).

Input: a MatConvNet network takes RGB values 0..255 minus ``averageImage``, unscaled, while cqdkit feeds
``(pixels / 255 - mean) / std``. The conversion therefore gives ``mean = a / 255`` and ``std = 1 / 255`` per
channel, with ``a`` the average image's per-channel mean: ``(p / 255 - a / 255) / (1 / 255) = p - a``. An
average image that varies over the image (vgg-m's is 224 x 224 x 3) is kept whole: what the per-channel mean
leaves of it (3 x H x W) goes into the model's :class:`~cqdkit.models.preprocessing.AverageImage` layer
(``average_image.residual`` in vggm), which subtracts it at ``imageSize`` and resized bilinearly at other
sizes, so the network sees exactly ``p - averageImage``. A model without such a layer (timm's vgg16) gets the
per-channel mean only, with a warning. A per-channel average (1 x 1 x 3, as in vgg-vd-16) needs no layer.

Example::

    net = read_matconvnet("imagenet-vgg-m.mat")
    conversion = convert(net, create_backbone("vggm", num_classes=net.num_classes))
    conversion.std  # (1/255, 1/255, 1/255)
"""

from __future__ import annotations

import json
import math
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CqdkitError, DataError
from .preprocessing import AverageImage
from .weights import classifier_names

#: Model layers that compute nothing at test time: dropout, reshaping.
_PASS_THROUGH = (nn.Dropout, nn.Flatten, nn.Identity)
#: The MatConvNet layer type each model layer needs.
_COUNTERPART = {nn.Conv2d: "conv", nn.Linear: "conv", nn.ReLU: "relu", nn.LocalResponseNorm: "lrn",
                nn.MaxPool2d: "pool"}


@dataclass(frozen=True)
class MatLayer:
    """One layer of a MatConvNet network, in MatConvNet's conventions (``index`` counts from 1, as MATLAB)."""

    index: int
    name: str
    type: str  # conv, relu, lrn (also for the old 'normalize'), pool, dropout, softmax, ...
    filters: np.ndarray | None = None  # H x W x Cin x Cout
    biases: np.ndarray | None = None  # Cout
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, bottom, left, right
    dilate: tuple[int, int] = (1, 1)
    pool: tuple[int, int] = (1, 1)
    method: str = "max"
    param: tuple[float, ...] = ()  # LRN [N kappa alpha beta]
    leak: float = 0.0

    def __str__(self) -> str:
        return f"layer {self.index} {self.name!r} ({self.type})"


@dataclass(frozen=True, eq=False)
class MatConvNet:
    """A MatConvNet network as read by :func:`read_matconvnet`."""

    path: Path
    layout: str  # "old" or "simplenn"
    layers: tuple[MatLayer, ...]
    average_image: np.ndarray  # H x W x 3 RGB, 0..255, subtracted from the input (1 x 1 x 3: per channel)
    image_size: tuple[int, int]  # height, width the network was made for

    @property
    def average(self) -> tuple[float, float, float]:
        """The average image's per-channel mean (RGB, 0..255)."""
        return tuple(self.average_image.mean(axis=(0, 1), dtype=np.float64).tolist())  # type: ignore[return-value]

    @property
    def spatial(self) -> bool:
        """Whether the average image varies over the image (more than one value per channel)."""
        return self.average_image.shape[:2] != (1, 1)

    @property
    def num_classes(self) -> int:
        """Outputs of the last convolution (the classifier)."""
        convs = [layer for layer in self.layers if layer.filters is not None]
        if not convs:
            raise DataError(f"MatConvNet file {str(self.path)!r} has no conv layer")
        return int(convs[-1].filters.shape[3])


@dataclass(frozen=True)
class Conversion:
    """A converted network: the model's state dict (with the average image's residual when the model subtracts
    it pixel by pixel) and the input normalisation it needs."""

    state_dict: dict[str, torch.Tensor]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    average_image: dict[str, Any]  # {"size": [H, W], "spatial": whether the model subtracts it pixel by pixel}

    @property
    def preprocessing(self) -> dict[str, tuple[float, ...]]:
        """``mean`` and ``std`` as a timm ``pretrained_cfg`` update."""
        return {"mean": self.mean, "std": self.std}


def read_matconvnet(path: str | os.PathLike[str]) -> MatConvNet:
    """Read a MatConvNet network from a MATLAB v5/v7 ``.mat`` file.

    Raises:
        DataError: the file is missing, a MATLAB v7.3 (HDF5) file, unreadable, or not a MatConvNet network.
    """
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError, matfile_version

    path = Path(path)
    where = f"MatConvNet file {str(path)!r}"
    if not path.is_file():
        raise DataError(f"{where} does not exist")
    try:
        version = matfile_version(path)[0]
        if version == 2:
            raise DataError(
                f"{where} is a MATLAB v7.3 (HDF5) file, which cqdkit does not read; save it again as a v7 file "
                f"in MATLAB: net = load('{path.name}'); save('{path.stem}-v7.mat', '-struct', 'net', '-v7')"
            )
        if version == 1:
            _check_complete(where, path)
        contents = loadmat(path, struct_as_record=False, squeeze_me=False)
    except (MatReadError, ValueError, OSError, zlib.error) as error:
        raise DataError(f"{where} is not a readable MATLAB .mat file: {error}; expected a complete MATLAB v5/v7 "
                        "file") from error
    except (IndexError, TypeError, EOFError) as error:  # scipy's parser on a file that ends too early
        raise DataError(f"{where} is truncated or corrupt ({type(error).__name__}: {error}); expected a complete "
                        f"MATLAB v5/v7 .mat file ({path.stat().st_size} bytes read)") from error
    if "layers" not in contents:
        variables = ", ".join(k for k in contents if not k.startswith("__")) or "none"
        raise DataError(f"{where} has no 'layers' variable, so it is not a MatConvNet network (variables: {variables})")
    meta = _one(contents.get("meta"))
    layout = "old" if meta is None else "simplenn"
    normalization = _one(contents.get("normalization") if meta is None else getattr(meta, "normalization", None))
    if normalization is None:
        expected = "normalization" if meta is None else "meta.normalization"
        raise DataError(f"{where} has no {expected} (with averageImage and imageSize)")
    if (contents.get("classes") if meta is None else getattr(meta, "classes", None)) is None:
        expected = "classes" if meta is None else "meta.classes"
        raise DataError(f"{where} has no {expected} (the class names), which every MatConvNet network holds; "
                        "is the file complete?")
    average_image = _average(where, getattr(normalization, "averageImage", None))
    layers = tuple(_read_layer(where, i + 1, raw) for i, raw in enumerate(np.asarray(contents["layers"]).reshape(-1)))
    return MatConvNet(path, layout, layers, average_image, _image_size(where, normalization))


def convert(net: MatConvNet, model: nn.Module) -> Conversion:
    """The weights of ``net`` as a state dict for ``model``, with the input normalisation ``net`` needs.

    ``model`` may live on any device, the meta device included: only its layers and shapes are read.

    Raises:
        DataError: a layer of ``net`` does not compute what the model's corresponding layer does (the
            message names both), or one of them has layers the other lacks.
        CqdkitError: the model has a layer that no MatConvNet layer converts to (e.g. batch norm).
    """
    where = f"MatConvNet file {str(net.path)!r}"
    model_name = type(model).__name__
    layers = [layer for layer in net.layers if layer.type != "dropout"]
    while layers and layers[-1].type in ("softmax", "softmaxloss"):
        layers.pop()
    head = set(classifier_names(model))
    state: dict[str, torch.Tensor] = {}
    size, channels, position = net.image_size, 3, 0
    input_layer: str | None = None
    for name, module in model.named_modules():
        if next(module.children(), None) is not None or isinstance(module, _PASS_THROUGH):
            continue
        if isinstance(module, AverageImage):
            input_layer = name
            continue
        if isinstance(module, nn.AdaptiveAvgPool2d):
            if _output_size(module, size) != size:
                raise DataError(f"{where}: {model_name}'s {name} ({module}) is not the identity on the "
                                f"{_side(size)} map it gets at the file's imageSize {_side(net.image_size)}")
            continue
        wanted = next((kind for cls, kind in _COUNTERPART.items() if isinstance(module, cls)), None)
        if wanted is None:
            raise CqdkitError(f"{model_name} cannot take MatConvNet weights: its layer {name} ({module}) has no "
                              "MatConvNet counterpart that cqdkit converts (conv, relu, lrn, max pool)")
        if position == len(layers):
            raise DataError(f"{where} ends before {model_name}'s layer {name} ({module})")
        layer = layers[position]
        position += 1
        try:
            if layer.type != wanted:
                raise _Mismatch(f"it needs a MatConvNet '{wanted}' layer")
            if isinstance(module, nn.Conv2d):
                state.update(_conv(layer, module, name, size, name in head))
                size, channels = _conv_output(layer, size), layer.filters.shape[3]
            elif isinstance(module, nn.Linear):
                state.update(_linear(layer, module, name, size, channels, name in head))
                size, channels = (1, 1), layer.filters.shape[3]
            elif isinstance(module, nn.ReLU) and layer.leak != 0:
                raise _Mismatch(f"the file's ReLU leaks ({layer.leak:g})")
            elif isinstance(module, nn.LocalResponseNorm):
                _check_lrn(layer, module)
            elif isinstance(module, nn.MaxPool2d):
                size = _check_pool(layer, module, size, net.image_size)
        except _Mismatch as mismatch:
            raise DataError(f"{where}: {layer} does not match {model_name}'s {name} ({module}): {mismatch}") from None
    if position < len(layers):
        raise DataError(f"{where}: {layers[position]} has no counterpart: {model_name} ends before it")
    mean = tuple(a / 255.0 for a in net.average)
    spatial = net.spatial and input_layer is not None
    if spatial:
        residual = net.average_image - np.asarray(net.average).reshape(1, 1, 3)
        state[f"{input_layer}.residual"] = _tensor(residual).permute(2, 0, 1).contiguous()
    elif net.spatial:
        warnings.warn(f"{where}: {model_name} has no AverageImage input layer, so the file's "
                      f"{_side(net.average_image.shape)} average image is reduced to its per-channel mean (an "
                      "approximation: the same image gives other logits than in MatConvNet)", stacklevel=2)
    return Conversion(state, mean, (1.0 / 255.0,) * 3,
                      {"size": list(net.average_image.shape[:2]), "spatial": spatial})


def skeleton(arch: str, num_classes: int) -> nn.Module:
    """Backbone ``arch`` on PyTorch's meta device: its layers and shapes without memory for weights, which is
    all :func:`convert` reads."""
    from .backbone import create_backbone

    with torch.device("meta"):
        return create_backbone(arch, num_classes=num_classes)


def convert_file(source: str | os.PathLike[str], arch: str, out: str | os.PathLike[str], *,
                 origin: str | None = None) -> dict[str, Any]:
    """Convert MatConvNet file ``source`` for backbone ``arch`` into ``out`` (safetensors) and a JSON sidecar
    ``out`` with suffix ``.json``, each written atomically (the sidecar first, so converted weights always have
    one); returns the sidecar's description.

    The sidecar records ``source`` (``origin`` when given, e.g. the URL a download came from, else the file's
    path) and the file's ``sha256``. The safetensors metadata holds the same fields, JSON-encoded;
    :func:`cqdkit.models.load_weights` reads its ``mean`` and ``std``.

    Example::

        convert_file("imagenet-vgg-m.mat", "vggm", "vgg-m.safetensors")
        # {"arch": "vggm", "layout": "old", "mean": [...], "std": [0.0039..., ...], "num_classes": 1000,
        #  "average_image": {"size": [224, 224], "spatial": true}, ...}

    Raises:
        DataError: ``out`` does not end in ``.safetensors``, or the file cannot be read or converted.
    """
    from ..files import atomic_save_tensors, atomic_write_json, sha256

    source, out = Path(source), Path(out)
    if out.suffix.lower() != ".safetensors":
        raise DataError(f"converted weights are written as safetensors: expected a path ending in .safetensors, "
                        f"got {str(out)!r}")
    net = read_matconvnet(source)
    conversion = convert(net, skeleton(arch, net.num_classes))
    description = {
        "source": origin or str(source),
        "sha256": sha256(source),
        "arch": arch,
        "layout": net.layout,
        "mean": list(conversion.mean),
        "std": list(conversion.std),
        "average_image": conversion.average_image,
        "image_size": list(net.image_size),
        "num_classes": net.num_classes,
    }
    atomic_write_json(out.with_suffix(".json"), description)
    atomic_save_tensors(out, conversion.state_dict, metadata={k: json.dumps(v) for k, v in description.items()})
    return description


# -- reading ------------------------------------------------------------------------------------------


def _check_complete(where: str, path: Path) -> None:
    """Refuse a MATLAB v5/v7 file whose variables (data elements after the 128-byte header, each an 8-byte tag
    giving its length) do not end exactly where the file ends: a truncated download or copy."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        header = handle.read(128)
        order = {b"IM": "<", b"MI": ">"}.get(header[126:128])
        if order is None:
            raise DataError(f"{where} is not a readable MATLAB .mat file: {size} bytes, without the 128-byte "
                            "header of a MATLAB v5/v7 file")
        position = 128
        while position < size:
            handle.seek(position)
            tag = handle.read(8)
            if len(tag) < 8:
                break
            kind, length = struct.unpack(order + "II", tag)
            position += 8 if kind >> 16 else 8 + length  # a small element packs its data into its tag
    if position != size:
        raise DataError(f"{where} is truncated: its variables need at least {max(position, size + 1)} bytes, the "
                        f"file has {size}; expected a complete MATLAB v5/v7 .mat file (download or copy it again)")


def _one(value: Any) -> Any:
    """The element of a 1x1 cell or struct array (scipy keeps MATLAB's 1x1 wrapping); other values as given."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.item()
    return value


def _text(value: Any) -> str:
    value = _one(value)
    if isinstance(value, np.ndarray):
        return str(value.item()) if value.size == 1 else ""
    return value if isinstance(value, str) else ""


def _numbers(value: Any) -> np.ndarray:
    return np.asarray(_one(value), dtype=np.float64).reshape(-1)


def _read_layer(where: str, index: int, raw: Any) -> MatLayer:
    layer = _one(raw)
    name = _text(getattr(layer, "name", None)) or f"layer{index}"
    kind = _text(getattr(layer, "type", None))
    kind = "lrn" if kind == "normalize" else kind
    what = f"{where}: layer {index} {name!r} ({kind})"
    fields: dict[str, Any] = {}
    try:
        if kind in ("conv", "pool"):
            fields["stride"] = _ints(what, "stride", getattr(layer, "stride", 1), 2)
            fields["pad"] = _ints(what, "pad", getattr(layer, "pad", 0), 4)
        if kind == "conv":
            fields["filters"], fields["biases"] = _weights(what, layer)
            fields["dilate"] = _ints(what, "dilate", getattr(layer, "dilate", 1), 2)
        elif kind == "pool":
            fields["pool"] = _ints(what, "pool", getattr(layer, "pool", ()), 2)
            fields["method"] = _text(getattr(layer, "method", "max"))
        elif kind == "lrn":
            fields["param"] = tuple(_numbers(getattr(layer, "param", ())).tolist())
            if len(fields["param"]) != 4:
                raise DataError(f"{what}: param must be [N kappa alpha beta], got {list(fields['param'])}")
        elif kind == "relu":
            fields["leak"] = float(_numbers(getattr(layer, "leak", 0.0))[0])
    except (TypeError, ValueError, IndexError) as error:
        raise DataError(f"{what} is malformed: {error}") from error
    return MatLayer(index, name, kind, **fields)


def _weights(what: str, layer: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(layer, "weights"):
        arrays = list(np.asarray(layer.weights, dtype=object).reshape(-1))
        if len(arrays) != 2:
            raise DataError(f"{what}: expected weights {{filters, biases}}, got {len(arrays)} arrays")
        filters, biases = arrays
    else:
        filters, biases = getattr(layer, "filters", None), getattr(layer, "biases", None)
        if filters is None or biases is None:
            raise DataError(f"{what} has neither weights nor filters and biases")
    filters = np.asarray(filters, dtype=np.float32)
    if filters.ndim != 4:
        raise DataError(f"{what}: filters must be H x W x Cin x Cout, got shape {filters.shape}")
    return filters, np.asarray(biases, dtype=np.float32).reshape(-1)


def _ints(what: str, field: str, value: Any, count: int) -> tuple[int, ...]:
    numbers = _numbers(value)
    if numbers.size == 1:
        numbers = np.repeat(numbers, count)
    if numbers.size != count or not np.all(numbers == np.round(numbers)):
        raise DataError(f"{what}: {field} must be 1 or {count} integers, got {numbers.tolist()}")
    return tuple(int(n) for n in numbers)


def _average(where: str, value: Any) -> np.ndarray:
    """``averageImage`` as an H x W x 3 array (1 x 1 x 3 for one value per channel)."""
    try:
        average = np.asarray(_one(value), dtype=np.float64) if value is not None else np.zeros(0)
    except (TypeError, ValueError) as error:
        raise DataError(f"{where}: averageImage is not numeric ({error}); expected 3 values (one per RGB channel) "
                        "or an H x W x 3 image") from error
    if average.size == 3:
        return average.reshape(1, 1, 3)
    if average.ndim == 3 and average.shape[2] == 3 and average.size:
        return average
    raise DataError(f"{where}: averageImage has shape {average.shape}; expected 3 values (one per RGB channel) "
                    "or an H x W x 3 image")


def _image_size(where: str, normalization: Any) -> tuple[int, int]:
    try:
        size = _numbers(getattr(normalization, "imageSize", np.zeros(0)))
    except (TypeError, ValueError):
        size = np.zeros(0)
    if size.size < 2 or size[0] < 1 or size[1] < 1 or np.any(size[:2] != np.round(size[:2])):
        raise DataError(f"{where}: imageSize is {size.tolist()}; expected [height width ...] in pixels")
    return int(size[0]), int(size[1])


# -- converting ---------------------------------------------------------------------------------------


class _Mismatch(Exception):
    """A file layer that does not compute what the model's layer does (turned into a DataError naming both)."""


def _side(size: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in size)


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _output_size(module: nn.Module, size: tuple[int, int]) -> tuple[int, int]:
    """The map size ``module`` makes of a ``size`` map, computed by the module itself (shapes only)."""
    return tuple(module(torch.empty(1, 1, *size, device="meta")).shape[-2:])  # type: ignore[return-value]


def _conv_output(layer: MatLayer, size: tuple[int, int]) -> tuple[int, int]:
    top, bottom, left, right = layer.pad
    height, width = layer.filters.shape[:2]
    return ((size[0] + top + bottom - height) // layer.stride[0] + 1,
            (size[1] + left + right - width) // layer.stride[1] + 1)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.float32))


def _conv(layer: MatLayer, module: nn.Conv2d, name: str, size: tuple[int, int],
          in_head: bool) -> dict[str, torch.Tensor]:
    if module.groups != 1 or _pair(module.dilation) != (1, 1) or isinstance(module.padding, str) \
            or module.padding_mode != "zeros" or module.bias is None:
        raise _Mismatch("cqdkit converts only plain convolutions with a bias")
    height, width, cin, cout = layer.filters.shape
    pad_h, pad_w = _pair(module.padding)
    expected = (*module.kernel_size, module.in_channels, module.out_channels)
    found = (height, width, cin, cout if not in_head else module.out_channels)
    if found != expected or layer.stride != _pair(module.stride) or layer.pad != (pad_h, pad_h, pad_w, pad_w) \
            or layer.dilate != (1, 1) or layer.biases.size != cout:
        raise _Mismatch(
            f"the file has {_side(layer.filters.shape)} filters, {layer.biases.size} biases, stride "
            f"{_side(layer.stride)}, pad {list(layer.pad)}, dilate {_side(layer.dilate)}; expected "
            f"{_side(expected)} filters (H x W x Cin x Cout), stride {_side(_pair(module.stride))}, pad "
            f"{[pad_h, pad_h, pad_w, pad_w]}, dilate 1x1"
        )
    if min(_conv_output(layer, size)) < 1:
        raise _Mismatch(f"its input map is only {_side(size)} at the file's imageSize")
    return {f"{name}.weight": _tensor(layer.filters).permute(3, 2, 0, 1), f"{name}.bias": _tensor(layer.biases)}


def _linear(layer: MatLayer, module: nn.Linear, name: str, size: tuple[int, int], channels: int,
            in_head: bool) -> dict[str, torch.Tensor]:
    height, width, cin, cout = layer.filters.shape
    if (height, width, cin) != (*size, channels) or layer.pad != (0, 0, 0, 0):
        raise _Mismatch(f"a fully connected layer needs a filter as large as its {_side(size)}x{channels} input "
                        f"and no padding; the file's is {_side(layer.filters.shape[:3])} with pad {list(layer.pad)}")
    if height * width * cin != module.in_features or (cout != module.out_features and not in_head) \
            or layer.biases.size != cout or module.bias is None:
        raise _Mismatch(f"the file's {_side(layer.filters.shape)} filters and {layer.biases.size} biases make a "
                        f"{height * width * cin} -> {cout} layer")
    weight = _tensor(layer.filters).permute(3, 2, 0, 1).reshape(cout, -1)  # torch flattens (C, H, W)
    return {f"{name}.weight": weight, f"{name}.bias": _tensor(layer.biases)}


def _check_lrn(layer: MatLayer, module: nn.LocalResponseNorm) -> None:
    size, kappa, alpha, beta = layer.param
    same = size == module.size and size % 2 == 1 and all(
        math.isclose(ours, theirs, rel_tol=1e-6)
        for ours, theirs in ((kappa, module.k), (alpha * size, module.alpha), (beta, module.beta))
    )
    if not same:
        torch_form = f"LocalResponseNorm(size={size:g}, alpha={alpha * size:g}, beta={beta:g}, k={kappa:g})"
        even = " (an even N centres the window differently in MatConvNet and torch)" if size % 2 == 0 else ""
        raise _Mismatch(f"MatConvNet's [N kappa alpha beta] = [{size:g} {kappa:g} {alpha:g} {beta:g}] is torch's "
                        f"{torch_form}{even}")


def _check_pool(layer: MatLayer, module: nn.MaxPool2d, size: tuple[int, int],
                image_size: tuple[int, int]) -> tuple[int, int]:
    kernel = _pair(module.kernel_size)
    stride = _pair(module.stride or module.kernel_size)
    if _pair(module.padding) != (0, 0) or _pair(module.dilation) != (1, 1):
        raise _Mismatch("cqdkit converts only max-pools without padding or dilation")
    top, bottom, left, right = layer.pad
    if layer.method != "max" or layer.pool != kernel or layer.stride != stride or top or left:
        raise _Mismatch(f"the file's pool is {layer.method} {_side(layer.pool)}, stride {_side(layer.stride)}, pad "
                        f"{list(layer.pad)}; expected max {_side(kernel)}, stride {_side(stride)}, pad [0 b 0 r]")
    ours = ((size[0] + bottom - kernel[0]) // stride[0] + 1, (size[1] + right - kernel[1]) // stride[1] + 1)
    theirs = _output_size(module, size)
    if ours != theirs:
        raise _Mismatch(f"on its {_side(size)} input (imageSize {_side(image_size)}) the file's pool with pad "
                        f"{list(layer.pad)} gives {_side(ours)}, the model's {_side(theirs)}")
    return ours
