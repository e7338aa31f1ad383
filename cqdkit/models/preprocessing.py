"""What a backbone expects as input, and the module that turns pixels into it.

The pixel contract, everywhere in cqdkit: images travel as ``uint8`` (or float) pixel values 0..255,
``(N, C, H, W)``, RGB first; a :class:`Normalizer` maps them to the float input of one backbone,
``(pixels / 255 - mean) / std`` per channel, with the mean and std of :func:`model_input_config`.

Example:
    >>> model = create_backbone("convnet-s", num_classes=10)   # doctest: +SKIP
    >>> normalizer = Normalizer.for_model(model)                # doctest: +SKIP
    >>> logits = model(normalizer(uint8_images))                # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

#: Mean and std given to input channels beyond those a model's configuration describes.
EXTRA_CHANNEL_MEAN, EXTRA_CHANNEL_STD = 0.5, 0.5


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


class Normalizer(nn.Module):
    """Pixels 0..255 ``(N, C, H, W)`` (uint8 or float) to the float input a backbone expects:
    ``(pixels / 255 - mean) / std``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_t))
        self.register_buffer("shift", mean_t / std_t)

    @classmethod
    def for_model(cls, model: nn.Module) -> Normalizer:
        """The normaliser of ``model``'s :func:`model_input_config`."""
        config = model_input_config(model)
        return cls(config.mean, config.std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() * self.scale - self.shift
