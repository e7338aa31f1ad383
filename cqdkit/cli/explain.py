"""``cqdkit explain RUN_DIR``: why CQD works on a run (paper section 3), as figures and a report.

The analysis itself is :func:`cqdkit.explain.analysis.explain_run`; this command runs it and prints the
summary.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from ..reporting import Reporter
from .console import console, err_console


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--images", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Test images for tau (capped at the test set).")
@click.option("--examples", type=click.IntRange(min=1), default=6, show_default=True,
              help="Example images in the saliency figure.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder [RUN_DIR/explain].")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def explain(run_dir: Path, images: int, examples: int, out: Path | None, quiet: bool) -> None:
    """Saliency, tau and top confusion reductions of B vs the CQD student of RUN_DIR."""
    from ..explain.analysis import explain_run

    began = time.perf_counter()
    reporter = Reporter(err_console, bars=not quiet)
    result = explain_run(run_dir, images=images, examples=examples, out=out, reporter=reporter)
    print_summary(result["summary"], result["files"], time.perf_counter() - began)


def print_summary(summary: dict[str, Any], files: dict[str, Path], seconds: float) -> None:
    """Accuracy and mean tau of both models, the top confusion reductions and where the report is."""
    from rich.table import Table

    names = list(summary["models"])
    table = Table(title="B vs the CQD student on the test z views")
    for column in ("model", "test z accuracy (%)", "mean tau", "mean tau_energy"):
        table.add_column(column, justify="left" if column == "model" else "right")
    tau = summary["tau"]
    for name in names:
        table.add_row(
            name,
            f"{100 * summary['test_z_accuracy'][name]:.1f}",
            f"{tau['mean'][name]:.3f}" if tau else "-",
            f"{tau['energy_mean'][name]:.3f}" if tau else "-",
        )
    console.print(table)
    if tau:
        console.print(f"tau over {tau['images']} images; a uniform gradient would give {tau['uniform_mean']:.3f}")
    first, second = names
    for pair in summary["pairs"]:
        a, b = pair["classes"]
        console.print(f"{a} / {b}: confusion {pair[f'confusion_{first}']:.2f} ({first}) -> "
                      f"{pair[f'confusion_{second}']:.2f} ({second})")
    console.print(f"report: {files['markdown']} and {files['html']}")
    console.print(f"wall time {seconds:.0f} s", style="dim")
