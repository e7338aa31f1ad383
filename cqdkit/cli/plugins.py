"""``cqdkit plugins`` and ``cqdkit list ...``: what the installed plugins provide."""

from __future__ import annotations

import fnmatch
import json

import click
from rich.table import Table

from ..plugin import KINDS, BackboneCatalog, PluginEntry, PluginInfo, get_plugin_manager
from .console import console, err_console


def _row(kind: str, entry: PluginEntry, info: PluginInfo, skipped_for: PluginInfo | None) -> dict[str, object]:
    catalog = isinstance(entry, BackboneCatalog)
    return {
        "kind": kind,
        "name": f"{entry.name}:*" if catalog else entry.name,
        "plugin": info.dist or info.name,
        "module": info.name,
        "version": info.version,
        "builtin": info.builtin,
        "catalog": catalog,
        "summary": entry.summary,
        # a clash: this entry is not used, the name belongs to another plugin
        "skipped": skipped_for is not None,
        "name_kept_by": (skipped_for.dist or skipped_for.name) if skipped_for else None,
    }


def _rows() -> list[dict[str, object]]:
    """Every entry, the ones skipped because of a clash right after the entry that kept the name."""
    manager = get_plugin_manager()
    rows: list[dict[str, object]] = []
    for kind in KINDS:
        skipped = manager.clashes_for(kind)
        for provided in manager.provided(kind):
            rows.append(_row(kind, provided.entry, provided.plugin, None))
            rows += [_row(kind, clash.skipped_entry, clash.skipped, clash.kept)
                     for clash in skipped if clash.name == provided.entry.name]
    return rows


def _report_failures() -> None:
    """Plugins that failed, one line each (clashes are warned about where they are found)."""
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
            summary = str(row["summary"])
            if row["skipped"]:
                summary = f"[red]skipped, the name is {row['name_kept_by']}'s:[/] {summary}"
            table.add_row(str(row["kind"]), str(row["name"]), plugin, summary)
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
