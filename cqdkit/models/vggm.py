"""VGG-M, the "medium" network of Chatfield et al. (2014) used for f and g throughout the CQD paper.

Layers (input 224x224)::

    conv1  96 x 7x7, stride 2     -> ReLU -> LRN -> max-pool 3/2           (96 x 54 x 54)
    conv2 256 x 5x5, stride 2, pad 1 -> ReLU -> LRN -> max-pool 3/2, ceil  (256 x 13 x 13)
    conv3-5 512 x 3x3, pad 1, each -> ReLU; max-pool 3/2                 (512 x 6 x 6)
    fc6 4096 -> ReLU -> dropout 0.5; fc7 4096 -> ReLU -> dropout 0.5; classifier

102,908,520 parameters with 1000 classes.

Local response normalisation: ``b = a / (k + alpha/n * sum_{window of n channels} a**2) ** beta`` with
n=5, k=2, beta=0.75 and ``alpha=5e-4``. That is PyTorch's (and Caffe's) convention, where alpha is divided
by the window size; it equals MatConvNet's ``vl_nnnormalize`` parameters ``[5 2 1e-4 0.75]`` of
Chatfield's model, where alpha (1e-4) multiplies the sum directly.

Small inputs: every max-pool pads a feature map smaller than its 3x3 window (with -inf, so the result is
the maximum of what is there), and an adaptive average pool makes the last map 6x6 before fc6 (the
identity at 224x224). The smallest input is 19x19 pixels.

Input: ``average_image`` (an :class:`~cqdkit.models.preprocessing.AverageImage`) is the identity unless
converted MatConvNet weights with a spatially varying average image are loaded; then it subtracts what the
per-channel mean leaves of that image, so the network sees ``pixels - average image`` as in MatConvNet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CqdkitError
from .preprocessing import AverageImage

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The smallest input side length VGG-M accepts (conv2 needs a 3x3 map after pool1).
MIN_INPUT_SIZE = 19


class _MaxPool(nn.MaxPool2d):
    """A max-pool that also accepts feature maps smaller than its window (padding them with -inf)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.kernel_size if isinstance(self.kernel_size, int) else self.kernel_size[0]
        pad_h, pad_w = max(0, size - x.shape[-2]), max(0, size - x.shape[-1])
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), value=float("-inf"))
        return super().forward(x)


def imagenet_cfg(in_chans: int, size: int) -> dict:
    """A timm-style ``pretrained_cfg`` for cqdkit's own networks: ImageNet mean and std, classifier
    module ``classifier``, first convolution ``features.0``."""
    return {
        "input_size": (in_chans, size, size),
        "interpolation": "bilinear",
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "crop_pct": 1.0,
        "classifier": "classifier",
        "first_conv": "features.0",
    }


class VGGM(nn.Module):
    """VGG-M (Chatfield et al., "Return of the Devil in the Details", 2014).

    Args:
        num_classes: size of the classifier.
        in_chans: input channels (3 for RGB; more for a teacher that sees extra channels).
        dropout: dropout probability after fc6 and fc7.

    Example:
        >>> model = VGGM(num_classes=10)
        >>> model(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.average_image = AverageImage()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 96, kernel_size=7, stride=2),
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0),
            _MaxPool(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0),
            _MaxPool(kernel_size=3, stride=2, ceil_mode=True),
            nn.Conv2d(256, 512, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(512, 512, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(512, 512, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            _MaxPool(kernel_size=3, stride=2),
        )
        self.pool = nn.AdaptiveAvgPool2d((6, 6))
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(512 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.classifier = nn.Linear(4096, num_classes)
        #: The stages, in timm's format (read by :class:`cqdkit.models.features.Layers`): pool1, pool2, the
        #: ReLUs of conv3-5 and pool5 (the "last conv pool" that supervision transfer matches).
        self.feature_info = [
            {"module": "features.3", "num_chs": 96, "reduction": 4},
            {"module": "features.7", "num_chs": 256, "reduction": 16},
            {"module": "features.9", "num_chs": 512, "reduction": 16},
            {"module": "features.11", "num_chs": 512, "reduction": 16},
            {"module": "features.13", "num_chs": 512, "reduction": 16},
            {"module": "features.14", "num_chs": 512, "reduction": 32},
        ]
        #: Preprocessing, in timm's format (read by :func:`cqdkit.models.model_input_config`).
        self.pretrained_cfg = imagenet_cfg(in_chans, 224)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The from-scratch initialisation: He et al.'s (2015) fan-in normal for every layer followed by a
        ReLU, so that the signal keeps its scale through eight layers without batch normalisation, and a
        small normal (std 0.01) classifier; biases zero. PyTorch's default (uniform, a third of that
        variance) shrinks the signal at every layer: measured on the embedded data (tps, 48 px, 8 epochs,
        training on z), it left vggm at chance, loss ln 12 after two epochs, where this reaches 52%
        validation accuracy."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.classifier.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < MIN_INPUT_SIZE:
            raise CqdkitError(
                f"vggm needs images of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels, "
                f"got {x.shape[-2]}x{x.shape[-1]}"
            )
        return self.classifier(self.fc(self.pool(self.features(self.average_image(x)))))


def vggm(num_classes: int, in_chans: int = 3, pretrained: bool = False, **kwargs: float) -> VGGM:
    """Build VGG-M; ``kwargs`` go to :class:`VGGM` (``dropout``).

    Raises:
        CqdkitError: ``pretrained=True``: no official VGG-M weights are published on a model hub.
    """
    if pretrained:
        raise CqdkitError(
            "no pretrained vggm weights are available from a model hub (the original ones are MatConvNet "
            "files); load imagenet-vgg-m.mat, or its conversion by `cqdkit convert-weights imagenet-vgg-m.mat "
            "--arch vggm`, with --student-weights PATH (or --teacher-weights PATH)"
        )
    return VGGM(num_classes=num_classes, in_chans=in_chans, **kwargs)
