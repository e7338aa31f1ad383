"""Built-in dataset plugin: registers cqdkit's dataset readers through the ``cqdkit_datasets`` hook."""

from __future__ import annotations

from cqdkit.plugin import hookimpl


@hookimpl
def cqdkit_datasets():
    return []
