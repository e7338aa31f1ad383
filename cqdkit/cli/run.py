"""``cqdkit run``: train the teacher and a student on one degradation, print a Table-1 style summary."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from ..train.methods import METHODS, method_names
from .console import console
from .options import (
    config_from_options,
    dataset_options,
    model_options,
    report_option,
    reporter_from_options,
    training_options,
    write_run_report,
)

@click.command()
@click.option("--degrade", default="tps", show_default=True, help="Degradation spec, e.g. lowres:size=32+jpeg.")
@click.option(
    "--method",
    type=click.Choice(method_names(auto=True)),
    default="auto",
    show_default=True,
    help="Student method (auto: a-cqd when the student can start from the teacher, else cqd).",
)
@dataset_options
@model_options
@training_options
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Also train B (the student on z alone) and print what the student gained over it.")
@click.option("--budget", type=float, metavar="MINUTES",
              help="Train at a smaller input size (3/4, then 1/2 of the profile's) when the estimated training "
                   "time is over this; an explicit --image-size is kept [cpu profile: 12; paper: none].")
@report_option
@click.option("--out", type=click.Path(file_okay=False), help="Run directory [runs/<time>-<degrade>-...].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.pass_context
def run(ctx: click.Context, **options: Any) -> None:
    """Train teacher A on x and the student on z, evaluate both on the test x and z views."""
    from ..train.run import run as run_experiment

    config = config_from_options(options)
    given = {name: getattr(config, name) for name in options
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE and hasattr(config, name)}
    given.pop("out", None)
    reporter = reporter_from_options(options)
    results = run_experiment(config, resume=options["resume"], changes=given, reporter=reporter)
    if options["log_format"] == "json":
        reporter.event("run", **results)
    else:
        print_summary(results)
    write_run_report(options, reporter, results["out"])


def print_summary(results: dict[str, Any]) -> None:
    """Accuracy of the teacher and the student on the test x (A) and z (B) views, like Table 1."""
    table = Table(title=f"{results['degrade']} on {results['dataset']}: per-image top-1 accuracy (%)")
    for column in ("method", "model", "test A (x)", "test B (z)", "train images/s"):
        table.add_column(column, justify="right" if column.startswith(("test", "train")) else "left")
    for method, scores in results["models"].items():
        model = results["teacher"] if METHODS[method].role == "teacher" else results["student"]
        table.add_row(
            METHODS[method].title,
            model,
            _percent(scores["test_x"]),
            _percent(scores["test_z"]),
            f"{scores.get('images_per_second', float('nan')):.0f}",
        )
    console.print(table)
    method = results["method"]
    distillation = results.get("distillation", {})
    switched_off = METHODS[method].distill and distillation.get("distillation_helps") is False
    title = METHODS[method].title
    if switched_off:
        title += f" (= {METHODS[method].baseline().title})"
    if "gain" in results:
        student, b = results["models"][method]["test_z"], results["models"]["b"]["test_z"]
        gain = 100 * results["gain"]
        console.print(f"{title}/B {100 * student:.1f} vs B/B {100 * b:.1f}: "
                      f"[bold]{gain:+.1f} points[/bold] on the test z views over training on z alone")
    if switched_off:
        console.print(f"distillation did not help on validation for {results['degrade']}: the student is "
                      f"{METHODS[method].baseline().title} ({_evidence(distillation)})", highlight=False)
    elif METHODS[method].distill and distillation.get("terms"):
        ratio = results["models"][method].get("distill_gradient_ratio")
        strength = f"; its gradient on the logits was {ratio:.2f} x the CE's (last epoch)" if ratio else ""
        if ratio == 0:  # terms on features or relations only: they pull on the logits through the network
            strength = "; it acts on intermediate features, not directly on the logits"
        chosen = f" (chosen on validation: {_evidence(distillation)})" if distillation.get("search") else ""
        console.print(f"distillation: {describe_terms(distillation['terms'])}{strength}{chosen}", highlight=False)
    console.print(f"run folder {results.get('out', '')}  wall time {results['wall_seconds']:.0f} s", style="dim")


def _evidence(distillation: dict[str, Any]) -> str:
    """What the search saw on validation: the chosen (or best) finalist against lambda = 0, per searched term."""
    parts = []
    for stage in distillation.get("search", {}).get("stages", []):
        accuracy = (f", accuracy {100 * stage['val_z']:.0f}% vs {100 * stage['baseline_val_z']:.0f}%"
                    if stage.get("val_z") is not None and stage.get("baseline_val_z") is not None else "")
        which = "chosen" if stage["chosen"] else "best"
        spread = f" ± {stage['gain_std']:.3f}" if stage["gain_std"] is not None else ""
        parts.append(f"{stage['term']}: {which} NLL {stage['val_z_calibrated_nll']:.3f} vs "
                     f"{stage['baseline_val_z_calibrated_nll']:.3f} at lambda = 0{accuracy}, gain "
                     f"{stage['gain']:+.3f}{spread} over {stage['seeds']} student seed(s)")
    return "; ".join(parts)


def describe_terms(terms: list[dict[str, Any]]) -> str:
    """``softce, T = 10, lambda = 20 + fitnet (student=-2), lambda = 1``: each term of a run's distillation."""
    parts = []
    for term in terms:
        own = term["spec"].partition(":")[2].split(",") if ":" in term["spec"] else []
        own = [item for item in own if not item.startswith(("lambda=", "temperature="))]
        text = term["name"] + (f" ({','.join(own)})" if own else "")
        if term.get("temperature") is not None:
            text += f", T = {term['temperature']:g}"
        parts.append(text + f", lambda = {term['lambda']:g}")
    return " + ".join(parts)


def _percent(value: float) -> str:
    """An accuracy in percent; "n/a" for NaN (a teacher with privileged channels cannot see z)."""
    return "n/a" if value != value else f"{100 * value:.1f}"
