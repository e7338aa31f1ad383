"""Degradation spec strings: ``NAME[:key=value[,key=value...]][+NAME...]``.

A spec names one or more degradations with their parameters; ops apply left to right to z::

    >>> parse_spec("lowres:size=32+jpeg:severity=3")  # doctest: +NORMALIZE_WHITESPACE
    [('lowres', {'size': 32, 'upsample': 'bicubic', 'weights': None}), ('jpeg', {'severity': 3})]

Names are looked up through the plugin manager, so third-party degradations work in specs. Parameters are
checked against each entry's declared :class:`~cqdkit.plugin.Param` list before anything heavy is
imported. This module imports only the standard library and cqdkit's plugin core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import SpecError
from ..plugin.params import parse_params, split_parts, split_specs  # noqa: F401  (split_specs: the package's API)

if TYPE_CHECKING:
    from ..plugin import Degradation, PluginManager


def parse_spec(spec: str, manager: PluginManager | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Parse and validate a spec: one ``(name, params)`` per op, with every parameter (defaults included).

    Raises:
        UnknownNameError: a degradation name no plugin provides (with the closest names).
        SpecError: an empty spec or op, an unknown or repeated key, or a bad value; the message says what
            is allowed.
    """
    return [(entry.name, params) for entry, params in resolve_spec(spec, manager)]


def resolve_spec(spec: str, manager: PluginManager | None = None) -> list[tuple[Degradation, dict[str, Any]]]:
    """Like :func:`parse_spec`, with the plugin entry of each op instead of its name."""
    if manager is None:
        from ..plugin import get_plugin_manager

        manager = get_plugin_manager()
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"expected a degradation spec such as 'lowres:size=32+jpeg', got {spec!r}")
    ops = []
    for name, params_text in split_parts(spec, "degradation"):
        entry = manager.degradation(name)
        ops.append((entry, parse_params(entry.name, entry.params, params_text)))
    return ops
