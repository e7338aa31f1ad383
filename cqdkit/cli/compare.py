"""``cqdkit compare``: every distillation loss on every degradation, its strength chosen on validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markdown import Markdown

from ..plugin.params import split_specs
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
from .table import PAPER_DEGRADATIONS


@click.command()
@click.option("--degrade", default=PAPER_DEGRADATIONS, show_default=True,
              help="Comma-separated degradation specs (one column each).")
@click.option("--seeds", type=click.IntRange(min=1, max=MAX_SEEDS), default=3, show_default=True, help="Number of seeds (0..N-1).")
@click.option("--method", type=click.Choice(["cqd", "a-cqd"]), default="cqd", show_default=True,
              help="The distilled method: from the student's own init (cqd) or from A's weights (a-cqd).")
@dataset_options
@model_options
@training_options
@sweep_options
@click.option("--out", type=click.Path(file_okay=False), default="runs/compare", show_default=True,
              help="Output folder; finished models in it are reused.")
def compare(**options: Any) -> None:
    """Which distillation for which gap: --loss gives comma-separated losses (softce,fitnet,at,...), each
    distilled on every degradation and seed with its weight chosen on validation; gains over B, mean ± sd."""
    from ..train.compare import run_compare

    losses = split_specs(options["loss"], "--loss", "loss", "'softce,fitnet,at'")
    base = config_from_options(options, degrade="", loss=losses[0])
    reporter = reporter_from_options(options)
    result = run_compare(base, losses, split_specs(options["degrade"]), list(range(options["seeds"])),
                         Path(options["out"]), method=options["method"],
                         sweep=sweep_from_options(options), reporter=reporter)
    report_result(options, reporter, "compare", result, lambda: show(result, options))


def show(result: dict[str, Any], options: dict[str, Any]) -> None:
    from ..train.compare import to_markdown

    console.print(Markdown(to_markdown(result)))
    console.print(f"written to {options['out']}/compare.md, compare.csv, compare.json, compare.png "
                  f"({result['wall_seconds']:.0f} s)", style="dim")
