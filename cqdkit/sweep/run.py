"""Run a sweep's trainings on an executor, in dependency order, recording each as it finishes.

``run_sweep`` is what ``table``, ``tune`` and ``compare`` call. It

* skips every training already recorded in ``<out>/trainings`` (a rerun after a kill trains only what is
  missing, and says how many were done);
* starts each other training as soon as the ones it waits for have finished, as many at once as the executor
  has slots (``--jobs N`` worker processes here, or a Ray cluster's CPUs and GPUs);
* retries a training whose process died once, and then stops the sweep naming it and its log; a training
  that raised stops the sweep at once (the same error would come again);
* reports one line per finished training (its name, seconds and validation score) with the estimated time
  left, and on a terminal a bar naming the trainings that run.

Results do not depend on the executor: each training computes with the same number of CPU threads
(``threads``, 1 by default on the CPU, whatever the number of jobs) and draws its random numbers from its own
seeds, so ``--jobs 1``, ``--jobs 4`` and ``--engine ray`` give bit-identical scores on the CPU.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import CqdkitError
from ..reporting import Reporter
from .records import Records
from .training import Training, check_order
from .workers import Executor, Finished, InProcess, LocalProcesses, RayTasks

ENGINES = ("local", "ray")


def default_threads(jobs: int, gpus: int) -> int:
    """CPU threads per training: 1 where the trainings run on the CPU (so that any executor and any ``--jobs``
    give the same bits, and ``--jobs`` uses the cores), the machine's cores shared by the jobs where GPUs train."""
    return max(1, (os.cpu_count() or 1) // jobs) if gpus else 1


@dataclass(frozen=True)
class SweepSettings:
    """How a sweep runs (never what it computes): ``jobs`` worker processes here, or ``engine="ray"`` on the Ray
    cluster at ``address``; ``threads`` CPU threads per training (None: :func:`default_threads`)."""

    jobs: int = 1
    engine: str = "local"
    threads: int | None = None
    address: str | None = None

    def check(self) -> None:
        if self.jobs < 1:
            raise CqdkitError(f"--jobs must be at least 1, got {self.jobs}")
        if self.engine not in ENGINES:
            raise CqdkitError(f"--engine {self.engine!r}; expected one of {', '.join(ENGINES)}")
        if self.threads is not None and self.threads < 1:
            raise CqdkitError(f"--threads must be at least 1, got {self.threads}")


def run_sweep(trainings: list[Training], out: Path, settings: SweepSettings = SweepSettings(),
              reporter: Reporter | None = None) -> dict[str, dict[str, Any]]:
    """Run ``trainings`` (each after those it waits for) and return every training's scores by name.

    Raises:
        CqdkitError: a training failed (its error and log named), or its process died twice.
    """
    reporter = reporter if reporter is not None else Reporter.silent()
    check_order(trainings)
    settings.check()
    jobs, engine, address = settings.jobs, settings.engine, settings.address
    gpus = _gpus()
    threads = default_threads(jobs, gpus) if settings.threads is None else settings.threads
    out = Path(out)
    records = Records(out / "trainings")
    trainings = [_with_log(training, out) for training in trainings]
    scores: dict[str, dict[str, Any]] = {}
    for training in trainings:
        recorded = records.get(training)
        if recorded is not None:
            scores[training.name] = recorded
    todo = [training for training in trainings if training.name not in scores]
    if scores:
        reporter.message(f"{len(scores)} of {len(trainings)} trainings already done (recorded in {records.folder}); "
                         f"{len(todo)} to train")
    if not todo:
        return scores
    executor = _executor(engine, jobs, threads, gpus, address, out, reporter)
    try:
        _schedule(todo, executor, records, scores, reporter, total=len(trainings))
    finally:
        executor.close()
    return scores


def _executor(engine: str, jobs: int, threads: int, gpus: int, address: str | None, out: Path,
              reporter: Reporter) -> Executor:
    if engine == "ray":
        executor: Executor = RayTasks(threads, gpus=gpus, address=address)
        reporter.message(f"Ray: up to {executor.slots} trainings at once, {threads} CPU thread(s)"
                         f"{' and 1 GPU' if gpus else ''} each")
        return executor
    if jobs == 1:
        return InProcess(threads, reporter)
    reporter.message(f"{jobs} worker processes, {threads} CPU thread(s) each"
                     + (f", one of {gpus} GPU(s) each" if gpus else "")
                     + "; each training's output goes to its log in <out>/trainings/logs")
    return LocalProcesses(jobs, threads, out / "trainings" / "running", gpus)


def _schedule(todo: list[Training], executor: Executor, records: Records, scores: dict[str, dict[str, Any]],
              reporter: Reporter, *, total: int) -> None:
    waiting = list(todo)
    attempts: dict[str, int] = {}
    durations: list[float] = []
    began = time.perf_counter()
    with _progress(reporter, len(todo), shown=not isinstance(executor, InProcess)) as show:
        while waiting or executor.running():
            for training in list(waiting):
                if len(executor.running()) >= executor.slots:
                    break
                if all(name in scores for name in training.after):
                    waiting.remove(training)
                    attempts[training.name] = attempts.get(training.name, 0) + 1
                    executor.submit(training)
            show([t.name for t in executor.running()])
            if not executor.running():
                blocked = ", ".join(t.name for t in waiting[:3])
                raise CqdkitError(f"the sweep cannot go on: {blocked} wait for trainings that did not finish")
            for finished in executor.wait():
                _settle(finished, attempts, waiting, records, scores, reporter)
                if finished.scores is not None:
                    durations.append(finished.seconds)
                    left = len(waiting) + len(executor.running())
                    eta = _eta(durations, left, executor.slots, time.perf_counter() - began)
                    reporter.message(f"[{len(scores)}/{total}] {finished.training.name}: {finished.seconds:.0f} s"
                                     f"{_summary(finished.scores)}{eta}")
                    show(None, advance=1)


def _settle(finished: Finished, attempts: dict[str, int], waiting: list[Training], records: Records,
            scores: dict[str, dict[str, Any]], reporter: Reporter) -> None:
    training = finished.training
    if finished.scores is not None:
        records.put(training, finished.scores, finished.seconds)
        scores[training.name] = finished.scores
        return
    where = f"; its log: {training.log}" if training.log else ""
    if finished.died and attempts[training.name] < 2:
        reporter.message(f"{training.name}: {finished.error}; trying it once more (it continues from its last "
                         "checkpoint)")
        waiting.insert(0, training)
        return
    if finished.died:
        raise CqdkitError(f"training {training.name} failed twice: {finished.error}{where}")
    raise CqdkitError(f"training {training.name} failed: {finished.error}{where}")


def _summary(scores: dict[str, Any]) -> str:
    """The score of a training's line: its accuracy on z (and x) on the validation split, else the test split."""
    for split, words in (("val", "validation"), ("test", "test")):
        parts = [f"{view} {100 * scores[f'{split}_{view}']:.1f}%" for view in ("z", "x")
                 if isinstance(scores.get(f"{split}_{view}"), float) and math.isfinite(scores[f"{split}_{view}"])]
        if parts:
            return f", {words} accuracy {', '.join(parts)}"
    return ""


def _eta(durations: list[float], left: int, slots: int, elapsed: float) -> str:
    if not left:
        return ""
    per_slot = sum(durations) / len(durations) / slots
    return f"; about {_minutes(per_slot * left)} left ({_minutes(elapsed)} so far)"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


@contextmanager
def _progress(reporter: Reporter, total: int, *, shown: bool) -> Iterator[Callable[..., None]]:
    """``show(running_names, advance=0)``: a bar of finished trainings naming the running ones, on a terminal
    (not ``shown`` when the trainings run here and show their own bars)."""
    if not (shown and reporter.shows_bars):
        yield lambda running, advance=0: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=reporter.console, transient=True) as bar:
        task = bar.add_task("sweep", total=total)

        def show(running: list[str] | None, advance: int = 0) -> None:
            if running is not None:
                bar.update(task, description=f"sweep (running: {', '.join(running) or 'none'})")
            if advance:
                bar.advance(task, advance)

        yield show


def _with_log(training: Training, out: Path) -> Training:
    if training.log:
        return training
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", training.name).strip("_") or "training"
    return Training(training.name, training.task, training.arguments, training.after,
                    log=str(out / "trainings" / "logs" / f"{name}.log"))


def _gpus() -> int:
    """CUDA GPUs on this machine (0 without torch's CUDA), counted without starting CUDA here."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
