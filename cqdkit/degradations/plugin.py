"""Built-in degradation plugin: registers cqdkit's degradations through the ``cqdkit_degradations`` hook."""

from __future__ import annotations

from cqdkit.plugin import hookimpl


@hookimpl
def cqdkit_degradations():
    return []
