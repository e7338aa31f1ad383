"""Loading plugins and looking up what they provide.

The :class:`PluginManager` wraps pluggy's manager. It registers cqdkit's built-in plugin modules first,
then (unless autoload is disabled) every entry point in the ``cqdkit`` group, each in its own
``try`` so that one broken third-party package is reported -- with its name and distribution -- instead of
breaking every command. Hooks are called one implementation at a time for the same reason.

Two plugins that provide the same name (a clash) break nothing either: as conda does, the first one
registered keeps the name -- the built-ins come first, then the installed distributions in the order of
their names -- the later entry is skipped, and a :class:`PluginClashWarning` naming both distributions is
issued once; ``cqdkit plugins`` lists the skipped entry.

Example:
    >>> pm = PluginManager(autoload=False)
    >>> pm.degradation("tps").name
    'tps'
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import importlib.metadata
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from .. import __version__
from ..errors import PluginError, UnknownNameError, closest_matches
from . import spec
from .guard import Guarded
from .types import (
    ENTRY_TYPES,
    KINDS,
    Backbone,
    BackboneCatalog,
    DatasetSource,
    Degradation,
    Distiller,
    DistillLoss,
    PluginEntry,
)

ENTRY_POINT_GROUP = "cqdkit"
AUTOLOAD_ENV = "CQDKIT_DISABLE_PLUGIN_AUTOLOAD"

#: cqdkit's own plugins: ordinary plugin modules, registered through the same hooks as anyone's.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "cqdkit.degradations.plugin",
    "cqdkit.models.plugin",
    "cqdkit.losses.plugin",
    "cqdkit.data.plugin",
)


@dataclass(frozen=True)
class PluginInfo:
    """Where a registered plugin came from."""

    name: str
    dist: str | None = None  # distribution name, None for built-ins and hand-registered plugins
    version: str | None = None
    builtin: bool = False

    def describe(self) -> str:
        if self.dist:
            return f"{self.name} ({self.dist} {self.version})"
        if self.builtin:
            return f"{self.name} (cqdkit {__version__}, built in)"
        return self.name


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be imported or registered, or that raised inside a hook."""

    plugin: PluginInfo
    stage: str  # "import", "register" (a misspelt hook, a hook with arguments) or the hook name
    error: BaseException

    def describe(self) -> str:
        if self.stage == "register" and isinstance(self.error, PluginError):
            return str(self.error)  # already names the plugin and says what is wrong
        what = {"import": "failed to import", "register": "could not be registered"}.get(
            self.stage, f"raised in {self.stage}")
        return f"plugin {self.plugin.describe()} {what}: {type(self.error).__name__}: {self.error}"


class PluginClashWarning(UserWarning):
    """Two plugins provide one name; the first registered keeps it (see :class:`PluginClash`)."""


@dataclass(frozen=True)
class PluginClash:
    """Two plugins provide the same ``name`` of ``kind``: ``kept``'s entry is used, ``skipped``'s is not."""

    kind: str
    name: str
    kept: PluginInfo
    skipped: PluginInfo
    skipped_entry: PluginEntry

    def describe(self) -> str:
        """One line naming both plugins and what to do, e.g. for a third-party ``jpeg``."""
        if self.kept.builtin:
            why = "the built-in is kept"
        else:
            why = f"the first registered is kept ({self.kept.dist or self.kept.name})"
        advice = (f"; rename the entry in {self.skipped.dist} (cqdkit's names: docs/plugins.md#names-cqdkit-uses), "
                  f"or pip uninstall {self.skipped.dist}") if self.skipped.dist else ""
        return (f"{self.kind} {self.name!r} is provided by {self.kept.describe()} and by {self.skipped.describe()}: "
                f"{why}, the entry of {self.skipped.dist or self.skipped.name} is skipped{advice}")


@dataclass(frozen=True)
class Provided:
    """One entry together with the plugin that provided it."""

    kind: str
    entry: PluginEntry
    plugin: PluginInfo


