"""Distillation strength chosen per task on the validation split: ``--lambda auto`` / ``--temperature auto``.

No single T and lambda serves every cross-quality task (docs/results.md), so, like the paper, cqdkit chooses
them on the validation split of the training data -- never the test split -- for each distilled method,
degradation and loss term, then trains the student with the chosen values. The teacher and its cached outputs
are shared by every candidate.

For each term whose values are ``auto`` (in the order of the loss spec; terms already chosen or fixed stay on):

1. **Candidates**: the term's declared ``search`` values (for ``softce``: three strengths along a diagonal, T =
   2, 4, 10 with lambda = 5, 50, 500, i.e. a logit weight lambda / (C T^2) from 0.10 to 0.42 for 12 classes;
   a feature term: three weights x the last two stages), less what the run fixed.
2. **First round**: every candidate trains for the run's full schedule with the run's own student seed and is
   scored by the calibrated NLL of the validation z views (:func:`~cqdkit.train.evaluate.calibrated_nll`),
   against lambda = 0 (B for CQD, A→B for A+CQD, or the terms chosen so far). Full length, because short
   screens ranked the candidates badly here: distillation that helps most often learns slower at first
   (successive halving at a quarter or half of the epochs, and compressed schedules, were measured:
   docs/results.md). When no candidate beats lambda = 0 in this round, the term is dropped at once: with two
   seeds no later evidence could make it qualify.
3. **Second round**: the best :attr:`SearchPlan.finalists` and lambda = 0 are trained with more student seeds
   (``--student-seed``: the students' initialisation and data order; split, z and teacher unchanged), up to
   :attr:`SearchPlan.replicates` seeds each.
4. **Choice** (the rule of ``cqdkit tune``): a finalist *qualifies* when its calibrated-NLL gain over lambda = 0,
   paired by seed, is positive and larger than its spread over the seeds; the best qualifying one is chosen
   (a tie within the spread goes to the values nearest the paper's T = 10 and lambda). When none qualifies the
   term is dropped: with no term left, the method's student *is* its baseline, and the run says so.

The chosen finalist's first seed trained exactly as the final student would, so it is the final student (its
checkpoints are linked into the method's folder: nothing is trained twice; ``--lambda X --temperature T`` gives
the same weights). The choice and its evidence are written to ``<run>/<method>/strength.json`` (read back on
``--resume``, by ``report`` and ``explain``) and into ``config.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CqdkitError, SpecError, TrainingError
from ..files import atomic_link, atomic_write_json
from ..losses.spec import LAMBDA, TEMPERATURE, TermSpec, loss_text, search_space
from .config import MAX_SEED
from .distributed import barrier, is_main_process
from .methods import Method

if TYPE_CHECKING:
    from .experiment import Experiment

#: What the choice compares (lower is better), as ``cqdkit tune``: calibrated NLL of the validation z views.
SCORE = "val_z_calibrated_nll"
RECORD = "strength.json"
#: The record's format; a record of another version is searched again.
VERSION = 1


@dataclass(frozen=True)
class SearchPlan:
    """How much the search trains.

    Attributes:
        finalists: candidates of each term that go on to the second round.
        replicates: student seeds each finalist and lambda = 0 are trained with, the run's own included.
    """

    finalists: int = 1
    replicates: int = 2


@dataclass(frozen=True)
class Strength:
    """The search's outcome for one distilled method: the terms to train with (empty: distillation did not help
    on validation, the student is the baseline) and the evidence (``strength.json``'s content)."""

    terms: list[TermSpec]
    record: dict[str, Any]

    @property
    def helps(self) -> bool:
        return bool(self.terms)

    def summary(self) -> dict[str, Any]:
        """The evidence in short, for ``config.json`` and ``results.json``: per searched term, what was chosen and
        its validation scores against lambda = 0 (the full record is ``strength.json``)."""
        stages = []
        for stage in self.record["stages"]:
            row = {"term": stage["term"], "chosen": stage["chosen"], "baseline": stage["baseline"],
                   "baseline_val_z_calibrated_nll": stage["baseline_score"],
                   "baseline_val_z": stage.get("baseline_val_z")}
            if stage["cells"]:
                best = stage["cells"].get(stage["chosen"]) if stage["chosen"] else min(
                    stage["cells"].values(), key=lambda cell: cell["score"])
                row.update(val_z_calibrated_nll=best["score"], val_z=best.get("val_z"), gain=best["gain"],
                           gain_std=best["gain_std"], seeds=len(best["scores"]))
            else:  # no candidate beat lambda = 0 in the first round
                best = stage["first_round_best"]
                row.update(val_z_calibrated_nll=best["score"], val_z=None, gain=stage["baseline_score"] - best["score"],
                           gain_std=None, seeds=1)
            stages.append(row)
        return {"stages": stages, "epochs": self.record["epochs"], "trainings": self.record["trainings"],
                "candidates": sum(len(stage["candidates"]) for stage in self.record["stages"]),
                "seconds": self.record["seconds"]}


def chosen_strength(experiment: Experiment, method: Method, plan: SearchPlan = SearchPlan()) -> Strength:
    """``method``'s distillation terms chosen on validation: read from its ``strength.json`` when an earlier
    search of the same settings wrote one, else searched now (see the module docstring).

    Raises:
        CqdkitError: the experiment has no validation split to choose on.
    """
    strength = recorded_strength(experiment, method, plan)
    if strength is None:
        record = {**_search(experiment, method, plan), "identity": _identity(experiment, method, plan)}
        atomic_write_json(experiment.directory / method.name / RECORD, record)
        strength = Strength([_term_from_record(row) for row in record["terms"]], record)
    experiment._strengths[method.name] = strength
    return strength


def recorded_strength(experiment: Experiment, method: Method, plan: SearchPlan = SearchPlan()) -> Strength | None:
    """The strength an earlier search of these settings chose, or None (this never searches)."""
    if method.name in experiment._strengths:
        return experiment._strengths[method.name]
    record = _read(experiment.directory / method.name / RECORD)
    if record is None or record.get("identity") != _identity(experiment, method, plan):
        return None
    return Strength([_term_from_record(row) for row in record["terms"]], record)


def planned_trainings(experiment: Experiment, method: Method, plan: SearchPlan = SearchPlan()) -> int:
    """How many trainings choosing ``method``'s strength may take besides the run's own (0 when it is given or
    already chosen): every candidate, the finalists' and lambda = 0's further seeds, less the adopted one."""
    given = experiment.given_terms(method)
    if all(term.complete() for term in given) or recorded_strength(experiment, method, plan) is not None:
        return 0
    candidates = sum(len(_variants(experiment, term)) for term in given if not term.complete())
    searched = sum(1 for term in given if not term.complete())
    return candidates + searched * (plan.finalists + 1) * (plan.replicates - 1) - 1


def _search(experiment: Experiment, method: Method, plan: SearchPlan) -> dict[str, Any]:
    if not len(experiment.val_set):
        raise CqdkitError("--lambda auto / --temperature auto choose the distillation strength on the validation "
                          "split, and this run has none (--val-fraction 0); give --lambda and --temperature, or "
                          "--val-fraction > 0")
    began = time.perf_counter()
    cfg = experiment.config
    reporter = experiment.reporter
    given = experiment.given_terms(method)
    reporter.message(f"choosing the distillation strength of {method.title} on {cfg.degrade} on the validation "
                     f"split ({len(experiment.val_set)} images): every candidate trained once, the best "
                     f"{plan.finalists} and lambda = 0 again with {plan.replicates - 1} more student seed(s)")
    if method.needs_teacher:
        experiment.train_or_load("a")  # first, in the run's own folder: every candidate shares it
    search = _Search(experiment, method, plan)
    current: list[TermSpec | None] = [term if term.complete() else None for term in given]  # in the spec's order
    baseline = _Candidate([term for term in current if term is not None])
    stages = []
    for position, term in enumerate(given):
        if term.complete():
            continue
        candidates = [_Candidate([variant if k == position else other for k, other in enumerate(current)
                                  if (variant if k == position else other) is not None])
                      for variant in _variants(experiment, term)]
        first = search.first(baseline)
        ranked = sorted(candidates, key=lambda candidate: search.first(candidate))
        applicable = [c for c in ranked if math.isfinite(search.firsts[c.label])]
        if not applicable:
            raise SpecError(f"no value of {term.name} that --lambda auto tries suits these networks: "
                            + "; ".join(search.skipped.values()))
        finalists = [c for c in applicable[:plan.finalists] if search.firsts[c.label] < first]
        decision = decide({c.label: search.final(c) for c in finalists}, search.final(baseline) if finalists else
                          [search.scores[baseline.label][0]],
                          preference={c.label: _distance(experiment, c.terms) for c in finalists})
        if not finalists:  # none beat lambda = 0 on the run's own seed: nothing could qualify
            decision["first_round_best"] = {"loss": applicable[0].label, "score": search.firsts[applicable[0].label]}
        stage = {"term": term.name, "candidates": [{"loss": c.label, "first_round": search.firsts[c.label],
                                                  "skipped": search.skipped.get(c.label)} for c in ranked],
                 "finalists": [c.label for c in finalists], "baseline": baseline.label, **decision}
        stages.append(stage)
        if decision["distillation_helps"]:
            baseline = next(c for c in finalists if c.label == decision["chosen"])
            current[position] = next(variant for variant in baseline.terms if variant not in current)
        reporter.message(_stage_line(method, cfg.degrade, term, stage))
    seconds = time.perf_counter() - began
    chosen = baseline.terms
    if chosen:
        search.adopt(baseline)
    else:
        reporter.message(f"distillation did not help on validation for {cfg.degrade}: the student is "
                         f"{method.baseline().title}")
    return {"version": VERSION, "method": method.name, "degradation": cfg.degrade, "split": "val", "score": SCORE,
            "terms": [_term_record(term) for term in chosen], "loss": loss_text(chosen) if chosen else None,
            "distillation_helps": bool(chosen), "stages": stages, "epochs": cfg.epochs,
            "plan": dataclasses.asdict(plan), "trainings": search.trainings, "seconds": seconds}


@dataclass
class _Candidate:
    """A set of terms to train the distilled method with (empty: lambda = 0, the baseline)."""

    terms: list[TermSpec]
    label: str = ""

    def __post_init__(self) -> None:
        self.label = self.label or (loss_text(self.terms) if self.terms else "lambda = 0")


class _Search:
    """Trains and scores candidates in sibling experiments that share the run's data and teacher."""

    def __init__(self, experiment: Experiment, method: Method, plan: SearchPlan) -> None:
        self.experiment, self.method, self.plan = experiment, method, plan
        self.scores: dict[str, list[dict[str, float]]] = {}  # per candidate, one score dict per seed trained
        self.firsts: dict[str, float] = {}
        self.skipped: dict[str, str] = {}
        self.trainings = 0
        self.folder = experiment.directory / "search" / method.name / _digest(_identity(experiment, method, plan))

    def seeds(self) -> list[int | None]:
        """The student seeds of the replicates: the run's own first (its student), then others."""
        base = self.experiment.config.student_seed
        first = self.experiment.config.seed if base is None else base
        return [base] + [(first + 1_000_003 * r) % MAX_SEED for r in range(1, self.plan.replicates)]

    def sibling(self, candidate: _Candidate, seed: int | None) -> Experiment:
        """The experiment that trains ``candidate`` with student seed ``seed`` (None: the run's own). lambda = 0's
        seeds train beside the baseline they replicate, in the experiment that trains it (a table's or compare's
        row: every loss shares them)."""
        seed_folder = f"seed-{seed}" if seed is not None else "seed-run"
        if not candidate.terms:
            baseline = self.method.baseline().name
            owner = self.experiment._shared.get(baseline, self.experiment)
            folder = owner.directory / "search" / baseline / _digest(_baseline_identity(owner)) / seed_folder
            return owner.sibling(folder, student_seed=seed, lam=0.0, temperature=1.0, tuned=None)
        folder = self.folder / _folder_name(candidate.label) / seed_folder
        return self.experiment.sibling(folder, loss=loss_text(candidate.terms), lam=None, temperature=None,
                                       student_seed=seed, tuned=None)

    def _score(self, candidate: _Candidate, index: int) -> dict[str, float]:
        """The candidate's validation scores with the ``index``-th seed, trained for the full schedule (lambda = 0's
        first seed is the run's own baseline model, B or A→B)."""
        seed = self.seeds()[index]
        if not candidate.terms and index == 0:
            return self.experiment.evaluate(self.method.baseline().name, split="val")
        sibling = self.sibling(candidate, seed)
        self.trainings += 1
        return sibling.evaluate(self.method.name if candidate.terms else self.method.baseline().name, split="val")

    def first(self, candidate: _Candidate) -> float:
        """The candidate's validation score with the run's own seed; infinite for values these networks do not
        allow (a layer pair of different widths for ``st``: the reason is kept in ``skipped``)."""
        if candidate.label not in self.firsts:
            try:
                scores = self._score(candidate, 0)
            except (SpecError, TrainingError) as error:  # values these networks do not allow, or that diverged
                if not candidate.terms:
                    raise
                self.skipped[candidate.label] = str(error)
                self.firsts[candidate.label] = math.inf
                return math.inf
            self.scores[candidate.label] = [scores]
            self.firsts[candidate.label] = scores[SCORE]
            self.experiment.reporter.event("search", round=1, method=self.method.name, loss=candidate.label,
                                           score=scores[SCORE])
        return self.firsts[candidate.label]

    def final(self, candidate: _Candidate) -> list[dict[str, float]]:
        """The candidate's validation scores with every seed of the plan."""
        self.first(candidate)
        scores = self.scores[candidate.label]
        while len(scores) < self.plan.replicates:
            try:
                scores.append(self._score(candidate, len(scores)))
            except TrainingError as error:  # diverged with another seed: it cannot qualify
                if not candidate.terms:
                    raise
                self.skipped[candidate.label] = str(error)
                scores.append({SCORE: math.inf})
            self.experiment.reporter.event("search", round=2, method=self.method.name, loss=candidate.label,
                                           seed=len(scores) - 1, score=scores[-1][SCORE])
        return scores

    def adopt(self, winner: _Candidate) -> None:
        """Make the winner's first seed the run's student: link its checkpoints and log into the method's folder
        (the same training the final student would run; nothing is trained twice)."""
        source = self.sibling(winner, self.seeds()[0]).directory / self.method.name
        target = self.experiment.directory / self.method.name
        self.experiment.trained_here.add(target)
        if is_main_process():
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted(source.iterdir()):
                if path.is_file() and (path.name.startswith("epoch-") or path.name in ("latest.json", "log.jsonl",
                                                                                      "precision.json")):
                    atomic_link(path, target / path.name)
        barrier()


def decide(finalists: dict[str, list[dict[str, float]]], baseline: list[dict[str, float]], *,
           preference: dict[str, float], score: str = SCORE) -> dict[str, Any]:
    """The choice among ``finalists`` (validation scores per seed, paired with ``baseline``'s by position):

    a finalist qualifies when its mean gain over the baseline (lower ``score`` is better) is positive and larger
    than the gain's standard deviation over the seeds; the qualifying one of lowest mean score is chosen, a tie
    within the spread of the paired differences going to the lowest ``preference``. None qualifying: the baseline.

    Example:
        >>> base = [{"s": 1.0}, {"s": 1.1}]
        >>> decide({"x": [{"s": 0.8}, {"s": 0.9}]}, base, preference={"x": 0.0}, score="s")["chosen"]
        'x'
        >>> decide({"x": [{"s": 0.8}, {"s": 1.3}]}, base, preference={"x": 0.0}, score="s")["distillation_helps"]
        False
    """
    base = [row[score] for row in baseline]
    cells = {}
    for label, rows in finalists.items():
        values = [row[score] for row in rows]
        gains = [b - v for b, v in zip(base, values)]
        gain = statistics.fmean(gains)
        spread = _std(gains) if math.isfinite(gain) else math.inf
        cells[label] = {"scores": values, "score": statistics.fmean(values), "gain": gain, "gain_std": spread,
                        "qualifies": gain > 0 and gain > spread, **_means(rows)}
    summary = {"baseline_scores": base, "baseline_score": statistics.fmean(base), **_means(baseline, "baseline_"),
               "cells": cells}
    qualifying = [label for label, cell in cells.items() if cell["qualifies"]]
    if not qualifying:
        return {"distillation_helps": False, "chosen": None, **summary}
    best = min(qualifying, key=lambda label: cells[label]["score"])
    ties = []
    for label in qualifying:
        behind = [c - b for c, b in zip(cells[label]["scores"], cells[best]["scores"])]
        if statistics.fmean(behind) <= _std(behind):
            ties.append(label)
    chosen = min(ties, key=lambda label: (preference.get(label, math.inf), cells[label]["score"]))
    return {"distillation_helps": True, "chosen": chosen, "ties": ties, **summary}


def _means(rows: list[dict[str, float]], prefix: str = "") -> dict[str, float]:
    """The mean validation accuracy and NLLs of the seeds."""
    keys = ("val_z", "val_z_nll", SCORE)
    return {f"{prefix}{key}": statistics.fmean(row[key] for row in rows) for key in keys if all(key in r for r in rows)}


def _variants(experiment: Experiment, term: TermSpec) -> list[TermSpec]:
    """Every value of ``term`` the search tries: the product of its entry's search dimensions (a dimension's
    value sets one parameter, or several when it is a dict), less what the run fixed.

    Raises:
        CqdkitError: the search leaves the term's weight or temperature unset.
    """
    fixed = set(term.given)
    if term.weight is not None:
        fixed.add(LAMBDA)
    if not term.tempered or term.temperature is not None:
        fixed.add(TEMPERATURE)
    dimensions = []
    for name, values in search_space(experiment.manager.loss(term.name)).items():
        options = []
        for value in values:
            option = {key: item for key, item in (value if isinstance(value, dict) else {name: value}).items()
                      if key not in fixed}
            if option not in options:
                options.append(option)
        dimensions.append(options)
    variants = []
    for combination in itertools.product(*dimensions):
        values = {key: value for option in combination for key, value in option.items()}
        weight = values.pop(LAMBDA, term.weight)
        variant = dataclasses.replace(term, params={**term.params, **values}, weight=weight,
                                      given=term.given | set(values))
        if not variant.complete():
            missing = "a lambda" if variant.weight is None else "a temperature"
            raise CqdkitError(f"--lambda/--temperature auto: loss {term.name!r} declares no {missing} to search; "
                              "give it (--lambda, --temperature, or in the spec)")
        if variant not in variants:
            variants.append(variant)
    return variants


def _distance(experiment: Experiment, terms: list[TermSpec]) -> float:
    """How far the terms' values are from the paper's (log scale): ties go to its T = 10 and lambda."""
    from .config import PAPER_STRENGTH

    paper = PAPER_STRENGTH.get(experiment.config.dataset, PAPER_STRENGTH["cub"])
    distance = 0.0
    for term in terms:
        if term.temperature:
            distance += abs(math.log(term.temperature / paper["temperature"]))
        if term.weight and term.name == "softce":
            distance += abs(math.log(term.weight / paper["lam"]))
    return distance


def _identity(experiment: Experiment, method: Method, plan: SearchPlan) -> dict[str, Any]:
    """What a search's outcome depends on: a record made under other settings is searched again (and its
    candidates train in another folder)."""
    cfg = experiment.config
    return {"loss": cfg.loss, "lam": cfg.lam, "temperature": cfg.temperature, "method": method.name,
            "plan": dataclasses.asdict(plan), **_baseline_identity(experiment)}


def _baseline_identity(experiment: Experiment) -> dict[str, Any]:
    """What the students' trainings depend on besides their loss: the data (the teacher's key hashes the split
    and x), z, the student, its optimisation, and the unlabelled pairs."""
    cfg = experiment.config
    return {"degrade": cfg.degrade, "teacher_key": experiment.teacher_key(), "student": cfg.student,
            "student_seed": cfg.student_seed, "epochs": cfg.epochs, "lr": [cfg.lr, cfg.lr_end],
            "batch_size": cfg.batch_size, "weight_decay": cfg.weight_decay, "momentum": cfg.momentum,
            "clip_grad_norm": cfg.clip_grad_norm, "initial_weights": experiment.initial_weights["student"],
            "unlabeled": experiment.x_pipeline(experiment.distill_set)["train_ids"]}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("version") == VERSION else None


def _term_record(term: TermSpec) -> dict[str, Any]:
    return {"name": term.name, "params": term.params, "lambda": term.weight, "logit": term.logit,
            "spec": term.text(), "given": sorted(term.given)}


def _term_from_record(row: dict[str, Any]) -> TermSpec:
    return TermSpec(row["name"], dict(row["params"]), row["lambda"], logit=row["logit"], given=frozenset(row["given"]))


def _stage_line(method: Method, degradation: str, term: TermSpec, stage: dict[str, Any]) -> str:
    """One line saying what the search chose for a term and why."""
    base = f"NLL {stage['baseline_score']:.3f}" + (f", accuracy {100 * stage['baseline_val_z']:.0f}%"
                                                   if "baseline_val_z" in stage else "")
    if "first_round_best" in stage:
        best = stage["first_round_best"]
        return (f"{method.title} on {degradation}, {term.name}: no candidate beats lambda = 0 on validation (best "
                f"{best['loss']}: NLL {best['score']:.3f}; lambda = 0: {base}); {term.name} is left out")
    if not stage["distillation_helps"]:
        best = min(stage["cells"].items(), key=lambda item: item[1]["score"])
        return (f"{method.title} on {degradation}, {term.name}: no strength beats lambda = 0 on validation beyond the "
                f"seeds' spread (best {best[0]}: NLL {best[1]['score']:.3f}, gain {best[1]['gain']:+.3f} ± "
                f"{best[1]['gain_std']:.3f}; lambda = 0: {base}); {term.name} is left out")
    cell = stage["cells"][stage["chosen"]]
    accuracy = f", accuracy {100 * cell['val_z']:.0f}%" if "val_z" in cell else ""
    return (f"{method.title} on {degradation}: chosen {stage['chosen']} on validation: NLL {cell['score']:.3f}"
            f"{accuracy} against {stage['baseline']} {base} (gain {cell['gain']:+.3f} ± {cell['gain_std']:.3f} over "
            f"{len(cell['scores'])} student seeds)")


def _folder_name(label: str) -> str:
    """A candidate's folder: its loss, readable and cut to 80 characters, and a digest of the whole."""
    readable = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in label)[:80]
    return f"{readable}-{_digest(label)}"


def _digest(value: Any) -> str:
    """A short hash of a JSON-able value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0
