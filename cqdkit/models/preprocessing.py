"""What a backbone expects as input, and the module that turns pixels into it.

The pixel contract, everywhere in cqdkit: images travel as ``uint8`` (or float) pixel values 0..255,
``(N, C, H, W)``, RGB first; a :class:`Normalizer` maps them to the float input of one backbone,
``(pixels / 255 - mean) / std`` per channel, with the mean and std of :func:`model_input_config`. A network
converted from MatConvNet whose average image varies over the image also carries an :class:`AverageImage`
layer, which subtracts what the per-channel mean leaves (so its input is exactly ``pixels - average image``).

Example:
    >>> model = create_backbone("convnet-s", num_classes=10)   # doctest: +SKIP
    >>> normalizer = Normalizer.for_model(model)                # doctest: +SKIP
    >>> logits = model(normalizer(uint8_images))                # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
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


class AverageImage(nn.Module):
    """The input layer of a network trained on ``pixels - average image`` with an average image that varies
    over the image (MatConvNet's vgg-m): it subtracts ``residual``, the average image minus its per-channel
    mean (3 x H x W; the :class:`Normalizer` subtracts the mean), resized bilinearly to inputs of another size.

    Empty (the identity) until weights that hold one are loaded: ``residual`` is a buffer that takes the shape
    of the loaded tensor, so checkpoints and exports carry it, and weights without one leave it as it is.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("residual", torch.zeros(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.residual.numel() == 0:
            return x
        residual = self.residual
        if tuple(residual.shape[-2:]) != tuple(x.shape[-2:]):
            residual = F.interpolate(residual[None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
        return x - residual.to(x.dtype)

    def _load_from_state_dict(self, state_dict: dict[str, torch.Tensor], prefix: str, local_metadata: dict,
                              strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        key = prefix + "residual"
        if key not in state_dict:
            return  # weights (or a checkpoint) without an average image: nothing to subtract
        value = state_dict[key]
        if value.numel() and (value.dim() != 3 or value.shape[0] != 3):
            error_msgs.append(f"{key}: expected an empty tensor or a 3 x H x W image, got shape {tuple(value.shape)}")
            return
        self.residual = value.detach().to(self.residual.device, self.residual.dtype).clone()
