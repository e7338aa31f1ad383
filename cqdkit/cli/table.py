"""``cqdkit table``: the paper's Table 1 over degradations and seeds, as Markdown, CSV and JSON."""

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
    report_option,
    report_result,
    reporter_from_options,
    sweep_from_options,
    sweep_options,
    training_options,
    write_run_report,
)

PAPER_DEGRADATIONS = "localization,lowres,edges,tps"


@click.command()
@click.option("--degrade", default=PAPER_DEGRADATIONS, show_default=True,
              help="Comma-separated degradation specs (one table column each).")
@click.option("--seeds", type=click.IntRange(min=1, max=MAX_SEEDS), default=1, show_default=True, help="Number of seeds (0..N-1).")
@dataset_options
@model_options
@training_options
@sweep_options
@report_option
@click.option("--out", type=click.Path(file_okay=False), default="runs/table", show_default=True,
              help="Output folder; finished models in it are reused.")
def table(**options: Any) -> None:
    """Table 1: A/A, A/B, B/B, A→B/B, CQD/B, A+CQD/B per degradation, mean ± std over seeds."""
    from ..train.table import run_table
    from ..train.tune import tuned_values

    base = config_from_options(options, degrade="")
    if base.tuned:
        tuned_values(base.tuned)  # a bad file is one line before anything trains
    seeds = list(range(options["seeds"]))
    reporter = reporter_from_options(options)
    result = run_table(base, split_specs(options["degrade"]), seeds, Path(options["out"]),
                       sweep=sweep_from_options(options), reporter=reporter)
    report_result(options, reporter, "table", result, lambda: show(result, options))
    write_run_report(options, reporter, options["out"])


def show(result: dict[str, Any], options: dict[str, Any]) -> None:
    """The table as Markdown, and where its files are."""
    from ..train.table import to_markdown

    console.print(Markdown(to_markdown(result)))
    console.print(f"written to {options['out']}/table.md, table.csv, table.json "
                  f"({result['wall_seconds']:.0f} s)", style="dim")
