"""Test kit for cqdkit plugin authors: a pytest plugin and conformance checks.

The checks, one import path::

    from cqdkit.testing import check_degradation, check_loss, check_backbone, check_distiller

    check_degradation(spec_or_name, manager=None)   # a degradation op's contract
    check_loss(name_or_entry, manager=None)         # a logit distillation loss's contract
    check_distiller(name_or_entry, manager=None)    # a distiller's contract, in a tiny training
    check_backbone(name, manager=None)              # a backbone's contract

The fixtures: opt in from your ``conftest.py``::

    pytest_plugins = ["cqdkit.testing"]

    def test_my_plugin(register_plugin, cqdkit_plugin_manager):
        register_plugin(my_plugin_module)
        check_degradation("sepia", manager=cqdkit_plugin_manager)

Fixtures:
    cqdkit_plugin_manager: a fresh :class:`~cqdkit.plugin.PluginManager` with built-ins only (no entry-point
        autoload), installed as the process-wide manager for the duration of the test.
    register_plugin: ``register_plugin(plugin, name=None) -> name`` registers a plugin module or object in
        that manager for the duration of one test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cqdkit.lazy import lazy_attributes
from cqdkit.plugin import PluginManager, set_plugin_manager

# Conformance checks live in their own modules (they import hypothesis, torch, ...); loaded on first use.
_LAZY = {
    "check_degradation": "cqdkit.testing.degradations",
    "check_loss": "cqdkit.testing.losses",
    "check_backbone": "cqdkit.testing.backbones",
    "check_distiller": "cqdkit.testing.distillers",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


@pytest.fixture
def cqdkit_plugin_manager() -> Iterator[PluginManager]:
    """A fresh plugin manager with cqdkit's built-ins and no third-party autoload."""
    manager = PluginManager(autoload=False)
    previous = set_plugin_manager(manager)
    try:
        yield manager
    finally:
        set_plugin_manager(previous)


@pytest.fixture
def register_plugin(cqdkit_plugin_manager: PluginManager) -> Iterator[Callable[..., str]]:
    """Register plugins for one test: ``register_plugin(module_or_object, name=None) -> name``."""
    names: list[str] = []

    def register(plugin: Any, name: str | None = None) -> str:
        registered = cqdkit_plugin_manager.register(plugin, name=name)
        names.append(registered)
        return registered

    yield register
    for name in reversed(names):
        cqdkit_plugin_manager.unregister(name)


__all__ = ["check_backbone", "check_degradation", "check_distiller", "check_loss", "cqdkit_plugin_manager",
           "register_plugin"]
