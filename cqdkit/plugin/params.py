"""The spec-string grammar that degradations and distillation losses share: ``NAME[:key=value,...][+NAME...]``.

A spec names one or more plugin entries (joined with ``+``), each with ``key=value`` parameters checked
against the entry's declared :class:`~cqdkit.plugin.Param` list; a comma-separated list of specs
(``--degrade lowres,tps``, ``cqdkit compare --loss softce,fitnet:student=-2``) keeps the commas between one
spec's parameters together. This module imports only the standard library.

Example:
    >>> split_specs("lowres:size=16,upsample=srcnn,tps")
    ['lowres:size=16,upsample=srcnn', 'tps']
    >>> split_parts("softce:temperature=4+fitnet")
    [('softce', 'temperature=4'), ('fitnet', '')]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import SpecError

if TYPE_CHECKING:
    from .types import Param

OP_SEPARATOR, NAME_SEPARATOR, PARAM_SEPARATOR, KEY_SEPARATOR = "+", ":", ",", "="


def split_specs(text: str, option: str = "--degrade", what: str = "degradation",
                example: str = "'tps' or 'lowres,edges'") -> list[str]:
    """Split a comma-separated list of specs, keeping the commas between one spec's parameters.

    A piece that is only ``key=value`` continues the spec before it:

        >>> split_specs("lowres:size=16,upsample=srcnn,weights=sr.safetensors,tps")
        ['lowres:size=16,upsample=srcnn,weights=sr.safetensors', 'tps']

    Raises:
        SpecError: the text holds no spec at all (named by ``option``, with an ``example`` of ``what`` it takes).
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
        raise SpecError(f"{option} {text!r}: no {what} given; expected one spec or more, comma-separated "
                        f"(e.g. {example})")
    repeated = sorted({spec for spec in specs if specs.count(spec) > 1})
    if repeated:
        raise SpecError(f"{option} {text!r}: {', '.join(map(repr, repeated))} given more than once; each {what} "
                        "is one column of results, so give it once")
    return specs


def split_parts(spec: str, what: str = "degradation") -> list[tuple[str, str]]:
    """``(name, parameter text)`` of each ``+``-joined part of one spec.

    Raises:
        SpecError: the spec is empty, or one of its parts has no name.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"expected a {what} spec such as 'name:key=value+other', got {spec!r}")
    parts = []
    for text in spec.split(OP_SEPARATOR):
        name, _, params_text = text.strip().partition(NAME_SEPARATOR)
        if not name.strip():
            raise SpecError(f"empty {what} name in spec {spec!r} (parts are joined with '+')")
        parts.append((name.strip(), params_text))
    return parts


def given_keys(text: str) -> frozenset[str]:
    """The keys a spec's parameter text writes out: ``given_keys("a=1,b=2")`` is ``{"a", "b"}``."""
    return frozenset(item.partition(KEY_SEPARATOR)[0].strip() for item in text.split(PARAM_SEPARATOR) if item.strip())


def parse_params(owner: str, params: Sequence[Param], text: str) -> dict[str, Any]:
    """Every declared parameter of ``owner`` (defaults included), with the ``key=value`` pairs of ``text`` parsed.

    Raises:
        SpecError: an unknown or repeated key, a pair without ``=``, or a value that ``Param.parse`` rejects
            or that is not among ``Param.choices``; the message lists what ``owner`` takes.
    """
    declared = {param.name: param for param in params}
    values = {param.name: param.default for param in params}
    given: set[str] = set()
    for item in filter(None, (part.strip() for part in text.split(PARAM_SEPARATOR))):
        key, equals, value = (s.strip() for s in item.partition(KEY_SEPARATOR))
        if not equals or not key:
            raise SpecError(f"{owner}: expected key=value, got {item!r}; {allowed(owner, params)}")
        if key not in declared:
            raise SpecError(f"{owner}: unknown parameter {key!r}; {allowed(owner, params)}")
        if key in given:
            raise SpecError(f"{owner}: parameter {key!r} is given twice")
        given.add(key)
        values[key] = parse_value(owner, declared[key], value)
    return values


def parse_value(owner: str, param: Param, text: str) -> Any:
    """``param.parse(text)``, checked against ``param.choices``; a bad value is a :class:`SpecError`."""
    try:
        value = param.parse(text)
    except (TypeError, ValueError) as error:
        raise SpecError(f"{owner}: bad value {text!r} for {param.name!r} ({error}); expected {describe(param)}") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and "_" in text:
        raise SpecError(f"{owner}: bad value {text!r} for {param.name!r}: a number with '_' in it is ambiguous "
                        f"({text!r} would be read as {value!r}); expected {describe(param)}")
    if param.choices is not None and value not in param.choices:
        raise SpecError(f"{owner}: bad value {text!r} for {param.name!r}; expected {describe(param)}")
    return value


def describe(param: Param) -> str:
    """What a parameter takes, for error messages: its help, choices and default."""
    what = param.help or f"a {getattr(param.parse, '__name__', 'value')}"
    if param.choices is not None:
        what += " (one of " + ", ".join(str(c) for c in param.choices) + ")"
    return what + f", default {param.default!r}"


def allowed(owner: str, params: Sequence[Param]) -> str:
    """Every parameter ``owner`` takes, in one sentence."""
    if not params:
        return f"{owner} takes no parameters"
    return f"{owner} takes " + "; ".join(f"{p.name}: {describe(p)}" for p in params)


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


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = float(text)
    if not 0.0 < value < float("inf"):
        raise ValueError("must be a finite number > 0")
    return value


def at_most(parse: Callable[[str], float], most: float, reason: str = "") -> Callable[[str], float]:
    """``parse``, refusing a value above ``most`` (``reason`` says why, after the limit).

        >>> at_most(positive_float, 1000)("1e308")
        Traceback (most recent call last):
        ...
        ValueError: must be at most 1000
    """
    def checked(text: str) -> float:
        value = parse(text)
        if value > most:
            raise ValueError(f"must be at most {most:g}{reason}")
        return value

    checked.__name__ = parse.__name__
    return checked


def optional_path(text: str) -> str | None:
    """A file path; the empty string means none."""
    return text or None
