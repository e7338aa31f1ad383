"""cqdkit's plugin system, built on pluggy (marker name ``cqdkit``).

Plugins implement the hooks of :mod:`cqdkit.plugin.spec`, marked with :data:`hookimpl`, and yield the
typed entries of :mod:`cqdkit.plugin.types`. Third-party packages advertise their plugin module in the
``cqdkit`` entry-point group::

    [project.entry-points.cqdkit]
    sepia = "cqdkit_sepia"
"""

from __future__ import annotations

import pluggy

from .spec import PROJECT

hookimpl = pluggy.HookimplMarker(PROJECT)

from .manager import (  # noqa: E402  (hookimpl must exist before built-in plugins import it)
    AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    PluginClash,
    PluginClashWarning,
    PluginFailure,
    PluginInfo,
    PluginManager,
    configure_autoload,
    get_plugin_manager,
    set_plugin_manager,
)
from .types import (  # noqa: E402
    KINDS,
    Backbone,
    BackboneCatalog,
    DatasetSource,
    Degradation,
    Distiller,
    DistillLoss,
    Param,
    PluginEntry,
)

__all__ = [
    "AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "Backbone",
    "BackboneCatalog",
    "DatasetSource",
    "Degradation",
    "Distiller",
    "DistillLoss",
    "Param",
    "PluginEntry",
    "PluginClash",
    "PluginClashWarning",
    "PluginFailure",
    "PluginInfo",
    "PluginManager",
    "configure_autoload",
    "get_plugin_manager",
    "hookimpl",
    "set_plugin_manager",
]
