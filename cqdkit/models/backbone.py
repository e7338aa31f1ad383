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

from torch import nn

from ..errors import SpecError
from ..plugin import PluginManager, get_plugin_manager
from ..plugin.guard import reraise


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
