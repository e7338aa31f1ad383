"""``cqdkit report RUN_DIR``: one HTML page with figures for a run or table folder (:mod:`cqdkit.report`)."""

from __future__ import annotations

from pathlib import Path

import click

from ..reporting import Reporter
from .console import console, err_console


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder [RUN_DIR/report].")
@click.option("--examples", type=click.IntRange(min=0), default=12, show_default=True,
              help="Test images shown with their predictions (run folders).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def report(run_dir: Path, out: Path | None, examples: int, quiet: bool) -> None:
    """Write RUN_DIR/report/index.html for a `cqdkit run` or `cqdkit table` folder.

    A run's page shows the results (student - B), every model's learning curves, test examples with the
    predictions, per-class accuracy and the settings; a table's page, Table 1 as a figure and as a table.
    """
    from ..lock import folder_lock
    from ..report import write_report

    with folder_lock(run_dir):  # not while a run or table still writes there
        index = write_report(run_dir, out, examples=examples, reporter=Reporter(err_console, bars=not quiet))
    console.print(f"report: {index}", highlight=False, soft_wrap=True)
