"""``cqdkit tune``: choose T and lambda for a distilled method on the validation split (never the test split).

For each degradation and each distilled method (``cqd``, ``a-cqd``, tuned separately), every cell of the
grid is trained once per seed (and fold) and scored by the negative log-likelihood of the true classes on
the validation z views after one temperature fitted on the other half of them
(:func:`cqdkit.train.evaluate.calibrated_nll`): distillation at a temperature also changes how confident the
student is, which the plain NLL would count against it even when it ranks the true class first more
often. The plain NLL and accuracy are reported beside it. The cell ``lambda = 0`` is the method without
distillation: B for ``cqd``, A→B for ``a-cqd`` (same initial weights, same data).

The choice, per degradation and method:

1. A distilled cell *qualifies* when it beats lambda = 0 by more than the spread of the seeds: the mean of
   its per-seed NLL gain over lambda = 0 exceeds that gain's standard deviation (paired by seed and fold,
   which share the teacher, the split and the initial weights). With one seed any gain qualifies.
2. If none qualifies, lambda = 0 is chosen: distillation did not help on validation, and the result says so.
3. Otherwise the qualifying cell of lowest mean NLL is best; cells within the seeds' spread of it tie, and a
   tie goes to the cell nearest the paper's values (T = 10, lambda of the paper profile), then to the larger
   lambda, then the larger T -- never towards switching distillation off.

The paper searched T in {1, 2, 5, 10} on its validation set; the default grid is T in {1, 2, 4, 10} and
lambda in {0, 2, 5, 20, 50, 200, 500, 1000}.

``--prune`` (off by default) stops clearly worse cells early, by synchronous successive halving with reduction
factor :data:`PRUNE_FACTOR` = 3: every distilled cell trains for the first rung's epochs (1/9 of the schedule,
at least 1), then, per degradation and method, only the best third of the cells (by the same score, mean over
replicates, rounded up) continue to the next rung (1/3 of the schedule), and the best third of those to the
end. A cell that continues resumes from its checkpoint on the same learning-rate schedule, so the cells that
finish are exactly the models the full grid trains; the choice above is made among them and lambda = 0 (always
trained in full). Every decision waits for a whole rung, so the outcome does not depend on the executor.
With the default grid (28 cells per degradation and method) and 8 epochs, it trains 28 x 1 + 10 x 3 + 4 x 8
= 90 cell-epochs instead of 224.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CqdkitError, DataError
from ..files import atomic_save_figure, atomic_write_json, read_regular_text
from ..lock import folder_lock
from ..losses.spec import MAX_LAMBDA, MAX_TEMPERATURE
from ..reporting import Reporter, reporting_into
from ..sweep import SweepSettings, Training, run_sweep
from .config import PAPER_STRENGTH, RunConfig
from .methods import METHODS, get_method

#: What the choice compares (lower is better): validation NLL on z after a cross-fitted temperature.
SCORE = "val_z_calibrated_nll"
TEMPERATURES: tuple[float, ...] = (1.0, 2.0, 4.0, 10.0)
LAMBDAS: tuple[float, ...] = (0.0, 2.0, 5.0, 20.0, 50.0, 200.0, 500.0, 1000.0)
#: ``--prune``: each rung keeps the best 1/PRUNE_FACTOR of the cells, and the rungs are 1/9, 1/3 and all epochs.
PRUNE_FACTOR = 3


def run_tune(
    base: RunConfig,
    degradations: list[str],
    out: Path,
    *,
    methods: tuple[str, ...] = ("cqd", "a-cqd"),
    seeds: tuple[int, ...] = (0, 1),
    temperatures: tuple[float, ...] = TEMPERATURES,
    lambdas: tuple[float, ...] = LAMBDAS,
    prune: bool = False,
    sweep: SweepSettings = SweepSettings(),
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Grid-search T and lambda per degradation and method on validation; writes ``out/tune.json`` and a
    heatmap per degradation and method (``out/<degradation>-<method>.png``); returns the JSON's content.

    With ``base.folds = K`` every seed runs the K folds of the training split, each a replicate. The trainings
    run as a sweep (:mod:`cqdkit.sweep`): in parallel with ``sweep.jobs`` or on Ray, each recorded when it
    finishes, so a rerun trains only what is missing.
    """
    out = Path(out)
    asked = methods
    methods, temperatures, lambdas = check_grid(base, methods, seeds, temperatures, lambdas)
    sweep.check()
    with folder_lock(out), reporting_into(reporter, out, tensorboard=base.tensorboard) as reporter:
        for method in dict.fromkeys(asked):
            if method not in methods:
                reporter.message(f"--method {method}: not tuned: {METHODS[method].unavailable(**_architectures(base))}")
        return _run_tune(base, degradations, out, methods=methods, seeds=seeds, temperatures=temperatures,
                         lambdas=lambdas, prune=prune, sweep=sweep, reporter=reporter)


