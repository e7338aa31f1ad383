"""ConvNet-S and ConvNet-M: small plain CNNs that train from scratch on CPU at 32-64 px.

A stack of stages, each a 3x3 convolution, batch norm and ReLU, separated by 2x2 max-pooling; a global
average pool and a linear classifier follow, so any input of at least ``2 ** (stages - 1)`` pixels works.
``convnet-m`` (twice as wide, four times the parameters) is a bigger teacher for ``convnet-s``, the
small-scale analogue of the paper's vgg-vd -> vgg-m experiment (Table 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import CqdkitError
from .vggm import imagenet_cfg


class ConvNet(nn.Module):
    """A plain conv-BN-ReLU network with global average pooling.

    Args:
        widths: channels of each stage.
        num_classes: size of the classifier.
        in_chans: input channels.
        dropout: dropout probability before the classifier.

    Example:
        >>> model = ConvNet((16, 32), num_classes=4)
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        widths: Sequence[int],
        num_classes: int,
        in_chans: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_chans
        #: The stages, in timm's format (read by :class:`cqdkit.models.features.Layers`): each stage's ReLU.
        self.feature_info: list[dict[str, object]] = []
        for stage, width in enumerate(widths):
            if stage > 0:
                layers.append(nn.MaxPool2d(2))
            conv = nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=False)
            layers += [conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            self.feature_info.append({"module": f"features.{len(layers) - 1}", "num_chs": width, "reduction": 2**stage})
            channels = width
        self.num_classes = num_classes
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.classifier = nn.Linear(channels, num_classes)
        #: Preprocessing, in timm's format (read by :func:`cqdkit.models.model_input_config`).
        self.pretrained_cfg = imagenet_cfg(in_chans, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


#: Stage widths of the built-in sizes.
WIDTHS: dict[str, tuple[int, ...]] = {
    "convnet-s": (16, 32, 64, 128),
    "convnet-m": (32, 64, 128, 256),
}


def convnet(name: str, num_classes: int, in_chans: int = 3, pretrained: bool = False, **kwargs: float) -> ConvNet:
    """Build the built-in ConvNet ``name`` (a key of :data:`WIDTHS`); ``kwargs`` go to :class:`ConvNet`.

    Raises:
        CqdkitError: ``pretrained=True``: these networks are trained from scratch.
    """
    if pretrained:
        raise CqdkitError(
            f"{name} has no pretrained weights; train it from scratch, or load your own with "
            "--student-weights PATH (or --teacher-weights PATH)"
        )
    return ConvNet(WIDTHS[name], num_classes=num_classes, in_chans=in_chans, **kwargs)
