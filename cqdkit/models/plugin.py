"""Built-in backbone plugin: cqdkit's own networks and the lazily resolved timm catalog."""

from __future__ import annotations

from cqdkit.plugin import hookimpl


@hookimpl
def cqdkit_backbones():
    return []
