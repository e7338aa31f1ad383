"""Hook specifications: the one place that says what a cqdkit plugin can provide.

A plugin is a module or object with functions named after these hooks and marked with
``cqdkit.plugin.hookimpl``. Each hook takes no arguments and yields typed entries (see
:mod:`cqdkit.plugin.types`). Built-in plugins use exactly these hooks.

Example plugin module::

    from cqdkit.plugin import hookimpl, Degradation

    @hookimpl
    def cqdkit_degradations():
        yield Degradation(name="sepia", summary="Sepia tone", factory=make_sepia)
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from .types import Backbone, BackboneCatalog, DatasetSource, Degradation, DistillLoss

PROJECT = "cqdkit"
hookspec = pluggy.HookspecMarker(PROJECT)

#: Hook name for each kind of entry.
HOOK_FOR_KIND: dict[str, str] = {
    "degradation": "cqdkit_degradations",
    "backbone": "cqdkit_backbones",
    "loss": "cqdkit_losses",
    "dataset": "cqdkit_datasets",
}


class CqdkitHookSpecs:
    """The hook specifications (methods of one class, as in conda and pytest)."""

    @hookspec
    def cqdkit_degradations(self) -> Iterable[Degradation]:
        """Yield :class:`~cqdkit.plugin.types.Degradation` entries (low-quality views)."""

    @hookspec
    def cqdkit_backbones(self) -> Iterable[Backbone | BackboneCatalog]:
        """Yield :class:`~cqdkit.plugin.types.Backbone` entries, or a lazily resolved
        :class:`~cqdkit.plugin.types.BackboneCatalog` (a whole model zoo)."""

    @hookspec
    def cqdkit_losses(self) -> Iterable[DistillLoss]:
        """Yield :class:`~cqdkit.plugin.types.DistillLoss` entries (the L2 term of Equation 1)."""

    @hookspec
    def cqdkit_datasets(self) -> Iterable[DatasetSource]:
        """Yield :class:`~cqdkit.plugin.types.DatasetSource` entries (labelled image datasets)."""
