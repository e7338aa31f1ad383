"""``cqdkit run``: train the teacher A and one student method, evaluate both, write ``results.json``.

A run is a directory::

    config.json      everything needed to reproduce it (settings, degradation pipeline, dataset, versions)
    a/               the teacher: checkpoints, log.jsonl, model.safetensors (+ .json), cached teacher logits
    <method>/        the student, likewise
    results.json     {"models": {"a": {"test_x": ..., "test_z": ...}, "<method>": {...}}, ...}
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import CqdkitError
from ..files import atomic_write_json
from ..reporting import Reporter
from .config import RunConfig
from .distributed import setup, world


def default_run_directory(config: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    degrade = config.degrade.replace(":", "_").replace(",", "_").replace("=", "").replace("+", "-")
    return Path("runs") / f"{stamp}-{degrade}-{config.teacher}-{config.student}"


def prepare_directory(directory: Path, config: RunConfig, *, resume: bool) -> RunConfig:
    """Check ``directory`` for an earlier run; with ``resume`` return its saved settings."""
    saved = directory / "config.json"
    if saved.exists():
        if not resume:
            raise CqdkitError(f"{directory} already holds a run; pass --resume to continue it or choose another --out")
        return RunConfig.load(saved)
    if resume:
        raise CqdkitError(f"--resume: no run to continue in {directory} (no config.json)")
    return config


def run(config: RunConfig, *, resume: bool = False, reporter: Reporter | None = None) -> dict[str, Any]:
    """Train and evaluate the teacher, the student and (with ``config.baseline``) B; returns the results dict.

    ``results["gain"]`` is the student's test accuracy on z minus B's: what distillation (and starting from
    A) gave over training on z alone.
    """
    from .experiment import Experiment

    directory = Path(config.out) if config.out else default_run_directory(config.resolved())
    config = prepare_directory(directory, config, resume=resume)
    config.out = str(directory)
    began = time.perf_counter()
    with setup(config.device) as device:
        config.device = device
        experiment = Experiment(config, directory, resume=resume, reporter=reporter)
        rank = world()[0]
        if rank == 0:
            directory.mkdir(parents=True, exist_ok=True)
            experiment.write_config()
        method = experiment.method
        names = ["a", method.name]
        if experiment.config.baseline and method.view == "z" and method.name != "b":
            names.append("b")
        models = {}
        for name in dict.fromkeys(names):
            trained = experiment.train_or_load(name)
            if rank == 0:
                models[name] = experiment.evaluate(name)
                models[name]["images_per_second"] = trained.fit.images_per_second
                if trained.method.distill:
                    models[name]["distill_gradient_ratio"] = trained.fit.history[-1].get("distill_gradient_ratio")
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
        }
        if "b" in models and method.name != "b":
            results["baseline"] = "b"
            results["gain"] = models[method.name]["test_z"] - models["b"]["test_z"]
        if rank == 0:
            atomic_write_json(directory / "results.json", results)
    return results
