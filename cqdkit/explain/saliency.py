"""Gradient saliency (paper section 3.2, Figure 6 left).

For an image I with true class y, G = d log p(y | I) / dI is the gradient of the log-likelihood of the
true label with respect to the input pixels, and the saliency of pixel i is the L2 norm of its gradient
vector over the colour channels, ``||G_i||_2 = sqrt(G_i^r^2 + G_i^g^2 + G_i^b^2)``.

The gradient is taken with respect to the image as stored (0-255 pixel values, before the model's
normalisation), so a model's preprocessing is part of what is differentiated.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def saliency(
    model: nn.Module,
    normalizer: Callable[[torch.Tensor], torch.Tensor] | None,
    images: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    """Per-pixel gradient norms ``||d log p(label | image) / d image||_2`` over channels.

    Args:
        model: a classifier returning logits; it is put in eval mode (its parameter gradients are
            left untouched).
        normalizer: maps the images to the model's input (e.g. :class:`cqdkit.train.engine.Normalizer`),
            or None to feed the images as they are.
        images: ``(B, C, H, W)``, uint8 or float, on any device (moved to the model's device).
        labels: ``(B,)`` true class indices.

    Returns:
        ``(B, H, W)`` float32 saliency maps on the CPU, each pixel ``>= 0``.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
        >>> saliency(model, None, torch.zeros(1, 3, 2, 2), torch.tensor([0])).shape
        torch.Size([1, 2, 2])
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must be ({images.shape[0]},), got shape {tuple(labels.shape)}")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else images.device
    model.eval()
    pixels = images.to(device).float().requires_grad_(True)
    with torch.enable_grad():
        inputs = normalizer(pixels) if normalizer is not None else pixels
        log_probs = F.log_softmax(model(inputs).float(), dim=1)
        chosen = log_probs.gather(1, labels.to(device).long().view(-1, 1)).sum()
        (gradient,) = torch.autograd.grad(chosen, pixels)
    return gradient.detach().norm(dim=1).cpu()
