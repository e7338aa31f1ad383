"""``--config FILE`` and ``--print-config``: experiments as files.

A config file (TOML, YAML or JSON, by its suffix) holds the same keys as the command's options, written
as the option (``lr-end``, ``lambda``) or as the setting's name (``lr_end``, ``lam``); options given on
the command line override it. A run's own ``config.json`` is a config file too (its ``"run"`` settings are
used), so ``cqdkit run --config runs/x/config.json --out runs/y`` repeats run x::

    # tps.toml
    degrade = "tps"
    epochs = 12
    lambda = 200
    temperature = 4
    dataset-option = {classes = "12"}

Settings that have no option of their own (``channels_last``, ``cache_teacher``) may be set in a file too.
An unknown key is an error naming the key and the closest known ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any

import click

from ..errors import CqdkitError, closest_matches

#: Where extra settings (keys with no option of this command) wait for :func:`config_settings`.
_EXTRA = "cqdkit_config_extra"


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML, YAML or JSON file (a run's ``config.json``: its ``"run"`` part).

    Raises:
        CqdkitError: the file cannot be read or parsed, or is not a table of settings.
    """
    from ..files import read_regular_text

    path = Path(path)
    try:
        text = read_regular_text(path, "a config file")  # a byte-order mark (some Windows editors write one) is dropped
    except (OSError, UnicodeDecodeError) as error:
        raise CqdkitError(f"cannot read the config file {path}: {error}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            payload = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            payload = yaml.safe_load(text)
        elif suffix == ".json":
            payload = json.loads(text)
        else:
            raise CqdkitError(f"config file {path}: unknown format {suffix or '(no suffix)'!r}; expected .toml, "
                              ".yaml, .yml or .json")
    except CqdkitError:
        raise
    except Exception as error:  # each parser has its own error type
        raise CqdkitError(f"config file {path} is not valid {suffix[1:].upper()}: {_parse_error(error)}") from None
    if isinstance(payload, dict) and isinstance(payload.get("run"), dict):
        payload = payload["run"]
    if not isinstance(payload, dict):
        raise CqdkitError(f"config file {path}: expected a table of settings, got {type(payload).__name__}")
    return payload


def _parse_error(error: Exception) -> str:
    """A parser's error on one line: YAML's spans lines with the text and a caret, so just its problem and
    where it is."""
    mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
    if mark is not None and problem:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(error).split())


def _normalise(key: str) -> str:
    return key.strip().lstrip("-").replace("-", "_")


def apply_config_file(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """The ``--config`` callback: the file's values become the command's defaults (the command line wins).

    Keys naming an option of the command set its default; keys naming a RunConfig setting without an
    option here are kept for :func:`config_settings`; anything else is an error with close matches.
    """
    if not value:
        return
    from ..train.config import RunConfig, check_type

    fields = {f.name for f in dataclasses.fields(RunConfig)}
    unset_by_default = {f.name for f in dataclasses.fields(RunConfig) if f.default is None}
    hints = typing.get_type_hints(RunConfig)
    options = {p.name: p for p in ctx.command.params if isinstance(p, click.Option) and p.name}
    aliases = {name: name for name in options} | {name: name for name in fields}
    for option in options.values():
        for flag in option.opts + option.secondary_opts:
            aliases.setdefault(_normalise(flag), option.name)
    for name in fields:
        aliases.setdefault(_normalise(RunConfig.option_name(name)), name)
    defaults: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, setting in read_config_file(Path(value)).items():
        name = aliases.get(_normalise(str(key)))
        if name is None or name in ("config", "print_config"):
            close = closest_matches(str(key), sorted({k.replace("_", "-") for k in aliases}))
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise CqdkitError(f"config file {value}: unknown key {key!r}{hint}")
        if name in options:
            unset = name in unset_by_default and setting is None  # null: "unset", as a run's config.json writes it
            if name in hints and hints[name] in (str, str | None) and not isinstance(setting, (str, type(None))):
                check_type(str(key), setting, hints[name], f"config file {value}")  # a name, not a number
            defaults[name] = None if unset else _as_option_value(options[name], setting, key, value)
        else:
            extra[name] = check_type(name, setting, hints[name], f"config file {value}")
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta[_EXTRA] = extra


def _as_option_value(option: click.Option, setting: Any, key: str, path: str) -> Any:
    """A file's value in the form the option's parser expects (``KEY=VALUE`` strings for dataset options,
    comma-separated text for list options), after checking its type: an option that takes an integer gets
    an integer (not ``1.9`` nor ``true``), a flag gets ``true`` or ``false``, a number is finite.

    Raises:
        CqdkitError: naming the file, the key, the value and what the option takes.
    """
    from ..train.config import check_type

    where = f"config file {path}"
    flag = option.opts[0] if option.opts else ""
    written = key

    def name(inner: str = "") -> str:  # the key as written (and the part of it), with the option it sets
        shown = f"{written}.{inner}" if inner else written
        return shown if flag in ("", written) else f"{shown} ({flag})"

    key = name()
    if setting is None:
        raise CqdkitError(f"{where}: {key} is null; leave the key out for its default, or give a value")
    if option.is_flag or isinstance(option.type, click.types.BoolParamType):
        return check_type(key, setting, bool, where)
    if isinstance(option.type, click.types.IntParamType):
        return check_type(key, setting, int, where)
    if isinstance(option.type, click.types.FloatParamType):
        return check_type(key, setting, float, where)
    if isinstance(setting, dict):
        if not option.multiple:
            raise CqdkitError(f"{where}: {key} must be a single value, got a table {setting!r}")
        return [f"{k}={_scalar(name(k), v, where)}" for k, v in setting.items()]
    if isinstance(setting, list):
        items = [_scalar(key, item, where) for item in setting]
        return items if option.multiple else ",".join(items)
    return _scalar(key, setting, where)


def _scalar(key: str, value: Any, where: str) -> str:
    """A plain value (string, finite number or boolean) as the text an option parses."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) and math.isfinite(value):
        return str(value)
    raise CqdkitError(f"{where}: {key} must be a string, a finite number or a list of them, got {value!r}")


def config_settings(ctx: click.Context) -> dict[str, Any]:
    """Settings from ``--config`` that have no option of this command (``channels_last``, ...)."""
    return dict(ctx.meta.get(_EXTRA, {}))


config_options = [
    click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
                 callback=apply_config_file,
                 help="Read options from a TOML, YAML or JSON file (a run's config.json too); the command line "
                      "wins."),
    click.option("--print-config", is_flag=True,
                 help="Print the resolved settings as JSON (usable with --config) and exit without running."),
]
