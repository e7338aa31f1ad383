"""``cqdkit table``: the paper's Table 1 for several degradations and seeds.

Rows (train / test): A/A, A/B, B/B, A→B/B, CQD/B, A+CQD/B; one column per degradation; each cell the mean
and standard deviation over seeds of per-image top-1 accuracy on the test split. Model A is trained once per
seed and shared by every degradation that leaves x unchanged. The last row reports how much of the quality
gap A+CQD closes: (A+CQD/B - B/B) / (A/A - B/B).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import math
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..files import atomic_write_bytes, atomic_write_json
from ..lock import folder_lock
from ..reporting import Reporter, reporting_into
from ..sweep import SweepSettings, Training, run_sweep
from .config import RunConfig
from .distributed import is_main_process
from ..losses.spec import loss_text
from .methods import AUTO, METHODS

#: (method, test view) of each row, in the paper's order; the label is "<train>/<test>" (A = x, B = z).
_CELLS: tuple[tuple[str, str], ...] = (("a", "x"), ("a", "z"), ("b", "z"), ("a-b", "z"), ("cqd", "z"), ("a-cqd", "z"))
#: (row label, method, test view)
ROWS: tuple[tuple[str, str, str], ...] = tuple(
    (f"{METHODS[method].title}/{'A' if view == 'x' else 'B'}", method, view) for method, view in _CELLS
)
GAP_ROW = "gap closed by A+CQD"


def slug(spec: str) -> str:
    """A folder name for a degradation spec, one per spec: its letters, digits and dashes, with the others
    made ``_`` and, when that changed anything, a short hash of the spec, so that specs that differ only there
    (``tps:sigma=1.5``, ``tps:sigma=1_5``) never share a folder.

        >>> slug("gray"), slug("tps:sigma=1.5")
        ('gray', 'tps_sigma_1_5-d26e18')
    """
    readable = "".join(c if c.isalnum() or c == "-" else "_" for c in spec)
    if readable == spec:
        return spec
    return f"{readable}-{hashlib.sha256(spec.encode('utf-8', 'surrogateescape')).hexdigest()[:6]}"


def run_table(
    base: RunConfig,
    degradations: list[str],
    seeds: list[int],
    out: Path,
    *,
    sweep: SweepSettings = SweepSettings(),
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Train every model Table 1 needs (reusing finished ones in ``out``) and write the table files.

    Each distilled method takes its distillation strength per degradation and seed from the run's settings:
    fixed (``--lambda``, ``--temperature``), a ``cqdkit tune`` choice (``base.tuned``), or chosen on the validation
    split (``auto``, :mod:`cqdkit.train.strength`). Distilled models live in a folder named by their loss and
    strength (``auto`` for a search), so changing them never reuses a model trained with other values. The
    trainings run as a sweep (:mod:`cqdkit.sweep`): in parallel with ``sweep.jobs`` or on Ray.
    """
    out = Path(out)
    sweep.check()
    with folder_lock(out), reporting_into(reporter, out, tensorboard=base.tensorboard) as reporter:
        return _run_table(base, degradations, seeds, out, sweep=sweep, reporter=reporter)


def grid_rows(base: RunConfig, degradations: list[str], seeds: list[int], out: Path,
              reporter: Reporter) -> Iterator[tuple[int, str, Any]]:
    """``(seed, degradation, experiment)`` for every cell of a table-like grid: the experiment of that seed and
    degradation in ``out/seed-<seed>/<degradation>``, its A shared by the seed's degradations that leave x
    unchanged (``out/seed-<seed>/a-<key>``), reporting as ``seed-<seed>/<degradation>``.

    Raises:
        CqdkitError: a model already in ``out`` was trained with other settings (:meth:`Experiment.check_settings`).
    """
    from .experiment import Experiment

    for seed in seeds:
        for degradation in degradations:
            config = dataclasses.replace(base, degrade=degradation, seed=seed, method=AUTO)
            scope = reporter.scoped(f"seed-{seed}/{slug(degradation)}")
            experiment = Experiment(config, out / f"seed-{seed}" / slug(degradation), teacher_root=out / f"seed-{seed}",
                                    reporter=scope)
            for method in ("a", "b", "a-b"):  # a model of the folder trained with other settings: refused now, not
                if experiment.can_train(method):  # after the sweep has trained others
                    experiment.check_settings(method)
            yield seed, degradation, experiment


def check_degradations(base: RunConfig, degradations: list[str], reporter: Reporter | None = None) -> None:
    """Build the experiment of every degradation once, so that a bad spec, name or setting in any of them is
    an error before anything trains (building one trains nothing and writes nothing)."""
    from .experiment import Experiment

    for degradation in degradations:
        Experiment(dataclasses.replace(base, degrade=degradation, method=AUTO), Path("."), reporter=reporter)


