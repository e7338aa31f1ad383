"""``cqdkit compare``: which distillation for which cross-quality gap.

Every loss spec (``softce``, ``fitnet``, ``at``, ... or a sum such as ``softce+fitnet``) distils the teacher A into
the student on every degradation, for several seeds; each loss's weight (and temperature, and layers) is chosen
on the validation split only (``--lambda auto``, :mod:`cqdkit.train.strength`), never on the test split. For one
seed and degradation, every loss shares the split, the z views, the teacher A and the baseline (B for CQD, A→B for
A+CQD), so its gain over the baseline is paired. The table reports, per loss and degradation, the test accuracy
on z (mean ± standard deviation over the seeds) and the gain over the baseline (mean ± sd of the per-seed gains),
and how many seeds' searches kept distillation on.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import statistics
import time
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..files import atomic_save_figure, atomic_write_bytes, atomic_write_json
from ..lock import folder_lock
from ..reporting import Reporter, reporting_into
from ..sweep import SweepSettings, Training, run_sweep
from .config import RunConfig
from .distributed import is_main_process
from .methods import AUTO, METHODS, get_method
from .table import check_degradations, grid_rows, row_arguments, slug, strength_folder, teacher_training


def run_compare(base: RunConfig, losses: list[str], degradations: list[str], seeds: list[int], out: Path, *,
                method: str = "cqd", sweep: SweepSettings = SweepSettings(),
                reporter: Reporter | None = None) -> dict[str, Any]:
    """Train every loss's distilled student (and, once per seed and degradation, A and the baseline), reusing
    finished models in ``out``; write ``compare.json``, ``compare.md``, ``compare.csv`` and ``compare.png``. The
    trainings run as a sweep (:mod:`cqdkit.sweep`): in parallel with ``sweep.jobs`` or on Ray."""
    out = Path(out)
    sweep.check()
    with folder_lock(out), reporting_into(reporter, out, tensorboard=base.tensorboard) as reporter:
        return _run_compare(base, losses, degradations, seeds, out, method=method, sweep=sweep, reporter=reporter)


def distil_with(config: dict[str, Any], directory: str, teacher_root: str, method: str, loss: str,
                reporter: Reporter) -> dict[str, Any]:
    """A sweep's training: the row's student distilled with ``loss`` (its strength chosen as the row's settings
    say), in a folder of the row named by the loss and its strength; its test scores and distillation, or why the
    loss cannot run with these networks (``skipped``)."""
    from .experiment import Experiment

    row = Experiment(RunConfig(**config), Path(directory), teacher_root=Path(teacher_root), reporter=reporter)
    distilled = get_method(method)
    student = row.sibling(row.directory, share=("a", "b", "a-b"), reporter=reporter, loss=loss)
    student.directory = row.directory / strength_folder(student, distilled)
    try:
        scores = student.evaluate(method)
    except SpecError as error:  # e.g. st between layers of different widths: the cell stays empty
        return {"skipped": str(error)}
    return {**scores, "distillation": student.distillation(distilled)}


def _run_compare(base: RunConfig, losses: list[str], degradations: list[str], seeds: list[int], out: Path, *,
                 method: str, sweep: SweepSettings, reporter: Reporter) -> dict[str, Any]:
    from .experiment import Experiment

    check_degradations(base, degradations, reporter)
    for loss in losses:  # a misspelt loss or parameter is one line before anything trains
        Experiment(dataclasses.replace(base, degrade=degradations[0], loss=loss, method=AUTO), Path("."),
                   reporter=Reporter.silent())
    distilled = get_method(method)
    baseline = distilled.baseline()
    rows = []
    trainings: list[Training] = []
    teachers: dict[Path, str] = {}
    for seed, degradation, row in grid_rows(base, degradations, seeds, out, reporter):
        if not row.can_train(method):
            row.reporter.message(f"{distilled.title} cannot run on {degradation} with these networks: left out")
            continue
        where = f"seed-{seed}/{slug(degradation)}"
        rows.append((seed, degradation, row, where))
        common = row_arguments(row)
        first, teacher = teacher_training(row, where, teachers)
        trainings += first
        trainings.append(Training(f"{where}/{baseline.title}", "cqdkit.train.table:train_model",
                                  {**common, "method": baseline.name}, after=(teacher,)))
        for loss in losses:
            trainings.append(Training(f"{where}/{distilled.title} {loss}", "cqdkit.train.compare:distil_with",
                                      {**common, "method": method, "loss": loss},
                                      after=(teacher, f"{where}/{baseline.title}")))
    began = time.perf_counter()
    done = run_sweep(trainings, out, sweep, reporter=reporter)
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {loss: {d: [] for d in degradations} for loss in losses}
    baselines: dict[str, list[float]] = {d: [] for d in degradations}
    for seed, degradation, row, where in rows:
        base_score = done[f"{where}/{baseline.title}"]["test_z"]
        baselines[degradation].append(base_score)
        for loss in losses:
            student = done[f"{where}/{distilled.title} {loss}"]
            if "skipped" in student:
                row.reporter.message(f"{distilled.title} with {loss} on {degradation}: {student['skipped']}; left out")
                continue
            score, distillation = student["test_z"], student["distillation"]
            raw[loss][degradation].append({
                "seed": seed, "test_z": score, "gain": score - base_score,
                "distillation_helps": distillation.get("distillation_helps", True),
                "loss": "+".join(term["spec"] for term in distillation["terms"]) or None,
            })
            row.reporter.result(f"{distilled.title} {loss}", {"test_z": score, "gain": score - base_score})
    result = {"method": method, "baseline": baseline.name, "losses": losses, "degradations": degradations,
              "seeds": seeds, "teacher": base.resolved().teacher, "student": base.resolved().student,
              "dataset": base.dataset,
              "split_for_choices": "val", "baselines": baselines, "raw": raw,
              "table": summarise(raw, baselines), "wall_seconds": time.perf_counter() - began}
    if is_main_process():
        write_compare(out, result)
    return result


def summarise(raw: dict[str, dict[str, list[dict[str, Any]]]],
              baselines: dict[str, list[float]]) -> dict[str, dict[str, dict[str, Any] | None]]:
    """Per loss and degradation: test accuracy on z and gain over the baseline (mean, sd over seeds), and the
    number of seeds whose search kept distillation on; the baseline's own row too."""
    table: dict[str, dict[str, dict[str, Any] | None]] = {"baseline": {}}
    for degradation, scores in baselines.items():
        table["baseline"][degradation] = _stats(scores) if scores else None
    for loss, by_degradation in raw.items():
        table[loss] = {}
        for degradation, rows in by_degradation.items():
            if not rows:
                table[loss][degradation] = None
                continue
            table[loss][degradation] = {**_stats([r["test_z"] for r in rows]),
                                        "gain": _stats([r["gain"] for r in rows]),
                                        "kept": sum(bool(r["distillation_helps"]) for r in rows)}
    return table


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def to_markdown(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table: accuracy on the test z views and gain over the baseline."""
    method, baseline = METHODS[result["method"]].title, METHODS[result["baseline"]].title
    degradations = result["degradations"]
    lines = [f"{method} per distillation loss, teacher {result['teacher']} → student {result['student']}, dataset "
             f"{result['dataset']}: per-image top-1 accuracy (%) on the test z views, mean ± sd over seeds "
             f"{result['seeds']}, and in brackets the gain over {baseline} (mean ± sd of the per-seed gains) with "
             "the number of seeds whose validation search kept distillation on. Weights, temperatures and layers were "
             "chosen on the validation split only.", "",
             "| loss | " + " | ".join(degradations) + " |", "|---|" + "---:|" * len(degradations)]
    cells = [_accuracy(result["table"]["baseline"][d]) for d in degradations]
    lines.append(f"| {baseline} (no distillation) | " + " | ".join(cells) + " |")
    for loss in result["losses"]:
        cells = []
        for degradation in degradations:
            stats = result["table"][loss][degradation]
            if stats is None:
                cells.append("—")
                continue
            gain = stats["gain"]
            cells.append(f"{_accuracy(stats)} [{100 * gain['mean']:+.1f} ± {100 * gain['std']:.1f}, "
                         f"{stats['kept']}/{stats['n']}]")
        lines.append(f"| {loss} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _accuracy(stats: dict[str, Any] | None) -> str:
    if stats is None:
        return "—"
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}" if stats["n"] > 1 else f"{100 * stats['mean']:.1f}"


def to_csv(result: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["loss", "degradation", "seed", "test_z", "gain", "distillation_helps", "chosen"])
    for loss in result["losses"]:
        for degradation in result["degradations"]:
            for row in result["raw"][loss][degradation]:
                writer.writerow([loss, degradation, row["seed"], row["test_z"], row["gain"],
                                 row["distillation_helps"], row["loss"] or ""])
    return buffer.getvalue()


def heatmap(path: Path, result: dict[str, Any]) -> None:
    """A losses x degradations heatmap of the mean gain over the baseline (points), each cell with its sd."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    losses, degradations = result["losses"], result["degradations"]
    gains = np.full((len(losses), len(degradations)), np.nan)
    spread = np.full_like(gains, np.nan)
    for i, loss in enumerate(losses):
        for j, degradation in enumerate(degradations):
            stats = result["table"][loss][degradation]
            if stats is not None:
                gains[i, j], spread[i, j] = 100 * stats["gain"]["mean"], 100 * stats["gain"]["std"]
    limit = max(1.0, float(np.nanmax(np.abs(gains)))) if np.isfinite(gains).any() else 1.0
    figure, axis = plt.subplots(figsize=(1.6 * len(degradations) + 2.5, 0.45 * len(losses) + 1.8))
    image = axis.imshow(gains, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for i in range(len(losses)):
        for j in range(len(degradations)):
            if np.isfinite(gains[i, j]):
                axis.text(j, i, f"{gains[i, j]:+.1f}\n±{spread[i, j]:.1f}", ha="center", va="center", fontsize=7)
    axis.set_xticks(range(len(degradations)), degradations, rotation=20, ha="right")
    axis.set_yticks(range(len(losses)), losses)
    baseline = METHODS[result["baseline"]].title
    axis.set_title(f"{METHODS[result['method']].title} gain over {baseline} on the test z views (points, mean ± sd "
                   f"over {len(result['seeds'])} seeds)", fontsize=9)
    figure.colorbar(image, ax=axis, label="points")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_figure(figure, path, dpi=110)
    plt.close(figure)


def write_compare(out: Path, result: dict[str, Any]) -> None:
    atomic_write_json(out / "compare.json", result)
    atomic_write_bytes(out / "compare.md", to_markdown(result).encode())
    atomic_write_bytes(out / "compare.csv", to_csv(result).encode())
    heatmap(out / "compare.png", result)
