"""Log-magnitude spectrum features: what the quality router sees (paper section 2.3, Figure 5).

For each image: grayscale, the magnitude of its 2-D discrete Fourier transform (zero frequency in the
centre), resized to ``65 x 65`` by area averaging, then the logarithm. Low-resolution images that were
upsampled back have almost no energy at high frequencies, which a linear classifier reads off easily.

The transform is written as matrix products with precomputed cosine and sine tables, and the resize as
two more (the matrices ``F.interpolate`` applies along each axis), so the module is plain ``matmul``
arithmetic that ``torch.export``, TorchScript tracing and ONNX handle (``torch.fft`` often is not).

Example:
    >>> spectrum = LogSpectrum(64)
    >>> spectrum(torch.rand(2, 64, 64)).shape
    torch.Size([2, 65, 65])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CqdkitError
from ..models.srcnn import rgb_to_luma

#: Side of the resized spectrum, as in the paper.
SPECTRUM_SIZE = 65
#: Added to the magnitude before the logarithm (magnitudes are orthonormal: an image in [0, 1] has a DC
#: term of at most its side, and 8-bit quantisation noise is about 1e-3 per frequency).
EPSILON = 1e-4


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` or ``(B, 1, H, W)`` images to ``(B, H, W)`` luma (BT.601 weights for colour)."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise CqdkitError(f"expected images of shape (batch, 1 or 3, height, width), got {tuple(images.shape)}")
    if images.shape[1] == 1:
        return images[:, 0]
    return rgb_to_luma(images)[:, 0]


def dft_matrices(n: int, *, shift: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)`` tables of the orthonormal ``n``-point DFT, ``W = (cos - i sin) / sqrt(n)``.

    With ``shift`` the rows are rolled as ``torch.fft.fftshift`` would roll the output, so frequency 0
    lands at index ``n // 2``.
    """
    k = torch.arange(n, dtype=torch.float64)
    if shift:
        k = torch.roll(k, n // 2)
    angle = 2 * math.pi * torch.outer(k, torch.arange(n, dtype=torch.float64)) / n
    scale = 1 / math.sqrt(n)
    return (torch.cos(angle) * scale).float(), (torch.sin(angle) * scale).float()


def resize_matrix(n: int, out: int, mode: str = "area") -> torch.Tensor:
    """The ``(out, n)`` matrix that ``F.interpolate(..., mode=mode)`` applies along one axis.

    ``R_h @ image @ R_w.T`` equals ``F.interpolate(image, size=(out, out), mode=mode)`` for separable
    modes (area, bilinear, nearest).
    """
    eye = torch.eye(n, dtype=torch.float64).view(1, 1, n, n)
    return F.interpolate(eye, size=(out, n), mode=mode)[0, 0].float()


class LogSpectrum(nn.Module):
    """``(B, H, W)`` grayscale images to ``(B, out, out)`` log-magnitude spectra.

    Args:
        image_size: side of the square input images (or ``(height, width)``); fixed, because the DFT
            tables are precomputed for it.
        out_size: side of the resized spectrum (65 in the paper).
        eps: added to the magnitude before the logarithm.
        shift: put the zero frequency in the centre (``fftshift``) before resizing.
    """

    def __init__(
        self,
        image_size: int | tuple[int, int],
        out_size: int = SPECTRUM_SIZE,
        *,
        eps: float = EPSILON,
        shift: bool = True,
    ) -> None:
        super().__init__()
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        if min(height, width, out_size) < 1:
            raise CqdkitError(f"spectrum sizes must be positive, got image {height}x{width} and output {out_size}")
        if eps <= 0:
            raise CqdkitError(f"spectrum eps must be positive, got {eps}")
        self.height, self.width, self.out_size, self.eps, self.shift = height, width, out_size, float(eps), shift
        # Tables are rebuilt from the sizes, so they are not part of saved weights.
        for axis, n in (("h", height), ("w", width)):
            cos, sin = dft_matrices(n, shift=shift)
            self.register_buffer(f"cos_{axis}", cos, persistent=False)
            self.register_buffer(f"sin_{axis}", sin, persistent=False)
            self.register_buffer(f"resize_{axis}", resize_matrix(n, out_size), persistent=False)

    @property
    def num_features(self) -> int:
        return self.out_size * self.out_size

    def magnitude(self, gray: torch.Tensor) -> torch.Tensor:
        """``|DFT2(gray)|`` (orthonormal, shifted if asked): ``(B, H, W)`` to ``(B, H, W)``.

        With ``X = gray``: ``W_h X W_w^T = (C_h X C_w^T - S_h X S_w^T) - i (S_h X C_w^T + C_h X S_w^T)``.
        """
        if gray.dim() != 3 or tuple(gray.shape[1:]) != (self.height, self.width):
            raise CqdkitError(
                f"spectrum expects grayscale images of shape (batch, {self.height}, {self.width}), "
                f"got {tuple(gray.shape)}"
            )
        gray = gray.float()
        x_cos = gray @ self.cos_w.T
        x_sin = gray @ self.sin_w.T
        real = self.cos_h @ x_cos - self.sin_h @ x_sin
        imaginary = self.sin_h @ x_cos + self.cos_h @ x_sin
        return torch.sqrt(real * real + imaginary * imaginary)

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        resized = self.resize_h @ self.magnitude(gray) @ self.resize_w.T
        return torch.log(resized + self.eps)

    def extra_repr(self) -> str:
        return f"image_size=({self.height}, {self.width}), out_size={self.out_size}, eps={self.eps}, shift={self.shift}"