def _architectures(base: RunConfig) -> dict[str, Any]:
    resolved = base.resolved()
    return {"teacher": resolved.teacher, "student": resolved.student}


def check_grid(base: RunConfig, methods: tuple[str, ...], seeds: tuple[int, ...], temperatures: tuple[float, ...],
               lambdas: tuple[float, ...]) -> tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...]]:
    """Check a tune's settings before anything is written or trained; returns the methods, temperatures and
    lambdas each once (in order; the lambdas sorted, 0 included).

    Raises:
        CqdkitError: no validation split to choose on (``--val-fraction 0`` without ``--folds``), a method that is
            not distilled or that these architectures do not allow, no seed, or a grid value out of range, named
            by its option.
    """
    from .config import MAX_SEED

    if not methods:
        raise CqdkitError("--method: no method to tune; expected cqd and/or a-cqd")
    for method in methods:
        if method not in METHODS or not METHODS[method].distill:
            distilled = ", ".join(name for name, m in METHODS.items() if m.distill)
            raise CqdkitError(f"--method: {method!r} is not a distilled method; expected {distilled}")
    if not seeds:
        raise CqdkitError("--seeds: no seed; expected at least 1")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < MAX_SEED:
            raise CqdkitError(f"--seeds: seed {seed!r} is not an integer in [0, 2**32)")
    if len(set(seeds)) != len(seeds):
        raise CqdkitError(f"--seeds: {', '.join(map(str, seeds))} repeats a seed; expected each seed once")
    for value in temperatures:
        if not (math.isfinite(value) and 0 < value <= MAX_TEMPERATURE):
            raise CqdkitError(f"--temperatures: {value} is not a temperature; expected numbers > 0, at most "
                              f"{MAX_TEMPERATURE:g}")
    for value in lambdas:
        if not (math.isfinite(value) and 0 <= value <= MAX_LAMBDA):
            raise CqdkitError(f"--lambdas: {value} is not a lambda; expected numbers from 0 to {MAX_LAMBDA:g}")
    if not temperatures:
        raise CqdkitError("--temperatures: the grid is empty; expected comma-separated numbers > 0")
    if not any(value > 0 for value in lambdas):
        raise CqdkitError(f"--lambdas: no lambda > 0 in {', '.join(f'{v:g}' for v in lambdas) or 'the grid'}; "
                          "nothing to tune (0, the method without distillation, is always included)")
    if base.folds == 0 and base.val_fraction == 0:
        raise CqdkitError("--val-fraction 0: tune chooses T and lambda on the validation split, so it needs one; "
                          "give --val-fraction above 0 (e.g. 0.1) or --folds K")
    resolved = base.resolved()
    reasons = {method: METHODS[method].unavailable(teacher=resolved.teacher, student=resolved.student)
               for method in methods}
    if all(reasons.values()):  # nothing would be tuned
        raise CqdkitError(f"--method {','.join(dict.fromkeys(methods))}: nothing to tune with --teacher "
                          f"{resolved.teacher} and --student {resolved.student}: "
                          + "; ".join(dict.fromkeys(str(reason) for reason in reasons.values())))
    return (tuple(method for method in dict.fromkeys(methods) if not reasons[method]),
            tuple(dict.fromkeys(float(t) for t in temperatures)), tuple(sorted(set(lambdas) | {0.0})))


@dataclass(frozen=True)
class _Cell:
    """Where one score of the grid comes from: a degradation, a replicate, a method and its (T, lambda)."""

    degradation: str
    replicate: int
    method: str
    temperature: float
    lam: float