def autoload_disabled() -> bool:
    """Whether ``CQDKIT_DISABLE_PLUGIN_AUTOLOAD`` asks for built-ins only."""
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


class PluginManager:
    """cqdkit's plugin registry, built on :class:`pluggy.PluginManager`.

    Args:
        autoload: load third-party plugins from the ``cqdkit`` entry-point group. ``None`` (the default)
            means "unless ``CQDKIT_DISABLE_PLUGIN_AUTOLOAD`` is set".
        builtins: register cqdkit's built-in plugins.
    """

    def __init__(self, *, autoload: bool | None = None, builtins: bool = True) -> None:
        self.pm = pluggy.PluginManager(spec.PROJECT)
        self.pm.add_hookspecs(spec.CqdkitHookSpecs)
        self.failures: list[PluginFailure] = []
        self.clashes: list[PluginClash] = []
        self._info: dict[str, PluginInfo] = {}
        self._cache: dict[str, list[Provided]] = {}
        if builtins:
            for module_name in BUILTIN_PLUGINS:
                self.register(importlib.import_module(module_name), name=module_name, builtin=True)
        if autoload is None:
            autoload = not autoload_disabled()
        self.autoload = autoload
        if autoload:
            self.load_entry_points()

    # -- registration -------------------------------------------------------------------------

    def register(
        self,
        plugin: Any,
        name: str | None = None,
        *,
        dist: str | None = None,
        version: str | None = None,
        builtin: bool = False,
    ) -> str:
        """Register a plugin module or object; returns its name.

        Raises:
            PluginError: the plugin defines a hook that does not exist (a misspelt name), or a hook
                whose arguments do not match the specification.
        """
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        info = PluginInfo(name=name, dist=dist, version=version, builtin=builtin)
        self._check_hook_names(plugin, info)
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except (pluggy.PluginValidationError, ValueError) as error:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            details = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
            raise PluginError(f"plugin {info.describe()} is invalid: {details}") from error
        self._info[name] = info
        self._cache.clear()
        return name

    def unregister(self, name: str) -> None:
        """Remove a plugin registered under ``name``."""
        self.pm.unregister(name=name)
        self._info.pop(name, None)
        self._cache.clear()
        self.clashes = [c for c in self.clashes if name not in (c.kept.name, c.skipped.name)]  # found again if left

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register every plugin advertised in the entry-point ``group``.

        A plugin that fails to import, or that cannot be registered (a misspelt hook, a hook with
        arguments), is recorded in :attr:`failures` and skipped: one broken package never breaks cqdkit.
        Distributions are registered in the order of their names, so which of two clashing plugins keeps a
        name does not depend on the order of ``sys.path``.
        """
        def order(entry_point: importlib.metadata.EntryPoint) -> tuple[str, str]:
            dist = getattr(entry_point, "dist", None)
            return ((dist.metadata["Name"] or "").lower() if dist is not None else "", entry_point.name)

        for entry_point in sorted(importlib.metadata.entry_points(group=group), key=order):
            dist = getattr(entry_point, "dist", None)
            info = PluginInfo(
                name=entry_point.name,
                dist=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
            if self.pm.has_plugin(info.name) or self.pm.is_blocked(info.name):
                continue
            try:
                plugin = entry_point.load()
            except Exception as error:  # a broken third-party package must not break cqdkit
                self.failures.append(PluginFailure(info, "import", error))
                continue
            try:
                self.register(plugin, name=info.name, dist=info.dist, version=info.version)
            except Exception as error:  # PluginError, or a plugin object that breaks dir() or pluggy
                self.failures.append(PluginFailure(info, "register", error))

    def _check_hook_names(self, plugin: Any, info: PluginInfo) -> None:
        known = set(spec.HOOK_FOR_KIND.values())
        for attribute in dir(plugin):
            if attribute.startswith("cqdkit_") and attribute not in known:
                if callable(getattr(plugin, attribute, None)):
                    hint = closest_matches(attribute, known, n=1)
                    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                    raise PluginError(
                        f"plugin {info.describe()} defines unknown hook {attribute!r}{suggestion} "
                        f"(hooks: {', '.join(sorted(known))})"
                    )

    # -- what is registered -------------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        """Every registered plugin, built-ins first."""
        return sorted(self._info.values(), key=lambda info: (not info.builtin, info.name))

    def third_party(self) -> list[PluginInfo]:
        """Plugins that came from installed distributions."""
        return [info for info in self.plugins() if info.dist]

    def provided(self, kind: str) -> list[Provided]:
        """Every entry of ``kind`` with its plugin, sorted by name.

        Each hook implementation is called on its own: one that raises is recorded in :attr:`failures`
        and the others still count. A name provided twice keeps its first provider's entry; the clash is
        recorded in :attr:`clashes` and warned about once (:class:`PluginClashWarning`).
        """
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        if kind in self._cache:
            return self._cache[kind]
        hook_name = spec.HOOK_FOR_KIND[kind]
        hook = getattr(self.pm.hook, hook_name)
        found: dict[str, Provided] = {}
        for impl in hook.get_hookimpls():  # registration order
            info = self._info.get(impl.plugin_name, PluginInfo(impl.plugin_name))
            try:
                entries = list(impl.function() or ())
                for entry in entries:
                    if not isinstance(entry, ENTRY_TYPES[kind]):
                        expected = " or ".join(t.__name__ for t in ENTRY_TYPES[kind])
                        raise TypeError(f"{hook_name} yielded {entry!r}; expected {expected}")
            except Exception as error:
                self.failures.append(PluginFailure(info, hook_name, error))
                continue
            for entry in entries:
                if entry.name in found:
                    self._clash(PluginClash(kind, entry.name, found[entry.name].plugin, info, entry))
                else:
                    found[entry.name] = Provided(kind, entry, info)
        self._cache[kind] = [found[name] for name in sorted(found)]
        return self._cache[kind]

    def _clash(self, clash: PluginClash) -> None:
        if clash not in self.clashes:
            self.clashes.append(clash)
            warnings.warn(clash.describe(), PluginClashWarning, stacklevel=3)

    def clashes_for(self, kind: str) -> list[PluginClash]:
        """The clashes among the entries of ``kind`` (computing them if needed)."""
        self.provided(kind)
        return [clash for clash in self.clashes if clash.kind == kind]

    def entries(self, kind: str) -> list[PluginEntry]:
        """Every entry of ``kind``, sorted by name."""
        return [p.entry for p in self.provided(kind)]

    def failures_for(self, kind: str) -> list[PluginFailure]:
        """Failures that may have hidden an entry of ``kind``: whole plugins, and that kind's hook."""
        hook_name = spec.HOOK_FOR_KIND[kind]
        return [f for f in self.failures if f.stage in ("import", "register", hook_name)]

    def problems(self) -> list[str]:
        """Every problem with the registered plugins, one line each: plugins that failed to import or
        register, hooks that raised, names two plugins provide (the later one skipped)."""
        clashes = [clash.describe() for kind in KINDS for clash in self.clashes_for(kind)]
        return list(dict.fromkeys([failure.describe() for failure in self.failures] + clashes))

    def provider(self, kind: str, name: str) -> PluginInfo | None:
        """The plugin that provides ``name`` of ``kind`` (a backbone catalog's for a catalog name), or
        None when none does."""
        for provided in self.provided(kind):
            if provided.entry.name == name:
                return provided.plugin
        if kind == "backbone":
            for provided in self.provided(kind):
                if isinstance(provided.entry, BackboneCatalog) and provided.entry.contains(name):
                    return provided.plugin
        return None

    # -- lookups ------------------------------------------------------------------------------

    def get(self, kind: str, name: str) -> PluginEntry:
        """The entry of ``kind`` called ``name``.

        Raises:
            UnknownNameError: no plugin provides it (the message lists the closest names, and any
                plugin that failed to load and might have provided it).
        """
        if kind == "backbone":
            return self.backbone(name)
        for provided in self.provided(kind):
            if provided.entry.name == name:
                return provided.entry
        raise self._unknown(kind, name, [p.entry.name for p in self.provided(kind)])

    def degradation(self, name: str) -> Degradation:
        return self.get("degradation", name)  # type: ignore[return-value]

    def loss(self, name: str) -> DistillLoss | Distiller:
        """The loss entry ``name``: a logit loss or a distiller. A third-party loss comes with its factory and
        the losses it builds wrapped (:class:`~cqdkit.plugin.guard.Guarded`): an exception inside them is a
        one-line :class:`PluginError` naming the plugin, chained to the original. A third-party distiller's
        factory is wrapped likewise (the trainer names the plugin when its term raises)."""
        entry: DistillLoss | Distiller = self.get("loss", name)  # type: ignore[assignment]
        plugin = self.provider("loss", name)
        if plugin is None or plugin.builtin:
            return entry
        if isinstance(entry, Distiller):
            return dataclasses.replace(entry, factory=Guarded(entry.factory, plugin, "distiller factory"))
        return dataclasses.replace(entry, factory=Guarded(entry.factory, plugin, "loss factory", result_what="loss"))

    def dataset(self, name: str) -> DatasetSource:
        return self.get("dataset", name)  # type: ignore[return-value]

    def backbone(self, name: str) -> Backbone:
        """Resolve a backbone: named entries first (cqdkit's ``vggm`` beats timm's), then catalogs."""
        named = [p.entry for p in self.provided("backbone") if isinstance(p.entry, Backbone)]
        for entry in named:
            if entry.name == name:
                return entry
        for catalog in self.backbone_catalogs():
            if catalog.contains(name):
                return Backbone(
                    name=name.lower(),
                    summary=f"{catalog.name} model {name}",
                    factory=_CatalogFactory(catalog, name),
                )
        known = [e.name for e in named]
        for catalog in self.backbone_catalogs():
            known += catalog.list_names(f"*{name[:3]}*") if len(name) >= 3 else []
        raise self._unknown("backbone", name, known)

    def backbone_catalogs(self) -> list[BackboneCatalog]:
        return [p.entry for p in self.provided("backbone") if isinstance(p.entry, BackboneCatalog)]

    def list_backbones(self, pattern: str = "*") -> list[tuple[str, str]]:
        """``(name, source)`` for every backbone matching a shell-style wildcard, named ones first."""
        rows: list[tuple[str, str]] = []
        seen: set[str] = set()
        for provided in self.provided("backbone"):
            if isinstance(provided.entry, Backbone) and fnmatch.fnmatchcase(provided.entry.name, pattern):
                rows.append((provided.entry.name, provided.plugin.describe()))
                seen.add(provided.entry.name)
        for catalog in self.backbone_catalogs():
            rows += [(n, catalog.name) for n in catalog.list_names(pattern) if n not in seen]
        return rows

    def _unknown(self, kind: str, name: str, known: Iterable[str]) -> UnknownNameError:
        broken = self.failures_for(kind)
        hint = ""
        if broken:
            hint = "Plugins that failed to load: " + "; ".join(f.describe() for f in broken)
        return UnknownNameError(kind, name, known, hint=hint)


@dataclass(frozen=True)
class _CatalogFactory:
    """Binds a catalog's factory to one model name (a picklable partial with a readable repr)."""

    catalog: BackboneCatalog
    model_name: str

    def __call__(self, **kwargs: Any) -> Any:
        return self.catalog.factory(self.model_name, **kwargs)


_default: PluginManager | None = None
_default_autoload: bool | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, created on first use."""
    global _default
    if _default is None:
        _default = PluginManager(autoload=_default_autoload)
    return _default


def set_plugin_manager(manager: PluginManager | None) -> PluginManager | None:
    """Replace the process-wide manager (``None`` resets it); returns the previous one."""
    global _default
    previous, _default = _default, manager
    return previous


def configure_autoload(enabled: bool | None) -> None:
    """Set whether the process-wide manager loads entry points (``--no-plugins`` sets False)."""
    global _default_autoload, _default
    _default_autoload = enabled
    _default = None

