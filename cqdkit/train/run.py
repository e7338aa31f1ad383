"""``cqdkit run``: train the teacher A and one student method, evaluate both, write ``results.json``.

A run is a directory::

    config.json      everything needed to reproduce it (settings, degradation pipeline, dataset, versions)
    a/               the teacher: checkpoints, log.jsonl, model.safetensors (+ .json), cached teacher logits
    <method>/        the student, likewise
    results.json     {"models": {"a": {"test_x": ..., "test_z": ...}, "<method>": {...}}, ...}
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import CqdkitError
from ..files import atomic_write_json
from ..lock import folder_lock
from ..reporting import Reporter, reporting_into
from .config import RunConfig
from .distributed import setup, world


def default_run_directory(config: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    degrade = config.degrade.replace(":", "_").replace(",", "_").replace("=", "").replace("+", "-")
    return Path("runs") / f"{stamp}-{degrade}-{config.teacher}-{config.student}"


#: What ``--resume`` may change: where and how to compute, what the NaN message advises to lower, and the
#: budget (a started run keeps its input size).
RESUME_CHANGEABLE = frozenset({"device", "workers", "amp", "compile", "lr", "lr_end", "lam", "budget"})
#: Those of them that change the models still to be trained (recorded as ``changed_on_resume`` in config.json).
CHANGES_WHAT_TRAINS = frozenset({"amp", "lr", "lr_end", "lam"})


def prepare_directory(directory: Path, config: RunConfig, *, resume: bool,
                      changes: dict[str, Any] | None = None) -> RunConfig:
    """Check ``directory`` for an earlier run and return the settings to run with.

    A folder whose run failed before any model was checkpointed may be reused. With ``resume`` the saved
    settings are continued; ``changes`` (the options given again on the command line) must equal them,
    except for those in :data:`RESUME_CHANGEABLE`, which apply from now on.

    Raises:
        CqdkitError: the folder holds a started run and ``resume`` is off; ``resume`` without a saved
            run; or ``changes`` that differ from the saved run (named by their command-line options).
    """
    saved = directory / "config.json"
    if not saved.exists() and (has_started(directory) or (directory / "results.json").exists()):
        raise CqdkitError(f"{directory} holds a run's models or results but no config.json, so cqdkit cannot tell "
                          "what they were trained with and does not replace them: choose another --out")
    if not resume:
        if saved.exists() and has_started(directory):
            raise CqdkitError(f"{directory} already holds a run; pass --resume to continue it or choose another --out")
        return config
    if not saved.exists():
        raise CqdkitError(f"--resume: no run to continue in {directory} (no config.json)")
    previous = RunConfig.load(saved)
    differing = {name: value for name, value in (changes or {}).items()
                 if name not in RESUME_CHANGEABLE and getattr(previous, name) != value}
    if differing:
        shown = ", ".join(f"{RunConfig.option_name(name)} {value!r} (the run has {getattr(previous, name)!r})"
                          for name, value in sorted(differing.items()))
        raise CqdkitError(f"--resume continues the run in {directory} with its settings; these options differ: "
                          f"{shown}. Drop them, or start a new run in another --out")
    allowed = {name: value for name, value in (changes or {}).items() if name in RESUME_CHANGEABLE}
    if previous.lam == "auto" and allowed.get("lam", "auto") != "auto":
        raise CqdkitError(f"--resume: the run in {directory} chose its distillation strength on validation (--lambda "
                          f"auto), and its student was chosen with it; --lambda {allowed['lam']} would describe another "
                          "student. Drop --lambda, or start a new run in another --out")
    retraining = sorted(name for name, value in allowed.items()
                        if name in CHANGES_WHAT_TRAINS and getattr(previous, name) != value)
    if retraining and (directory / "results.json").exists():
        shown = ", ".join(f"{RunConfig.option_name(name)} {allowed[name]!r}" for name in retraining)
        raise CqdkitError(f"--resume: the run in {directory} has finished, so {shown} would train nothing and only "
                          "describe its models wrongly. Start a new run in another --out")
    return dataclasses.replace(previous, **allowed)


def changes_on_resume(directory: Path, config: RunConfig) -> list[dict[str, Any]]:
    """The run's record of the settings changed on resume, with this resume's changes (:data:`CHANGES_WHAT_TRAINS`)
    added: each names the option, both values and the models that had finished with the old value."""
    saved = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    previous = RunConfig.load(directory / "config.json")
    history = list(saved.get("changed_on_resume", []))
    finished = sorted(path.parent.name for path in directory.glob("*/model.safetensors"))
    for name in sorted(CHANGES_WHAT_TRAINS):
        if getattr(previous, name) != getattr(config, name):
            history.append({"option": RunConfig.option_name(name), "was": getattr(previous, name),
                            "now": getattr(config, name), "finished_before": finished})
    return history


def has_started(directory: Path) -> bool:
    """Whether any model of the run in ``directory`` has a checkpoint (or has finished)."""
    return any(Path(directory).glob("*/latest.json")) or any(Path(directory).glob("*/model.safetensors"))


def run(config: RunConfig, *, resume: bool = False, changes: dict[str, Any] | None = None,
        reporter: Reporter | None = None) -> dict[str, Any]:
    """Train and evaluate the teacher, the student and (with ``config.baseline``) B; returns the results dict.

    ``results["gain"]`` is the student's test accuracy on z minus B's: what distillation (and starting from
    A) gave over training on z alone. With ``resume``, the saved run continues (see
    :func:`prepare_directory` for ``changes``). The folder is locked for the whole run (:mod:`cqdkit.lock`).
    """
    reporter = reporter or Reporter.silent()
    config.resolved()  # every setting checked before anything is written
    directory = Path(config.out) if config.out else default_run_directory(config.resolved())
    with folder_lock(directory, what="run folder"):
        reporter.message(f"run folder: {directory}")
        config = prepare_directory(directory, config, resume=resume, changes=changes)
        changed = changes_on_resume(directory, config) if resume else []
        with reporting_into(reporter, directory, tensorboard=config.tensorboard) as reporter:
            return _run(config, directory, resume=resume, changed=changed, reporter=reporter)


def _run(config: RunConfig, directory: Path, *, resume: bool, changed: list[dict[str, Any]],
         reporter: Reporter) -> dict[str, Any]:
    from .experiment import Experiment
    from .probe import estimate_training

    config = dataclasses.replace(config, out=str(directory))
    began = time.perf_counter()
    with setup(config.device) as device:
        config.device = device
        experiment = Experiment(config, directory, resume=resume, reporter=reporter)
        experiment.changed_on_resume = changed
        experiment.settings_may_differ = bool(changed)
        rank, processes = world()
        method = experiment.method
        names = ["a", method.name]
        if experiment.config.baseline and method.view == "z" and method.name != "b":
            names.append("b")
        if rank == 0:
            _announce_weights(experiment, reporter)
        if processes == 1:  # every process of a distributed run must train at the same size
            experiment, estimate = fit_budget(config, experiment, names, reporter)
        else:
            estimate = estimate_training(experiment, names) if rank == 0 else {}
        if rank == 0:
            _announce_estimate(experiment, estimate, reporter)
            directory.mkdir(parents=True, exist_ok=True)
            experiment.write_config()
        models = {}
        for name in dict.fromkeys(names):
            trained = experiment.train_or_load(name)
            if rank == 0:
                models[name] = experiment.evaluate(name)
                models[name]["images_per_second"] = trained.fit.images_per_second
                if trained.method.distill:
                    models[name]["distill_gradient_ratio"] = trained.fit.history[-1].get("distill_gradient_ratio")
                reporter.result(trained.method.title, models[name])
        results = {
            "models": models,
            "method": method.name,
            "teacher": experiment.config.teacher,
            "student": experiment.config.student,
            "degrade": experiment.config.degrade,
            "dataset": experiment.config.dataset,
            "out": str(directory),
            "distillation": experiment.distillation(),
            "wall_seconds": time.perf_counter() - began,
            **({"changed_on_resume": changed} if changed else {}),
        }
        if "b" in models and method.name != "b":
            results["baseline"] = "b"
            results["gain"] = models[method.name]["test_z"] - models["b"]["test_z"]
        if rank == 0:
            experiment.write_config()  # again: with the strength the search chose
            atomic_write_json(directory / "results.json", results)
    return results


def _announce_weights(experiment: Any, reporter: Reporter) -> None:
    """Say, before anything trains, where each network starts from."""
    cfg = experiment.config
    for role, source in experiment.initial_weights.items():
        architecture = cfg.teacher if role == "teacher" else cfg.student
        if source["source"] == "seeded random init":
            reporter.message(f"{role} {architecture}: no pretrained weights, trained from scratch (seeded "
                             "random init; --pretrained starts from ImageNet weights)")
        else:
            where = source.get("repository") or source.get("path") or source["source"]
            reporter.message(f"{role} {architecture}: starts from {source['source']} weights ({where})")


#: The input sizes ``cqdkit run`` tries, as fractions of the profile's, when training would overrun its budget.
BUDGET_FRACTIONS = (0.75, 0.5)


def fit_budget(config: RunConfig, experiment: Any, names: list[str],
               reporter: Reporter) -> tuple[Any, dict[str, Any]]:
    """The experiment at the largest input size whose estimated training time fits ``--budget``, and that
    estimate (:func:`cqdkit.train.probe.estimate_training`).

    Only when the input size is the profile's (``config.image_size`` not given) and there is a budget: an
    explicit ``--image-size`` is always kept. Smaller sizes are :data:`BUDGET_FRACTIONS` of the profile's
    (64 -> 48 -> 32 px), probed in turn until one fits. A probe over the budget is repeated and the faster of
    the two kept, so another process on the cores during one probe does not shrink the input alone. When no
    size fits, the one with the smallest estimate is used (never one slower than another probed) and the run
    says so.
    """
    from .experiment import Experiment

    estimate = _probe(experiment, names, None)
    cfg = experiment.config
    if config.image_size is not None or cfg.budget is None:
        return experiment, estimate
    budget, profile_size = 60 * cfg.budget, cfg.image_size
    if estimate["seconds"] > budget:
        estimate = _probe(experiment, names, estimate)
    probed = [(experiment, estimate)]
    for fraction in BUDGET_FRACTIONS:
        if estimate["seconds"] <= budget:
            break
        size = max(8, int(profile_size * fraction) // 8 * 8)
        reporter.message(f"at {cfg.image_size} px training would take about {_duration(estimate['seconds'])}, "
                         f"over the {cfg.budget:g}-minute budget (--budget); probing {size} px")
        experiment = Experiment(dataclasses.replace(config, image_size=size), experiment.directory,
                                resume=experiment.resume, reporter=experiment.reporter, manager=experiment.manager)
        cfg = experiment.config
        estimate = _probe(experiment, names, None)
        if estimate["seconds"] > budget:
            estimate = _probe(experiment, names, estimate)
        probed.append((experiment, estimate))
    if estimate["seconds"] > budget:  # nothing fits: the fastest of the sizes probed
        experiment, estimate = min(probed, key=lambda pair: pair[1]["seconds"])
        cfg = experiment.config
    if cfg.image_size != profile_size:
        sizes = ", ".join(f"{e.config.image_size} px {_duration(seconds['seconds'])}" for e, seconds in probed)
        over = "" if estimate["seconds"] <= budget else (
            f", the fastest of the sizes probed ({sizes}), still over the budget (fewer --epochs shortens it)")
        reporter.message(f"input size {cfg.image_size} px instead of the profile's {profile_size}{over}; "
                         f"--image-size {profile_size} keeps it")
    elif estimate["seconds"] > budget:
        reporter.message(f"at {profile_size} px training would take about {_duration(estimate['seconds'])}, over the "
                         f"{cfg.budget:g}-minute budget, and no smaller input size probed faster; fewer --epochs "
                         "shortens it")
    return experiment, estimate


def _probe(experiment: Any, names: list[str], previous: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`~cqdkit.train.probe.estimate_training`, or with ``previous`` a second probe and the faster of the two
    (a probe can only be slowed down by other work on the machine, never sped up)."""
    from . import probe

    estimate = probe.estimate_training(experiment, names)
    return estimate if previous is None or estimate["seconds"] < previous["seconds"] else previous


def _announce_estimate(experiment: Any, estimate: dict[str, Any], reporter: Reporter) -> None:
    """Say how long training should take, from the throughput probe."""
    from .methods import get_method

    if estimate.get("models"):
        speeds = ", ".join(f"{get_method(n).title} {s:.0f} images/s" for n, s in estimate["models"].items())
        search = (f"; choosing the distillation strength on validation trains up to {estimate['searched']} more "
                  "students" if estimate.get("searched") else "")
        reporter.message(f"estimated training time: about {_duration(estimate['seconds'])} ({speeds}, "
                         f"{experiment.config.epochs} epochs of {len(experiment.train_set)} images{search})")
        reporter.event("estimate", **estimate)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