def tune_trainings(base: RunConfig, degradations: list[str], out: Path, *, methods: tuple[str, ...],
                   seeds: tuple[int, ...], temperatures: tuple[float, ...],
                   lambdas: tuple[float, ...]) -> tuple[list[Training], dict[str, _Cell]]:
    """The sweep of a tune: per degradation and replicate, A (and its cached logits) first, then the baseline of
    each method and every cell of its grid; with the grid cell each scoring training stands for."""
    from .experiment import Experiment
    from .table import slug

    replicates = [(seed, fold) for seed in seeds for fold in (range(base.folds) if base.folds else [0])]
    trainings: list[Training] = []
    cells: dict[str, _Cell] = {}
    teachers = str(out / "teachers")
    for degradation in degradations:
        for index, (seed, fold) in enumerate(replicates):
            replicate = out / slug(degradation) / (f"seed-{seed}" + (f"-fold-{fold}" if base.folds else ""))
            config = dataclasses.replace(base, degrade=degradation, seed=seed, fold=fold)
            where = f"{slug(degradation)}/{replicate.name}"
            plain = Experiment(config, replicate, teacher_root=Path(teachers), reporter=Reporter.silent())
            trained = [m for m in methods if plain.can_train(m)]
            if not trained:  # e.g. a-cqd alone, with a teacher that sees privileged channels
                reasons = {get_method(m).unavailable(teacher=plain.config.teacher, student=plain.config.student,
                                                     x_channels=tuple(plain.maker.x_channels), degrade=degradation)
                           for m in methods}
                raise CqdkitError(f"--degrade {degradation}: no method of --method {','.join(methods)} can be "
                                  f"tuned on it: {'; '.join(sorted(str(r) for r in reasons))}")
            first_lam = min(value for value in lambdas if value > 0)
            teacher = Training(f"{where}/A", "cqdkit.train.tune:train_teacher", {
                "config": dataclasses.asdict(dataclasses.replace(config, temperature=temperatures[0], lam=first_lam,
                                                                 tuned=None)),
                "directory": str(replicate), "teacher_root": teachers, "method": trained[0]})
            trainings.append(teacher)
            for method_name in trained:
                baseline = get_method(method_name).baseline().name
                name = f"{where}/{METHODS[baseline].title}"
                if name not in cells:
                    trainings.append(Training(name, "cqdkit.train.tune:score", {
                        "config": dataclasses.asdict(config), "directory": str(replicate), "teacher_root": teachers,
                        "method": baseline}, after=(teacher.name,)))
                cells.setdefault(name, _Cell(degradation, index, method_name, 0.0, 0.0))
                for temperature in temperatures:
                    for lam in (value for value in lambdas if value > 0):
                        folder = f"T{temperature:g}-lambda{lam:g}"
                        name = f"{where}/{folder}/{METHODS[method_name].title}"
                        trainings.append(Training(name, "cqdkit.train.tune:score", {
                            "config": dataclasses.asdict(dataclasses.replace(
                                config, temperature=temperature, lam=lam, tuned=None)),
                            "directory": str(replicate / folder), "teacher_root": teachers, "method": method_name},
                            after=(teacher.name,)))
                        cells[name] = _Cell(degradation, index, method_name, temperature, lam)
    return trainings, cells


def train_teacher(config: dict[str, Any], directory: str, teacher_root: str, method: str,
                  reporter: Reporter) -> dict[str, Any]:
    """A sweep's training: teacher A, and its logits cached for the distilled ``method`` (computed once, read by
    every student of the grid); returns A's validation scores."""
    from .experiment import Experiment

    experiment = Experiment(RunConfig(**config), Path(directory), teacher_root=Path(teacher_root), reporter=reporter)
    experiment.objective(method)  # trains A, computes and caches its logits
    return experiment.evaluate("a", split="val")


def score(config: dict[str, Any], directory: str, teacher_root: str, method: str, reporter: Reporter,
          split: str = "val", epochs: int | None = None) -> dict[str, Any]:
    """A sweep's training: ``method`` trained (or loaded) in ``directory``, and its scores on ``split``; with
    ``epochs``, after that many epochs of its schedule (a later call continues the same training)."""
    from .experiment import Experiment

    experiment = Experiment(RunConfig(**config), Path(directory), teacher_root=Path(teacher_root), reporter=reporter)
    if epochs is None:
        return experiment.evaluate(method, split=split)
    return experiment.score(experiment.train_or_load(method, epochs=epochs), split)