def row_arguments(experiment: Any) -> dict[str, Any]:
    """The arguments that rebuild a row experiment in a sweep's worker (:func:`train_model`)."""
    return {"config": dataclasses.asdict(experiment.config), "directory": str(experiment.directory),
            "teacher_root": str(experiment.teacher_directory.parent)}


def teacher_training(experiment: Any, where: str, teachers: dict[Path, str]) -> tuple[list[Training], str]:
    """A row's A: a training of it unless another row with the same x trains it (``teachers`` maps A's folders to
    their trainings' names, and gains this one), and the name of the training the row's students wait for."""
    if experiment.teacher_directory in teachers:
        return [], teachers[experiment.teacher_directory]
    teachers[experiment.teacher_directory] = f"{where}/A"
    return [Training(f"{where}/A", "cqdkit.train.table:train_model", {**row_arguments(experiment), "method": "a"})], \
        f"{where}/A"


def row_trainings(experiment: Any, where: str, teachers: dict[Path, str]) -> list[Training]:
    """The trainings of one row experiment (a seed and a degradation) of a table-like grid: its A
    (:func:`teacher_training`), B and A→B once it has A, then each distilled method, in a folder named by its
    strength, once it has all three."""
    common = row_arguments(experiment)
    trainings, name = teacher_training(experiment, where, teachers)
    teacher = (name,)
    plain = [method for method in ("b", "a-b") if experiment.can_train(method)]
    for method in plain:
        trainings.append(Training(f"{where}/{METHODS[method].title}", "cqdkit.train.table:train_model",
                                  {**common, "method": method}, after=teacher))
    for method in ("cqd", "a-cqd"):
        if experiment.can_train(method):
            folder = strength_folder(experiment, METHODS[method])
            trainings.append(Training(
                f"{where}/{folder}/{METHODS[method].title}", "cqdkit.train.table:train_model",
                {**common, "method": method, "folder": folder},
                after=teacher + tuple(f"{where}/{METHODS[m].title}" for m in plain)))
    return trainings


def train_model(config: dict[str, Any], directory: str, teacher_root: str, method: str, reporter: Reporter,
                folder: str | None = None) -> dict[str, Any]:
    """A sweep's training: ``method`` of a row experiment trained (or loaded) and scored on the test split; a
    distilled one in its sibling ``folder`` that shares the row's A, B and A→B, with its distillation setting."""
    from .experiment import Experiment

    row = Experiment(RunConfig(**config), Path(directory), teacher_root=Path(teacher_root), reporter=reporter)
    if folder is None:
        return row.evaluate(method)
    trainer = row.sibling(Path(directory) / folder, share=("a", "b", "a-b"), reporter=reporter)
    return {**trainer.evaluate(method), "distillation": trainer.distillation(METHODS[method])}


def _run_table(base: RunConfig, degradations: list[str], seeds: list[int], out: Path, *, sweep: SweepSettings,
               reporter: Reporter) -> dict[str, Any]:
    check_degradations(base, degradations, reporter)
    rows = list(grid_rows(base, degradations, seeds, out, reporter))
    teachers: dict[Path, str] = {}
    trainings = [training for seed, degradation, experiment in rows
                 for training in row_trainings(experiment, f"seed-{seed}/{slug(degradation)}", teachers)]
    began = time.perf_counter()
    done = run_sweep(trainings, out, sweep, reporter=reporter)
    raw: dict[str, dict[str, list[float]]] = {d: {row: [] for row, _, _ in ROWS} for d in degradations}
    settings: dict[str, Any] = {}
    chosen: dict[str, dict[str, dict[str, Any]]] = {}  # degradation -> method -> seed -> its distillation
    for seed, degradation, experiment in rows:
        where = f"seed-{seed}/{slug(degradation)}"
        teacher = teachers[experiment.teacher_directory]
        settings[degradation] = {"epochs": experiment.config.epochs, "pipeline": experiment.maker.describe()}
        scores: dict[str, dict[str, float]] = {}
        for row, method, view in ROWS:
            if not experiment.can_train(method):
                continue  # e.g. a student that cannot start from A's weights: another architecture or input
            if method not in scores:
                name = teacher if method == "a" else f"{where}/{METHODS[method].title}"
                if METHODS[method].distill:
                    name = f"{where}/{strength_folder(experiment, METHODS[method])}/{METHODS[method].title}"
                result = dict(done[name])
                distillation = result.pop("distillation", None)
                scores[method] = result
                if distillation is not None:
                    settings[degradation][method] = strength_setting(distillation)
                    chosen.setdefault(degradation, {}).setdefault(method, {})[str(seed)] = distillation
                experiment.reporter.result(METHODS[method].title, scores[method])
            value = scores[method][f"test_{view}"]
            if not math.isnan(value):  # NaN: a privileged teacher cannot be tested on RGB z
                raw[degradation][row].append(value)
        if is_main_process():
            experiment.write_config()
            atomic_write_json(experiment.directory / "results.json",
                              {"models": scores, "settings": settings[degradation]})
    table = summarise(raw)
    result = {
        "rows": [row for row, _, _ in ROWS] + [GAP_ROW],
        "degradations": degradations,
        "seeds": seeds,
        "teacher": experiment.config.teacher,
        "student": experiment.config.student,
        "dataset": base.dataset,
        "settings": settings,
        "distillation": chosen,
        "raw": raw,
        "table": table,
        "wall_seconds": time.perf_counter() - began,
    }
    if is_main_process():
        write_table(out, result)
    return result


