"""Layer-sequential unit-variance initialisation (LSUV; Mishkin and Matas, "All you need is a good init", 2016).

A deep network without normalisation layers (vgg16) trained from a random init learns slowly or not at all:
its activations shrink or grow layer by layer. LSUV rescales the weights of every convolution and linear
layer, layer by layer from the input, until the layer's output on one batch of real training images has unit
variance. The data decide the scales; nothing is learned.

The paper first makes every layer orthonormal. cqdkit keeps the network's own random init instead: the QR
decompositions take 26 s for vgg16's two 4096-wide layers on 2 CPU cores, and without them vgg16 learned as
well (from scratch, 48 px, tps, seed 0: 94% validation accuracy after 8 epochs against 85% with the
orthonormal start and 29% without LSUV; docs/reproduce-paper.md).

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8 * 12 * 12, 4))
    >>> stds = lsuv_init(net, torch.rand(16, 3, 16, 16))
    >>> all(abs(std - 1) < 0.1 for std in stds.values())
    True
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import TrainingError

#: Each layer's output std is brought within this distance of 1 ...
TOLERANCE = 0.1
#: ... in at most this many rescalings (the paper's T_max).
MAX_ITERATIONS = 10


class _LayerReached(Exception):
    """Raised by the hook of the layer being scaled, to end the forward pass there."""


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The convolution and linear layers of ``model`` that LSUV initialises, in module order."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]


@torch.no_grad()
def lsuv_init(model: nn.Module, inputs: torch.Tensor, *, tolerance: float = TOLERANCE,
              max_iterations: int = MAX_ITERATIONS) -> dict[str, float]:
    """Rescale ``model``'s weight layers by LSUV on ``inputs`` (one batch, already normalised): deterministic given
    the model's weights and the batch; biases are left as they are. Returns each layer's output standard deviation as last measured (within ``tolerance`` of 1
    unless ``max_iterations`` ran out).

    Raises:
        TrainingError: a layer's output on the batch is constant or not finite, so no scale can give it unit
            variance (a batch of one identical image, or inputs holding NaN).
    """
    layers = weight_layers(model)
    was_training = model.training
    model.eval()  # dropout off: the variance of the layer as it computes at test time and (on average) in training
    stds: dict[str, float] = {}
    try:
        for name, layer in layers:
            seen: dict[str, torch.Tensor] = {}

            def stop_here(module: nn.Module, args: object, output: torch.Tensor) -> None:
                seen["output"] = output
                raise _LayerReached  # the layers after this one need not run

            hook = layer.register_forward_hook(stop_here)
            try:
                for _ in range(max_iterations):
                    try:
                        model(inputs)
                    except _LayerReached:
                        pass
                    if "output" not in seen:  # a layer the forward pass does not use: nothing to scale
                        break
                    std = float(seen["output"].float().std())
                    if not (std > 0 and torch.isfinite(torch.tensor(std))):
                        raise TrainingError(f"LSUV initialisation: the output of layer {name!r} on the batch has "
                                            f"standard deviation {std}; it needs varied, finite images")
                    if abs(std - 1.0) < tolerance:
                        break
                    layer.weight.div_(std)
                if "output" in seen:
                    stds[name] = std
            finally:
                hook.remove()
    finally:
        model.train(was_training)
    return stds