def rungs(epochs: int, factor: int = PRUNE_FACTOR) -> list[int]:
    """The epochs after which ``--prune`` compares the cells: 1/factor**2, 1/factor and all of ``epochs`` (rounded
    up, at least 1, each once): ``rungs(8) == [1, 3, 8]``."""
    return sorted({max(1, math.ceil(epochs / factor ** power)) for power in (2, 1, 0)})


def _run_tune(base: RunConfig, degradations: list[str], out: Path, *, methods: tuple[str, ...],
              seeds: tuple[int, ...], temperatures: tuple[float, ...], lambdas: tuple[float, ...],
              prune: bool, sweep: SweepSettings, reporter: Reporter) -> dict[str, Any]:
    from .distributed import is_main_process
    from .table import check_degradations, slug

    check_degradations(base, degradations, reporter)
    trainings, cells = tune_trainings(base, degradations, out, methods=methods, seeds=seeds,
                                      temperatures=temperatures, lambdas=lambdas)
    pruned: list[dict[str, Any]] = []
    if prune:
        done = _successive_halving(trainings, cells, base.resolved().epochs, out, sweep, reporter, pruned)
    else:
        done = run_sweep(trainings, out, sweep, reporter=reporter)
    paper = PAPER_STRENGTH.get(base.dataset, PAPER_STRENGTH["cub"])
    result: dict[str, Any] = {"split": "val", "score": SCORE, "seeds": list(seeds), "folds": base.folds,
                              "temperatures": list(temperatures), "lambdas": list(lambdas), "paper": paper,
                              "methods": {method_name: {} for method_name in methods}}
    if prune:
        result["rungs"] = pruned  # every cell at every early rung: its mean score, and whether it continued
    for degradation in degradations:
        for method_name in methods:
            scores: dict[tuple[float, float], list[tuple[int, dict[str, float]]]] = {}
            for name, cell in cells.items():
                if cell.degradation == degradation and cell.method == method_name and name in done:
                    scores.setdefault((cell.temperature, cell.lam), []).append((cell.replicate, done[name]))
            if not scores:
                reporter.message(f"{method_name} not tuned on {degradation}: the architectures or x's channels do "
                                 "not allow it")
                continue
            found = choose({key: [s for _, s in sorted(rows, key=lambda row: row[0])] for key, rows in scores.items()},
                           paper)
            result["methods"][method_name][degradation] = found
            if is_main_process():
                heatmap(out / f"{slug(degradation)}-{method_name}.png", found, f"{degradation}, {method_name}")
    if is_main_process():
        atomic_write_json(out / "tune.json", result)
    return result


def _successive_halving(trainings: list[Training], cells: dict[str, _Cell], epochs: int, out: Path,
                        sweep: SweepSettings, reporter: Reporter, pruned: list[dict[str, Any]]) -> dict[str, Any]:
    """``--prune``: run the grid rung by rung (module docstring), appending to ``pruned`` every cell's mean score
    at each early rung and whether it continued; returns the scores of every training that finished its whole
    schedule."""
    fixed = [t for t in trainings if t.name not in cells or cells[t.name].lam == 0]  # A, lambda = 0: in full
    alive = [t for t in trainings if t.name in cells and cells[t.name].lam > 0]
    *early, _ = rungs(epochs)
    for rung in early:
        batch = [Training(f"{t.name} @ {rung} epochs", t.task, {**t.arguments, "epochs": rung}, t.after) for t in alive]
        reporter.message(f"--prune: {len({_group(cells[t.name]) for t in alive})} cells to {rung} of {epochs} epochs")
        done = run_sweep(fixed + batch, out, sweep, reporter=reporter)
        means: dict[tuple[Any, ...], list[float]] = {}
        for training, ran in zip(alive, batch):
            means.setdefault(_group(cells[training.name]), []).append(done[ran.name][SCORE])
        kept = set()
        for family in {key[:2] for key in means}:
            ranked = sorted((key for key in means if key[:2] == family), key=lambda key: statistics.fmean(means[key]))
            keep = math.ceil(len(ranked) / PRUNE_FACTOR)
            kept.update(ranked[:keep])
            pruned.extend({"degradation": key[0], "method": key[1], "temperature": key[2], "lam": key[3],
                           "epochs": rung, "score": statistics.fmean(means[key]), "continued": k < keep}
                          for k, key in enumerate(ranked))
        alive = [t for t in alive if _group(cells[t.name]) in kept]
    reporter.message(f"--prune: {len({_group(cells[t.name]) for t in alive})} cells to all {epochs} epochs")
    return run_sweep(fixed + alive, out, sweep, reporter=reporter)


