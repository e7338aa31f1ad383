"""Building a backbone by name (its preprocessing: :mod:`cqdkit.models.preprocessing`).

Names resolve through the plugin manager: cqdkit's own backbones (``vggm``, ``convnet-s``,
``convnet-m``, and any plugin's) win over timm's model zoo, which serves every other timm name.

Example:
    >>> model = create_backbone("convnet-s", num_classes=10)
    >>> type(model).__name__
    'ConvNet'
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import PluginError, SpecError
from ..plugin import PluginManager, get_plugin_manager
from ..plugin.guard import describe_plugin, reraise

#: Images in the batch :func:`check_forward` runs a third-party backbone on.
PROBE_BATCH = 2


def create_backbone(
    name: str,
    *,
    num_classes: int,
    in_chans: int = 3,
    pretrained: bool = False,
    manager: PluginManager | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build backbone ``name`` mapping ``(N, in_chans, H, W)`` images to ``(N, num_classes)`` logits.

    Raises:
        UnknownNameError: no plugin (nor timm) provides ``name``; the message lists close names.
        SpecError: ``num_classes`` or ``in_chans`` is not a positive integer.
        CqdkitError: pretrained weights were asked for and are not available.
        PluginError: a third-party factory raised something else (chained to it).
    """
    for what, value in (("num_classes", num_classes), ("in_chans", in_chans)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"backbone {name!r}: {what} must be a positive integer, got {value!r}")
    manager = manager or get_plugin_manager()
    entry = manager.backbone(name)
    try:
        return entry.factory(num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **kwargs)
    except Exception as error:  # a plugin's bug: one line naming it (cqdkit.plugin.guard)
        reraise(manager.provider("backbone", name), "backbone factory", error)


def check_forward(name: str, *, num_classes: int, in_chans: int, image_size: int,
                  manager: PluginManager | None = None) -> None:
    """Run a third-party backbone ``name`` once on a batch of :data:`PROBE_BATCH` zero images, so that a forward
    pass that raises or returns logits of the wrong shape is a one-line error naming the plugin before anything
    trains. cqdkit's own backbones (timm's too) are not run; the global random streams are left alone.

    Raises:
        PluginError: the plugin's forward pass raised, or did not return ``(PROBE_BATCH, num_classes)`` logits.
    """
    manager = manager or get_plugin_manager()
    plugin = manager.provider("backbone", name)
    if plugin is None or plugin.builtin:
        return
    with torch.random.fork_rng(devices=[]):
        model = create_backbone(name, num_classes=num_classes, in_chans=in_chans, manager=manager).eval()
        images = torch.zeros(PROBE_BATCH, in_chans, image_size, image_size)
        try:
            with torch.no_grad():
                logits = model(images)
        except Exception as error:  # a plugin's bug: one line naming it (cqdkit.plugin.guard)
            reraise(plugin, f"backbone {name!r} forward pass on {tuple(images.shape)} images", error)
    expected = (PROBE_BATCH, num_classes)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise PluginError(f"backbone {name!r} of {describe_plugin(plugin)} returned {got} for {tuple(images.shape)} "
                          f"images; expected logits of shape {expected}")
