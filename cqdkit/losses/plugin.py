"""Built-in loss plugin: registers cqdkit's distillation losses through the ``cqdkit_losses`` hook."""

from __future__ import annotations

from cqdkit.plugin import hookimpl


@hookimpl
def cqdkit_losses():
    return []
