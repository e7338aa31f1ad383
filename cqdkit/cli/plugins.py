"""``cqdkit plugins`` and ``cqdkit list ...``: what the installed plugins provide."""

from __future__ import annotations

import fnmatch
import json

import click
from rich.table import Table

from ..plugin import KINDS, BackboneCatalog, get_plugin_manager
from .console import console, err_console


def _rows() -> list[dict[str, object]]:
    manager = get_plugin_manager()
    rows: list[dict[str, object]] = []
    for kind in KINDS:
        for provided in manager.provided(kind):
            entry, info = provided.entry, provided.plugin
            catalog = isinstance(entry, BackboneCatalog)
            rows.append(
                {
                    "kind": kind,
                    "name": f"{entry.name}:*" if catalog else entry.name,
                    "plugin": info.dist or info.name,
                    "module": info.name,
                    "version": info.version,
                    "builtin": info.builtin,
                    "catalog": catalog,
                    "summary": entry.summary,
                }
            )
    return rows


def _report_failures() -> None:
    for failure in get_plugin_manager().failures:
        err_console.print(f"[yellow]warning:[/] {failure.describe()}", highlight=False)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {kind, name, plugin, ...}.")
def plugins(as_json: bool) -> None:
    """Every registered degradation, backbone, loss and dataset, and the plugin that provides it."""
    rows = _rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        table = Table(title="cqdkit plugins")
        for column in ("kind", "name", "plugin", "summary"):
            table.add_column(column, overflow="fold")
        for row in rows:
            plugin = str(row["plugin"]) + (f" {row['version']}" if row["version"] else "")
            table.add_row(str(row["kind"]), str(row["name"]), plugin, str(row["summary"]))
        console.print(table)
    _report_failures()


@click.group(name="list")
def list_group() -> None:
    """List the names one kind of plugin provides."""


@list_group.command()
@click.argument("pattern", default="*")
def backbones(pattern: str) -> None:
    """Backbones matching PATTERN (shell wildcards, like timm.list_models): cqdkit's own, then timm's."""
    for name, source in get_plugin_manager().list_backbones(pattern):
        console.print(f"{name}  [dim]{source}[/]", highlight=False)
    _report_failures()


def _list_kind(kind: str, pattern: str) -> None:
    for provided in get_plugin_manager().provided(kind):
        if fnmatch.fnmatchcase(provided.entry.name, pattern):
            console.print(f"{provided.entry.name}  [dim]{provided.entry.summary}[/]", highlight=False)
    _report_failures()


@list_group.command()
@click.argument("pattern", default="*")
def degradations(pattern: str) -> None:
    """Degradations matching PATTERN."""
    _list_kind("degradation", pattern)


@list_group.command()
@click.argument("pattern", default="*")
def losses(pattern: str) -> None:
    """Distillation losses matching PATTERN."""
    _list_kind("loss", pattern)


@list_group.command()
@click.argument("pattern", default="*")
def datasets(pattern: str) -> None:
    """Datasets matching PATTERN."""
    _list_kind("dataset", pattern)