def _group(cell: _Cell) -> tuple[str, str, float, float]:
    """A grid cell's identity over replicates: degradation, method, T, lambda."""
    return (cell.degradation, cell.method, cell.temperature, cell.lam)


def choose(scores: dict[tuple[float, float], list[dict[str, float]]], paper: dict[str, float], *,
           score: str = SCORE) -> dict[str, Any]:
    """Apply the choice rule of the module docstring to per-replicate validation scores.

    ``scores[(T, lam)]`` lists one ``Experiment.evaluate(..., split="val")`` dict per replicate, in the same
    replicate order for every cell; ``(0, 0)`` is the baseline; ``score`` (lower is better) is the key the
    rule compares. Returns the grid (for each cell the mean and spread of the score, raw NLL and accuracy,
    the gain over the baseline, whether the cell qualifies) and the choice.
    """
    baseline = [s[score] for s in scores[(0.0, 0.0)]]
    grid = []
    for (temperature, lam), replicates in sorted(scores.items()):
        values = [s[score] for s in replicates]
        gains = [b - v for b, v in zip(baseline, values)]
        cell = {"temperature": temperature, "lam": lam, "score": statistics.fmean(values), "score_std": _std(values),
                "scores": values, "gain": statistics.fmean(gains), "gain_std": _std(gains), "replicates": len(values)}
        for key in ("val_z", "val_z_nll", "val_z_calibrated_nll"):
            if all(key in s for s in replicates):
                cell[key] = statistics.fmean(s[key] for s in replicates)
                cell[f"{key}_std"] = _std([s[key] for s in replicates])
        cell["qualifies"] = lam > 0 and cell["gain"] > 0 and cell["gain"] > cell["gain_std"]
        grid.append(cell)
    qualifying = [cell for cell in grid if cell["qualifies"]]
    base_cell = next(cell for cell in grid if cell["lam"] == 0)
    if not qualifying:
        return {"chosen": {"temperature": paper["temperature"], "lam": 0.0}, "distillation_helps": False,
                "best": base_cell, "grid": grid}
    best = min(qualifying, key=lambda cell: cell["score"])
    ties = []
    for cell in qualifying:
        behind = [c - b for c, b in zip(cell["scores"], best["scores"])]
        if statistics.fmean(behind) <= _std(behind):
            ties.append(cell)

    def preference(cell: dict[str, Any]) -> tuple[float, float, float]:
        distance = abs(math.log(cell["temperature"] / paper["temperature"])) + abs(math.log(cell["lam"] / paper["lam"]))
        return (distance, -cell["lam"], -cell["temperature"])

    chosen = min(ties, key=preference)
    return {"chosen": {"temperature": chosen["temperature"], "lam": chosen["lam"]}, "distillation_helps": True,
            "best": chosen, "ties": [[c["temperature"], c["lam"]] for c in ties], "grid": grid}


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def heatmap(path: Path, found: dict[str, Any], title: str) -> None:
    """A heatmap of mean validation NLL over T (rows) and lambda (columns), accuracy written in each cell,
    the lambda = 0 baseline as its own column and the chosen cell outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = found["grid"]
    temperatures = sorted({c["temperature"] for c in grid if c["lam"] > 0})
    lambdas = [0.0] + sorted({c["lam"] for c in grid if c["lam"] > 0})
    base = next(c for c in grid if c["lam"] == 0)
    values = np.full((len(temperatures), len(lambdas)), np.nan)
    accuracy = np.full_like(values, np.nan)
    for cell in grid:
        for row, temperature in enumerate(temperatures):
            if cell["lam"] == 0 or cell["temperature"] == temperature:
                column = lambdas.index(cell["lam"])
                values[row, column], accuracy[row, column] = cell["score"], cell["val_z"]
    figure, axis = plt.subplots(figsize=(1.1 * len(lambdas) + 2, 0.7 * len(temperatures) + 1.8))
    image = axis.imshow(values, cmap="viridis_r", aspect="auto")
    for row in range(len(temperatures)):
        for column in range(len(lambdas)):
            marker = "*" if column and grid and _is(grid, temperatures[row], lambdas[column], "qualifies") else ""
            text = (f"{values[row, column]:.3f}{marker}\n{100 * accuracy[row, column]:.0f}%"
                    if np.isfinite(values[row, column]) else "pruned")  # --prune stopped it early
            axis.text(column, row, text, ha="center", va="center", fontsize=7, color="white")
    chosen = found["chosen"]
    if chosen["lam"] > 0:
        row, column = temperatures.index(chosen["temperature"]), lambdas.index(chosen["lam"])
        axis.add_patch(plt.Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    axis.set_xticks(range(len(lambdas)), [f"{lam:g}" for lam in lambdas])
    axis.set_yticks(range(len(temperatures)), [f"{t:g}" for t in temperatures])
    axis.set_xlabel("lambda (0: no distillation)")
    axis.set_ylabel("T")
    axis.set_title(f"{title}: calibrated validation NLL on z (lower is better; * beats lambda=0 beyond the "
                   f"seeds' spread)\nbaseline {base['score']:.3f}; chosen T={chosen['temperature']:g}, lambda={chosen['lam']:g}",
                   fontsize=8)
    figure.colorbar(image, ax=axis, label="NLL")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_figure(figure, path, dpi=110)
    plt.close(figure)


def _is(grid: list[dict[str, Any]], temperature: float, lam: float, key: str) -> bool:
    return any(c[key] for c in grid if c["temperature"] == temperature and c["lam"] == lam)


def tuned_values(path: str | Path) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`chosen_values` of the ``tune.json`` at ``path`` (``--tuned``).

    Raises:
        CqdkitError: the file cannot be read, is not JSON, or is not a ``cqdkit tune`` result (named).
    """
    import json

    try:
        return chosen_values(json.loads(read_regular_text(path, "a tune.json")))
    except (OSError, ValueError, DataError) as error:
        raise CqdkitError(f"cannot read tuned values from {path}: {error}") from error


