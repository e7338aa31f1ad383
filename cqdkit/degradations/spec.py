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

if TYPE_CHECKING:
    from ..plugin import Degradation, Param, PluginManager

OP_SEPARATOR, NAME_SEPARATOR, PARAM_SEPARATOR, KEY_SEPARATOR = "+", ":", ",", "="


def parse_spec(spec: str, manager: PluginManager | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Parse and validate a spec: one ``(name, params)`` per op, with every parameter (defaults included).

    Raises:
        UnknownNameError: a degradation name no plugin provides (with the closest names).
        SpecError: an empty spec or op, an unknown or repeated key, or a bad value; the message says what
            is allowed.
    """
    return [(entry.name, params) for entry, params in resolve_spec(spec, manager)]


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list of specs, keeping the commas between one spec's parameters.

    A piece that is only ``key=value`` continues the spec before it:

        >>> split_specs("lowres:size=16,upsample=srcnn,weights=sr.safetensors,tps")
        ['lowres:size=16,upsample=srcnn,weights=sr.safetensors', 'tps']

    Raises:
        SpecError: the text holds no spec at all.
    """
    specs: list[str] = []
    for piece in (part.strip() for part in text.split(PARAM_SEPARATOR)):
        if not piece:
            continue
        key = piece.partition(KEY_SEPARATOR)[0]
        continues = KEY_SEPARATOR in piece and NAME_SEPARATOR not in key and OP_SEPARATOR not in key
        if continues and specs and NAME_SEPARATOR in specs[-1].rpartition(OP_SEPARATOR)[2]:
            specs[-1] += PARAM_SEPARATOR + piece
        else:
            specs.append(piece)
    if not specs:
        raise SpecError(f"--degrade {text!r}: no degradation given; expected one spec or more, comma-separated "
                        "(e.g. 'tps' or 'lowres,edges')")
    return specs


def resolve_spec(spec: str, manager: PluginManager | None = None) -> list[tuple[Degradation, dict[str, Any]]]:
    """Like :func:`parse_spec`, with the plugin entry of each op instead of its name."""
    if manager is None:
        from ..plugin import get_plugin_manager

        manager = get_plugin_manager()
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"expected a degradation spec such as 'lowres:size=32+jpeg', got {spec!r}")
    ops = []
    for op_text in spec.split(OP_SEPARATOR):
        name, _, params_text = op_text.strip().partition(NAME_SEPARATOR)
        name = name.strip()
        if not name:
            raise SpecError(f"empty degradation name in spec {spec!r} (ops are joined with '+')")
        entry = manager.degradation(name)
        ops.append((entry, _parse_params(entry, params_text)))
    return ops


def _parse_params(entry: Degradation, text: str) -> dict[str, Any]:
    declared = {param.name: param for param in entry.params}
    values = {param.name: param.default for param in entry.params}
    given: set[str] = set()
    for item in filter(None, (part.strip() for part in text.split(PARAM_SEPARATOR))):
        key, equals, value = (s.strip() for s in item.partition(KEY_SEPARATOR))
        if not equals or not key:
            raise SpecError(f"{entry.name}: expected key=value, got {item!r}; {_allowed(entry)}")
        if key not in declared:
            raise SpecError(f"{entry.name}: unknown parameter {key!r}; {_allowed(entry)}")
        if key in given:
            raise SpecError(f"{entry.name}: parameter {key!r} is given twice")
        given.add(key)
        values[key] = _parse_value(entry, declared[key], value)
    return values


def _parse_value(entry: Degradation, param: Param, text: str) -> Any:
    try:
        value = param.parse(text)
    except (TypeError, ValueError) as error:
        raise SpecError(
            f"{entry.name}: bad value {text!r} for {param.name!r} ({error}); expected {_describe(param)}"
        ) from None
    if param.choices is not None and value not in param.choices:
        raise SpecError(f"{entry.name}: bad value {text!r} for {param.name!r}; expected {_describe(param)}")
    return value


def _describe(param: Param) -> str:
    what = param.help or f"a {getattr(param.parse, '__name__', 'value')}"
    if param.choices is not None:
        what += " (one of " + ", ".join(str(c) for c in param.choices) + ")"
    return what + f", default {param.default!r}"


def _allowed(entry: Degradation) -> str:
    if not entry.params:
        return f"{entry.name} takes no parameters"
    return f"{entry.name} takes " + "; ".join(f"{p.name}: {_describe(p)}" for p in entry.params)


# -- value parsers used by the built-in Param declarations ---------------------------------------


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = float(text)
    if not 0.0 <= value < float("inf"):
        raise ValueError("must be a finite number >= 0")
    return value


def optional_path(text: str) -> str | None:
    """A file path; the empty string means none."""
    return text or None
