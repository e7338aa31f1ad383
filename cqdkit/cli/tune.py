"""``cqdkit tune``: T and lambda chosen on the validation split (never the test split)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..plugin.params import split_specs
from ..errors import CqdkitError
from ..train.methods import get_method
from ..train.tune import LAMBDAS, TEMPERATURES
from ..train.config import MAX_SEEDS
from .console import console
from .options import (
    config_from_options,
    dataset_options,
    model_options,
    report_result,
    reporter_from_options,
    sweep_from_options,
    sweep_options,
    training_options,
)


def _numbers(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated numbers, got {text!r}") from None


@click.command()
@click.option("--degrade", default="tps", show_default=True, help="Comma-separated degradation specs.")
@click.option("--method", "methods", default="cqd,a-cqd", show_default=True,
              help="Comma-separated distilled methods to tune, each on its own (those the architectures allow).")
@click.option("--seeds", type=click.IntRange(min=1, max=MAX_SEEDS), default=2, show_default=True,
              help="Seeds (0..N-1) per cell; a cell must beat lambda = 0 by more than their spread.")
@click.option("--temperatures", default=",".join(f"{t:g}" for t in TEMPERATURES), show_default=True, help="Grid of T.")
@click.option("--lambdas", default=",".join(f"{lam:g}" for lam in LAMBDAS), show_default=True,
              help="Grid of lambda (0, the method without distillation, is always included).")
@click.option("--prune", is_flag=True,
              help="Stop clearly worse cells early: successive halving, each rung (1/9, 1/3 of the epochs) keeping "
                   "the best third of the cells; the cells that finish are the full grid's (docs/cli.md).")
@dataset_options
@model_options
@training_options
@sweep_options
@click.option("--out", type=click.Path(file_okay=False), default="runs/tune", show_default=True)
def tune(**options: Any) -> None:
    """Grid search of T and lambda per method, scored by calibrated validation NLL on z (never the test split)."""
    from ..train.tune import run_tune

    methods = tuple(m.strip() for m in options["methods"].split(",") if m.strip())
    for method in methods:
        try:
            get_method(method).baseline()
        except CqdkitError:
            raise click.BadParameter(f"{method!r} is not a distilled method; expected cqd and/or a-cqd",
                                     param_hint="--method") from None
    base = config_from_options(options, degrade="")
    reporter = reporter_from_options(options)
    result = run_tune(
        base,
        split_specs(options["degrade"]),
        Path(options["out"]),
        methods=methods,
        seeds=tuple(range(options["seeds"])),
        temperatures=_numbers(options["temperatures"], "--temperatures"),
        lambdas=_numbers(options["lambdas"], "--lambdas"),
        prune=options["prune"],
        sweep=sweep_from_options(options),
        reporter=reporter,
    )
    report_result(options, reporter, "tune", result, lambda: show(result, options))


def show(result: dict[str, Any], options: dict[str, Any]) -> None:
    """Every grid, its baseline and choice, and where the files are."""
    for method, by_degradation in result["methods"].items():
        for degradation, found in by_degradation.items():
            print_grid(method, degradation, found)
    console.print(f"written to {options['out']}/tune.json and a heatmap per degradation and method", style="dim")


def print_grid(method: str, degradation: str, found: dict[str, Any]) -> None:
    """Mean validation NLL (accuracy) per cell, the baseline, and the choice with its reason."""
    from rich.table import Table

    cells = {(c["temperature"], c["lam"]): c for c in found["grid"]}
    lambdas = sorted({lam for _, lam in cells if lam > 0})
    grid = Table(title=f"{degradation}, {method}: calibrated validation NLL on z (accuracy %); * beats lambda = 0")
    grid.add_column("T \\ lambda")
    for lam in lambdas:
        grid.add_column(f"{lam:g}", justify="right")
    for temperature in sorted({t for t, lam in cells if lam > 0}):
        row = []
        for lam in lambdas:
            cell = cells.get((temperature, lam))
            row.append("" if cell is None else
                       f"{cell['score']:.3f}{'*' if cell['qualifies'] else ''} ({100 * cell['val_z']:.0f})")
        grid.add_row(f"{temperature:g}", *row)
    console.print(grid)
    base = cells[(0.0, 0.0)]
    console.print(f"lambda = 0 ({get_method(method).baseline().name}): calibrated NLL {base['score']:.3f} ± "
                  f"{base['score_std']:.3f}, "
                  f"accuracy {100 * base['val_z']:.1f}%")
    chosen = found["chosen"]
    if found["distillation_helps"]:
        console.print(f"chosen: T = {chosen['temperature']:g}, lambda = {chosen['lam']:g}")
    else:
        console.print("chosen: lambda = 0 -- no distilled cell beat lambda = 0 by more than the seeds' spread on "
                      "validation", style="yellow")
