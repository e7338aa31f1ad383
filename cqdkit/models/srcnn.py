"""SRCNN: the three-layer super-resolution network of Dong et al. (ECCV 2014), in its 9-5-5 variant.

The paper's appendix (Table 4) upsamples low-resolution images with SRCNN instead of bicubic
interpolation. SRCNN refines an image that was already upsampled bicubically, on its luminance only:

    Y --conv 9x9, 64, ReLU--> --conv 5x5, 32, ReLU--> --conv 5x5, 1--> Y'

and the colour (Cb, Cr) is kept from the bicubic image. Dong et al. used no padding (the output is 16
pixels smaller); here every convolution pads by replicating the border pixels (4, 2 and 2 pixels), so the
output has the input's size and the border is extrapolated from the image rather than from black.

Colour convention: full-range BT.601 YCbCr (JPEG's), with luma ``Y = 0.299 R + 0.587 G + 0.114 B``.
Replacing Y while keeping Cb and Cr is exactly adding the change of Y to each of R, G and B
(:func:`with_luma`), which needs no round trip through YCbCr.
"""

from __future__ import annotations

import torch
from torch import nn

#: Arch name written next to trained weights.
ARCH = "srcnn-9-5-5"

#: BT.601 luma weights of R, G, B (they sum to 1).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def rgb_to_luma(rgb: torch.Tensor) -> torch.Tensor:
    """The luma ``Y`` of ``(N, 3, H, W)`` float RGB images, as ``(N, 1, H, W)`` in the same units."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * weights).sum(dim=1, keepdim=True)


def with_luma(rgb: torch.Tensor, luma: torch.Tensor) -> torch.Tensor:
    """The images whose YCbCr has luma ``luma`` and the chroma (Cb, Cr) of ``rgb`` (not clipped).

    Example:
        >>> rgb, dark = torch.rand(1, 3, 4, 4), torch.zeros(1, 1, 4, 4)
        >>> torch.allclose(rgb_to_luma(with_luma(rgb, dark)), dark, atol=1e-6)
        True
    """
    return rgb + (luma - rgb_to_luma(rgb))


class SRCNN(nn.Module):
    """SRCNN 9-5-5 on one luminance channel in [0, 1]; the output has the input's size.

    Call :meth:`init_weights` for a fresh network to train (the default PyTorch initialisation is
    replaced there).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, kernel_size=9, padding=4, padding_mode="replicate")
        self.conv2 = nn.Conv2d(64, 32, kernel_size=5, padding=2, padding_mode="replicate")
        self.conv3 = nn.Conv2d(32, 1, kernel_size=5, padding=2, padding_mode="replicate")

    def forward(self, luma: torch.Tensor) -> torch.Tensor:
        return self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(luma)))))

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None, std: float = 1e-3) -> None:
        """A fresh network that outputs its input (bicubic interpolation) plus a small learnable change.

        The first two layers get He-normal weights, the output layer Gaussian weights of ``std`` (Dong et
        al.'s initialisation), biases are zero; then an identity path is set: filter 0 of the first two
        layers and the output filter's taps on channel 0 are exact centre impulses. Luma is
        non-negative, so the ReLUs pass the path through and the network starts as bicubic
        interpolation, learning only the correction (from scratch on a CPU in minutes, where Dong et
        al.'s all-small initialisation learns very slowly). With ``std=0`` it is exactly the identity.
        """
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu", generator=generator)
        self.conv3.weight.normal_(0.0, std, generator=generator)
        self.conv1.weight[0] = 0.0  # filter 0 of layers 1 and 2 sees only channel 0
        self.conv2.weight[0] = 0.0
        self.conv3.weight[:, 0] = 0.0  # the output sees channel 0 only through its centre tap
        for conv in (self.conv1, self.conv2, self.conv3):
            conv.bias.zero_()
            centre = conv.kernel_size[0] // 2
            conv.weight[0, 0, centre, centre] = 1.0


@torch.no_grad()
def super_resolve(model: SRCNN, images: torch.Tensor) -> torch.Tensor:
    """Refine bicubically upsampled ``(N, 3, H, W)`` uint8 RGB images with ``model`` (on their luma).

    Returns uint8 images of the same shape: the network's luma (clipped to [0, 1]) with the input's
    chroma, rounded. A network that outputs its input returns the images unchanged.
    """
    rgb = images.float() / 255.0
    luma = rgb_to_luma(rgb)
    refined = model(luma).clamp(0.0, 1.0)
    return (with_luma(rgb, refined) * 255.0).round().clamp(0, 255).to(torch.uint8)
