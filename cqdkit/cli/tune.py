"""``cqdkit tune``: T and lambda chosen on the validation split (never the test split)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..degradations.spec import split_specs
from ..train.methods import method_names
from .console import console
from .options import config_from_options, dataset_options, model_options, reporter_from_options, training_options


def _numbers(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated numbers, got {text!r}") from None


@click.command()
@click.option("--degrade", default="tps", show_default=True, help="Comma-separated degradation specs.")
@click.option("--method", type=click.Choice(method_names(auto=True, distilled_only=True)), default="auto",
              show_default=True)
@click.option("--temperatures", default="1,2,5,10", show_default=True, help="Grid of T.")
@click.option("--lambdas", default="1,5,20,50,200", show_default=True, help="Grid of lambda.")
@dataset_options
@model_options
@training_options
@click.option("--out", type=click.Path(file_okay=False), default="runs/tune", show_default=True)
def tune(**options: Any) -> None:
    """Grid search of T and lambda, scored on the validation split (never the test split)."""
    from rich.table import Table

    from ..train.tune import run_tune

    base = config_from_options(options, degrade="")
    result = run_tune(
        base,
        split_specs(options["degrade"]),
        Path(options["out"]),
        temperatures=_numbers(options["temperatures"], "--temperatures"),
        lambdas=_numbers(options["lambdas"], "--lambdas"),
        reporter=reporter_from_options(options),
    )
    for degradation, found in result["degradations"].items():
        grid = Table(title=f"{degradation}: validation accuracy on z (%)")
        lambdas = sorted({cell["lam"] for cell in found["grid"]})
        grid.add_column("T \\ lambda")
        for lam in lambdas:
            grid.add_column(f"{lam:g}", justify="right")
        for temperature in sorted({cell["temperature"] for cell in found["grid"]}):
            cells = {cell["lam"]: cell["val_z"] for cell in found["grid"] if cell["temperature"] == temperature}
            grid.add_row(f"{temperature:g}", *[f"{100 * cells[lam]:.1f}" for lam in lambdas])
        console.print(grid)
        chosen = found["chosen"]
        console.print(f"chosen: T = {chosen['temperature']:g}, lambda = {chosen['lam']:g}")
    console.print(f"written to {options['out']}/tune.json", style="dim")
