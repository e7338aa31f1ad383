"""``cqdkit multires``: the paper's Table 3 -- a quality router over per-quality experts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markdown import Markdown

from ..plugin.params import split_specs
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


@click.command()
@click.option("--degrade", multiple=True, default=["lowres"], show_default=True,
              help="Degradation specs, one low quality each (comma-separated and/or repeated), "
                   "e.g. 'lowres:size=16,upsample=bicubic,tps'.")
@dataset_options
@model_options
@training_options
@sweep_options
@click.option("--out", type=click.Path(file_okay=False), default="runs/multires", show_default=True,
              help="Output folder; finished models in it are reused.")
def multires(**options: Any) -> None:
    """Table 3: A, A+CQD per quality, A+B (mixed training) and a quality router vs the oracle.

    A linear classifier on 65x65 log-magnitude spectra predicts each test image's quality (clean or one
    of the --degrade specs) and routes it to that quality's model; the router is saved as
    router.safetensors + router.json.
    """
    from ..train.multires import run_multires

    qualities = [spec for value in options["degrade"] for spec in split_specs(value)]
    base = config_from_options(options, degrade="")
    reporter = reporter_from_options(options)
    result = run_multires(base, qualities, Path(options["out"]), sweep=sweep_from_options(options),
                          reporter=reporter)
    report_result(options, reporter, "multires", result, lambda: show(result, options))


def show(result: dict[str, Any], options: dict[str, Any]) -> None:
    """Table 3 as Markdown, and where its files are."""
    from ..train.multires import to_markdown

    console.print(Markdown(to_markdown(result)))
    console.print(f"written to {options['out']}/table3.md, table3.json, router.safetensors, router.json "
                  f"({result['wall_seconds']:.0f} s)", style="dim")
