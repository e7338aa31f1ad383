"""Intermediate features of any backbone: its named layers, their output shapes, and taps that record them.

Every ``torch.nn.Module`` has named submodules (``features.8``, ``layer3``, ``stages.2``); a
:class:`FeatureTap` records their outputs during a forward pass with forward hooks, so it works for timm
models, cqdkit's own, and any third-party backbone without a feature API. :class:`Layers` lists a network's
layers in the order they run, with each output's shape at one input size, and resolves the names a spec
gives: a module name, or an index into the network's *stages*, ``-1`` being the last.

The stages come from timm's ``feature_info`` (``[{"module": "layer4", "num_chs": 512, ...}, ...]``), which
cqdkit's ``vggm`` and ``convnet-*`` carry too; a network without one gets every layer whose output is a
spatial map, in the order they run. The default layer is the last stage: the last convolutional stage.

Example:
    >>> from cqdkit.models.convnet import ConvNet
    >>> layers = Layers.probe(ConvNet((8, 16), num_classes=3), image_size=32)
    >>> layers.default, layers.shape(layers.default)
    ('features.6', (16, 16, 16))
    >>> layers.resolve("-2")
    'features.2'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from ..errors import SpecError

#: How many layer names an error message lists before it says how many more there are.
LISTED = 30


class FeatureTap:
    """Records the outputs of named submodules of ``model`` while it runs (forward hooks).

    Use it as a context manager around the forward passes; :meth:`take` returns what the last pass recorded
    and forgets it. The outputs are the tensors the layers returned (their graphs included), so a loss on them
    trains the layers below. A tap with no layers installs nothing.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
        >>> with FeatureTap(model, ["0"]) as tap:
        ...     _ = model(torch.zeros(2, 4))
        ...     tuple(tap.take()["0"].shape)
        (2, 3)

    Raises:
        SpecError: a name that is not a submodule of ``model`` (the message lists the valid ones).
    """

    def __init__(self, model: nn.Module, layers: Iterable[str]) -> None:
        self.layers = tuple(dict.fromkeys(layers))
        modules = dict(model.named_modules())
        for name in self.layers:
            if name not in modules or not name:
                raise SpecError(f"no layer {name!r} in {type(model).__name__}; its layers: "
                                f"{_listing([n for n in modules if n])}")
        self._modules = [modules[name] for name in self.layers]
        self._handles: list[Any] = []
        self._outputs: dict[str, torch.Tensor] = {}

    def __enter__(self) -> FeatureTap:
        self._handles = [module.register_forward_hook(partial(self._keep, name))
                         for name, module in zip(self.layers, self._modules)]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._outputs = {}

    def _keep(self, name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        self._outputs[name] = output

    def take(self) -> dict[str, torch.Tensor]:
        """The outputs recorded since the last call, by layer name."""
        outputs, self._outputs = self._outputs, {}
        missing = [name for name in self.layers if name not in outputs]
        if missing:
            raise SpecError(f"layer(s) {', '.join(missing)} did not run in the forward pass; choose layers the "
                            "network uses")
        return outputs


@dataclass(frozen=True)
class Layers:
    """The layers of one network: names in the order they run, output shapes (one sample's), its stages.

    Build it with :meth:`probe`. ``shapes[name]`` is ``(C, H, W)`` for a spatial map, ``(C,)`` for a vector,
    ``(L, C)`` for a token sequence.
    """

    architecture: str
    names: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]
    stages: tuple[str, ...]

    @classmethod
    def probe(cls, model: nn.Module, *, image_size: int, in_chans: int | None = None,
              architecture: str = "") -> Layers:
        """Run ``model`` once on zeros (eval mode, no gradients, the global random streams untouched) and
        record every named layer's output shape."""
        architecture = architecture or type(model).__name__
        channels = in_chans or _input_channels(model)
        order: list[str] = []
        shapes: dict[str, tuple[int, ...]] = {}

        def record(name: str, module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):  # a module that runs twice: its last output, as a tap records
                if name not in shapes:
                    order.append(name)
                shapes[name] = tuple(output.shape[1:])

        handles = [module.register_forward_hook(partial(record, name))
                   for name, module in model.named_modules() if name]
        was_training = model.training
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                model.eval()
                device = next((p.device for p in model.parameters()), torch.device("cpu"))
                model(torch.zeros(2, channels, image_size, image_size, device=device))
        finally:
            for handle in handles:
                handle.remove()
            model.train(was_training)
        return cls(architecture, tuple(order), shapes, _stages(model, order, shapes))

    @property
    def default(self) -> str:
        """The last stage: the last convolutional stage of a CNN."""
        if not self.stages:
            raise SpecError(f"{self.architecture} has no layer with a spatial output to distil from; name one "
                            f"explicitly ({_listing(self.names)})")
        return self.stages[-1]

    def resolve(self, name: str | int | None) -> str:
        """The layer a spec names: ``None`` or ``""`` for :attr:`default`, a stage index (``-1``: the last stage,
        ``0``: the first), or a module name.

        Raises:
            SpecError: a name this network does not have or an index past its stages; the message lists the
                stages and the layers.
        """
        if name is None or name == "":
            return self.default
        text = str(name).strip()
        if _is_index(text):
            index = int(text)
            if -len(self.stages) <= index < len(self.stages):
                return self.stages[index]
            raise SpecError(f"stage {index} of {self.architecture}: it has {len(self.stages)} stages "
                            f"({', '.join(self.stages)}); expected -{len(self.stages)} to {len(self.stages) - 1}")
        if text not in self.shapes:
            raise SpecError(f"{self.architecture} has no layer {text!r}; its stages: {', '.join(self.stages) or 'none'}"
                            f"; all its layers: {_listing(self.names)}")
        return text

    def shape(self, name: str) -> tuple[int, ...]:
        """One sample's output shape at layer ``name`` (resolved as by :meth:`resolve`)."""
        return self.shapes[self.resolve(name)]

    def channels(self, name: str) -> int:
        """The channels of layer ``name``'s output: ``C`` of ``(C, H, W)``, ``(C,)`` or ``(L, C)``."""
        shape = self.shape(name)
        return shape[-1] if len(shape) == 2 else shape[0]


def _stages(model: nn.Module, order: Sequence[str], shapes: dict[str, tuple[int, ...]]) -> tuple[str, ...]:
    """The network's stages: its ``feature_info`` modules, else, for each run of layers whose spatial outputs
    (``H x W > 1``) share one size, the last layer of the run to finish (a stage ends where the map shrinks)."""
    info = getattr(model, "feature_info", None)
    if info is not None:
        entries = info.get_dicts() if hasattr(info, "get_dicts") else info
        names = tuple(entry["module"] for entry in entries if isinstance(entry, dict) and entry.get("module") in shapes)
        if names:
            return names
    stages: list[str] = []
    size: tuple[int, ...] | None = None
    for name in order:
        shape = shapes[name]
        if len(shape) != 3 or shape[1] * shape[2] <= 1:
            continue
        if shape[1:] == size:
            stages[-1] = name
        else:
            stages.append(name)
            size = shape[1:]
    return tuple(stages)


def _input_channels(model: nn.Module) -> int:
    """The input channels of ``model``'s first convolution or linear layer (3 when it has neither)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
        if isinstance(module, nn.Linear):
            return 3
    return 3


def _is_index(text: str) -> bool:
    return re.fullmatch(r"-?\d+", text) is not None


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:LISTED])
    return shown + (f", ... and {len(names) - LISTED} more" if len(names) > LISTED else "")


#: The layers of a network that was not probed (a run whose terms all read logits only).
NO_LAYERS = Layers("a network that was not probed", (), {}, ())
