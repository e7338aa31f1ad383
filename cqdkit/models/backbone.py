"""Building a backbone by name, and the preprocessing it expects.

Names resolve through the plugin manager: cqdkit's own backbones (``vggm``, ``convnet-s``,
``convnet-m``, and any plugin's) win over timm's model zoo, which serves every other timm name.

Example:
    >>> model = create_backbone("convnet-s", num_classes=10)
    >>> model_input_config(model).mean
    (0.485, 0.456, 0.406)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import SpecError
from ..plugin import PluginManager, get_plugin_manager

#: Mean and std given to input channels beyond those a model's configuration describes.
EXTRA_CHANNEL_MEAN, EXTRA_CHANNEL_STD = 0.5, 0.5


def create_backbone(
    name: str,
    *,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool = False,
    manager: PluginManager | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build backbone ``name`` mapping ``(N, in_chans, H, W)`` images to ``(N, num_classes)`` logits.

    Raises:
        UnknownNameError: no plugin (nor timm) provides ``name``; the message lists close names.
        SpecError: ``num_classes`` or ``in_chans`` is not a positive integer.
        CqdkitError: pretrained weights were asked for and are not available.
    """
    for what, value in (("num_classes", num_classes), ("in_chans", in_chans)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"backbone {name!r}: {what} must be a positive integer, got {value!r}")
    entry = (manager or get_plugin_manager()).backbone(name)
    return entry.factory(num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **kwargs)


@dataclass(frozen=True)
class InputConfig:
    """How to preprocess images for a model: ``(x - mean) / std`` per channel, on images in [0, 1]."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int, int]  # (channels, height, width) the model was designed or trained for
    interpolation: str


def model_input_config(model: nn.Module) -> InputConfig:
    """The preprocessing of ``model``, from its timm-style ``pretrained_cfg``.

    Uses ``timm.data.resolve_model_data_config``, so timm models get their pretrained weights' mean and
    std, and cqdkit's own models the ImageNet ones. ``mean`` and ``std`` have one value per input channel:
    a one-channel model gets the average of the configured values, and channels beyond those configured
    (a teacher that sees extra channels) get mean 0.5 and std 0.5.
    """
    from timm.data import resolve_model_data_config

    config = resolve_model_data_config(model)
    channels = _input_channels(model) or len(config["mean"])
    mean, std = tuple(map(float, config["mean"])), tuple(map(float, config["std"]))
    return InputConfig(
        mean=_per_channel(mean, channels, EXTRA_CHANNEL_MEAN),
        std=_per_channel(std, channels, EXTRA_CHANNEL_STD),
        input_size=(channels, *config["input_size"][1:]),
        interpolation=str(config["interpolation"]),
    )


def _input_channels(model: nn.Module) -> int | None:
    """Input channels of the model's first convolution (None for a model without one)."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else None


def _per_channel(values: tuple[float, ...], channels: int, extra: float) -> tuple[float, ...]:
    if channels == 1:
        return (sum(values) / len(values),)
    return values[:channels] + (extra,) * max(0, channels - len(values))