def chosen_values(tune_result: Any) -> dict[str, dict[str, dict[str, float]]]:
    """``{method: {degradation: {"temperature": T, "lam": lambda}}}`` from a ``tune.json`` payload.

    Raises:
        DataError: the payload is not a ``cqdkit tune`` result: no ``methods`` table of distilled methods, or a
            chosen value that is not a finite temperature > 0 or lambda >= 0 (named by its place in the file).
    """
    methods = tune_result.get("methods") if isinstance(tune_result, dict) else None
    if not isinstance(methods, dict):
        raise DataError(f"expected a JSON object with a 'methods' table, as cqdkit tune writes, "
                        f"got {type(tune_result).__name__}")
    chosen: dict[str, dict[str, dict[str, float]]] = {}
    for method, found in methods.items():
        if method not in METHODS or not METHODS[method].distill:
            distilled = ", ".join(name for name, m in METHODS.items() if m.distill)
            raise DataError(f"methods: {method!r} is not a distilled method (expected {distilled})")
        if not isinstance(found, dict):
            raise DataError(f"methods.{method}: expected a table of degradations, got {type(found).__name__}")
        chosen[method] = {degradation: _chosen(f"methods.{method}.{degradation}.chosen", values)
                          for degradation, values in found.items()}
    return chosen


#: What a tune.json may choose, and the values each takes.
_CHOSEN: dict[str, tuple[str, Callable[[float], bool]]] = {
    "temperature": ("(--temperature) must be a finite number > 0", lambda value: value > 0),
    "lam": ("(--lambda) must be a finite number >= 0", lambda value: value >= 0),
}


def _chosen(where: str, found: Any) -> dict[str, float]:
    """The ``chosen`` values at ``where`` in a tune.json: only a temperature (finite, > 0) and a lambda (finite,
    >= 0)."""
    values = found.get("chosen") if isinstance(found, dict) else None
    if not isinstance(values, dict):
        raise DataError(f"{where}: expected a table of temperature and lam, got {values!r:.60}")
    for key, value in values.items():
        if key not in _CHOSEN:
            raise DataError(f"{where}: unknown key {key!r} (expected temperature, lam)")
        rule, valid = _CHOSEN[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and valid(value)):
            raise DataError(f"{where}.{key} {rule}, got {value!r:.60}")
    return {key: float(value) for key, value in values.items()}