def strength_folder(experiment: Any, method: Any) -> str:
    """The folder name of a distilled method's models: ``T10-lambda20`` for one logit loss at its own parameters
    (``softce`` unless named: ``kl-T4-lambda1``), the whole loss with every value for anything else, and ``auto``
    (after the loss when not softce) when the strength is chosen on validation."""
    terms = experiment.given_terms(method)
    if not all(term.complete() for term in terms):
        return "auto" if experiment.config.loss == "softce" else f"{slug(experiment.config.loss)}-auto"
    if len(terms) == 1 and terms[0].logit and set(terms[0].params) == {"temperature"}:
        name = "" if terms[0].name == "softce" else f"{terms[0].name}-"
        return f"{name}T{terms[0].temperature:g}-lambda{terms[0].weight:g}"
    return slug(loss_text(terms))


def strength_setting(distillation: dict[str, Any]) -> dict[str, Any]:
    """What a table's settings say of a distilled method's strength: ``{"temperature", "lam"}`` for one logit term
    given or tuned; the chosen loss, or none, when chosen on validation (per seed in the table's ``distillation``)."""
    terms = distillation["terms"]
    if distillation["chosen_by"] == "validation":
        return {"chosen_by": "validation", "loss": "+".join(term["spec"] for term in terms) or None}
    if len(terms) == 1 and terms[0]["temperature"] is not None:
        return {"temperature": terms[0]["temperature"], "lam": terms[0]["lambda"]}
    return {"loss": "+".join(term["spec"] for term in terms)}


def summarise(raw: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, dict[str, float] | None]]:
    """Mean and spread (sample standard deviation) per degradation and row, plus the gap closed."""
    table: dict[str, dict[str, dict[str, float] | None]] = {}
    for degradation, rows in raw.items():
        column: dict[str, dict[str, float] | None] = {}
        for row, values in rows.items():
            column[row] = _stats(values) if values else None
        a_a, b_b, cqd = rows["A/A"], rows["B/B"], rows["A+CQD/B"]
        if a_a and b_b and cqd:
            gaps = [(c - b) / (a - b) if a != b else float("nan") for a, b, c in zip(a_a, b_b, cqd)]
            column[GAP_ROW] = _stats(gaps)
        else:
            column[GAP_ROW] = None
        table[degradation] = column
    return table


def _stats(values: list[float]) -> dict[str, float]:
    if any(math.isnan(v) for v in values):  # e.g. a gap of zero width
        return {"mean": math.nan, "std": math.nan, "n": len(values)}
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def _cell(stats: dict[str, float] | None, percent: bool = True) -> str:
    if stats is None:
        return "—"
    scale = 100 if percent else 1
    text = f"{scale * stats['mean']:.1f}" if percent else f"{stats['mean']:.2f}"
    if stats["n"] > 1:
        text += f" ± {scale * stats['std']:.1f}" if percent else f" ± {stats['std']:.2f}"
    return text


def to_markdown(result: dict[str, Any]) -> str:
    degradations = result["degradations"]
    lines = [
        f"Per-image top-1 accuracy (%) on the test split, teacher {result['teacher']} → student "
        f"{result['student']}, dataset {result['dataset']}, mean ± std over seeds {result['seeds']}.",
        "",
        "| train / test | " + " | ".join(degradations) + " |",
        "|---|" + "---:|" * len(degradations),
    ]
    for row in result["rows"]:
        percent = row != GAP_ROW
        cells = [_cell(result["table"][d][row], percent) for d in degradations]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(result: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "degradation", "mean", "std", "n", *[f"seed_{s}" for s in result["seeds"]]])
    for degradation in result["degradations"]:
        for row in result["rows"]:
            stats = result["table"][degradation][row]
            values = result["raw"][degradation].get(row, [])
            if stats is not None:
                writer.writerow([row, degradation, stats["mean"], stats["std"], stats["n"], *values])
    return buffer.getvalue()


def write_table(out: Path, result: dict[str, Any]) -> None:
    atomic_write_json(out / "table.json", result)
    atomic_write_bytes(out / "table.md", to_markdown(result).encode())
    atomic_write_bytes(out / "table.csv", to_csv(result).encode())
