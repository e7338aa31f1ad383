"""Convolutions whose kernel covers the whole input, computed as the matrix product they are.

VGG's first fully connected layer is, in timm, a 7x7 convolution over a 7x7 map (``pre_logits.fc1``): one
output position, so it is exactly ``linear(input.flatten(1), weight.flatten(1), bias)``. On a CPU oneDNN's
convolution kernels are several times slower at that shape than a matrix product (measured on 2 AVX2 cores:
3.5 s against 0.8 s for a forward and backward pass of a batch of 32), and that one layer was two thirds of
vgg16's training step at small inputs. :func:`use_dense_convolutions` swaps such layers for
:class:`DenseConv2d`, which takes the matrix-product path whenever the input is exactly one window, and the
ordinary convolution otherwise. Parameters and their names stay the same, so weights load and save as before.

Example:
    >>> conv = nn.Conv2d(8, 4, kernel_size=3)
    >>> model = nn.Sequential(conv)
    >>> use_dense_convolutions(model)
    1
    >>> model[0].weight is conv.weight
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DenseConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that computes a single-window input (``H x W`` equal to the kernel, no padding) as a
    matrix product: the same numbers up to rounding, in a faster kernel."""

    @classmethod
    def replacing(cls, conv: nn.Conv2d) -> DenseConv2d:
        """A DenseConv2d sharing ``conv``'s parameters (the same tensors, so an optimizer keeps working)."""
        dense = cls.__new__(cls)
        dense.__dict__.update(conv.__dict__)
        return dense

    def covers_input(self, x: torch.Tensor) -> bool:
        """Whether ``x`` is exactly one window of this convolution (so its output is 1x1)."""
        return (x.dim() == 4 and tuple(x.shape[-2:]) == self.kernel_size and self.padding == (0, 0)
                and self.dilation == (1, 1) and self.groups == 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.covers_input(x):
            return super().forward(x)
        out = F.linear(x.flatten(1), self.weight.flatten(1), self.bias)
        return out[:, :, None, None]


def _could_cover_input(conv: nn.Conv2d) -> bool:
    """Convolutions that can meet a single-window input: unpadded, undilated, ungrouped, wider than 1x1
    (a 1x1 convolution of a 1x1 map gains nothing measurable)."""
    return (type(conv) is nn.Conv2d and conv.padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.kernel_size != (1, 1))


def use_dense_convolutions(model: nn.Module) -> int:
    """Swap, in place, every plain ``nn.Conv2d`` of ``model`` that could meet a single-window input for a
    :class:`DenseConv2d` with the same parameters; returns how many were swapped."""
    swaps = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, nn.Conv2d) and _could_cover_input(child)]
    for parent, name, child in swaps:
        setattr(parent, name, DenseConv2d.replacing(child))
    return len(swaps)
