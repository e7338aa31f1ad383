"""``cqdkit table`` (the paper's Table 1) and ``cqdkit tune`` (T and lambda on the validation split)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.markdown import Markdown

from ..degradations.spec import split_specs
from ..errors import CqdkitError
from .console import console
from .options import config_from_options, dataset_options, model_options, training_options

PAPER_DEGRADATIONS = "localization,lowres,edges,tps"


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _numbers(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in _split(text))
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated numbers, got {text!r}") from None


@click.command()
@click.option("--degrade", default=PAPER_DEGRADATIONS, show_default=True,
              help="Comma-separated degradation specs (one table column each).")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True, help="Number of seeds (0..N-1).")
@click.option("--tuned", type=click.Path(dir_okay=False, exists=True),
              help="tune.json from `cqdkit tune`: per-degradation T and lambda.")
@dataset_options
@model_options
@training_options
@click.option("--out", type=click.Path(file_okay=False), default="runs/table", show_default=True,
              help="Output folder; finished models in it are reused.")
def table(**options: Any) -> None:
    """Table 1: A/A, A/B, B/B, A→B/B, CQD/B, A+CQD/B per degradation, mean ± std over seeds."""
    from ..train.table import run_table, to_markdown
    from ..train.tune import chosen_values

    base = config_from_options({**options, "degrade": ""})
    tuned = None
    if options["tuned"]:
        try:
            tuned = chosen_values(json.loads(Path(options["tuned"]).read_text()))
        except (OSError, ValueError, KeyError) as error:
            raise CqdkitError(f"cannot read tuned values from {options['tuned']}: {error}") from error
    seeds = list(range(options["seeds"]))
    result = run_table(base, split_specs(options["degrade"]), seeds, Path(options["out"]), tuned=tuned,
                       progress=not options["quiet"])
    console.print(Markdown(to_markdown(result)))
    console.print(f"written to {options['out']}/table.md, table.csv, table.json "
                  f"({result['wall_seconds']:.0f} s)", style="dim")


@click.command()
@click.option("--degrade", default="tps", show_default=True, help="Comma-separated degradation specs.")
@click.option("--method", type=click.Choice(["auto", "cqd", "a-cqd"]), default="auto", show_default=True)
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

    base = config_from_options({**options, "degrade": ""})
    result = run_tune(
        base,
        split_specs(options["degrade"]),
        Path(options["out"]),
        temperatures=_numbers(options["temperatures"], "--temperatures"),
        lambdas=_numbers(options["lambdas"], "--lambdas"),
        progress=not options["quiet"],
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
