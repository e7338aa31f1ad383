"""Where a sweep's trainings run: here in the main process, in worker processes on this machine, or as Ray tasks.

Every executor runs a training the same way (:func:`execute`): with the sweep's fixed number of CPU threads,
its output in its log file (except in the main process, which reports to the user's console), and
the scores its function returns. Executors differ only in where that happens and how many run at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import CqdkitError
from ..files import atomic_write_json, atomic_write_text, open_log, remove_ours
from ..reporting import Reporter
from .training import Training


@dataclass
class Finished:
    """A training that stopped: its scores, or why it failed (``died``: the process ended without a word)."""

    training: Training
    scores: dict[str, Any] | None = None
    error: str | None = None
    died: bool = False
    seconds: float = 0.0


class Executor(Protocol):
    """Runs trainings, at most :attr:`slots` at once."""

    slots: int

    def submit(self, training: Training) -> None: ...

    def wait(self) -> list[Finished]:
        """Block until at least one submitted training stops; return those that did."""
        ...

    def running(self) -> list[Training]: ...

    def close(self) -> None:
        """Stop whatever still runs (its checkpoints let a later sweep continue it)."""
        ...


def execute(training: Training, threads: int, reporter: Reporter | None = None) -> dict[str, Any]:
    """Run ``training`` here with ``threads`` CPU threads (torch's and OpenCV's, restored afterwards), reporting to
    ``reporter`` (None: its log file)."""
    with _threads(threads):
        if reporter is not None:
            return training.function()(**training.arguments, reporter=reporter)
        with open_log(training.log or os.devnull) as handle:
            from rich.console import Console

            handle.write(f"--- {training.name} ({time.strftime('%Y-%m-%d %H:%M:%S')})\n")
            handle.flush()
            return training.function()(**training.arguments, reporter=Reporter(Console(file=handle, width=120)))


@contextmanager
def _threads(threads: int) -> Iterator[None]:
    """torch and OpenCV compute with ``threads`` threads inside the block. (Worker processes also start with
    ``OMP_NUM_THREADS`` and the BLAS variables set to it: two jobs on two cores must not run four threads.)"""
    import cv2
    import torch

    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


#: The environment variables that size the thread pools of OpenMP and the BLAS libraries, set for each worker.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class InProcess:
    """One training at a time in this process, reporting to the user's console (``--jobs 1``)."""

    slots = 1

    def __init__(self, threads: int, reporter: Reporter) -> None:
        self.threads, self.reporter = threads, reporter
        self.queue: list[Training] = []

    def submit(self, training: Training) -> None:
        self.queue.append(training)

    def running(self) -> list[Training]:
        return list(self.queue)

    def wait(self) -> list[Finished]:
        training = self.queue.pop(0)
        began = time.perf_counter()
        where = training.name.rpartition("/")[0]  # its models' lines read seed-0/tps/B, as before sweeps
        scores = execute(training, self.threads, self.reporter.scoped(where) if where else self.reporter)
        return [Finished(training, scores=scores, seconds=time.perf_counter() - began)]

    def close(self) -> None:
        self.queue.clear()


def serve() -> int:
    """A worker process's life (``python -m cqdkit.sweep.worker``): for each training spec path read from stdin,
    run it (:func:`work`), until stdin closes. It ends with the sweep: a worker whose sweep was killed
    (``kill -9``) stops too, so that a rerun never trains beside it."""
    _end_with_parent()
    for line in sys.stdin:
        if line.strip():
            work(Path(line.strip()))
    return 0


def work(spec: Path) -> None:
    """Run the training described in ``spec``; write its scores beside it (``<spec>.scores.json``) or its error
    (``<spec>.error.txt``, the traceback in the training's log)."""
    described = json.loads(spec.read_text())
    training = Training(described["name"], described["task"], described["arguments"], log=described["log"])
    try:
        scores = execute(training, described["threads"])
    except Exception as error:  # noqa: BLE001 (every failure is reported to the sweep, which stops)
        message = str(error) if isinstance(error, CqdkitError) else f"{type(error).__name__}: {error}"
        with open_log(training.log or os.devnull) as handle:
            handle.write(traceback.format_exc())
        atomic_write_text(spec.with_suffix(".error.txt"), message)
        return
    atomic_write_json(spec.with_suffix(".scores.json"), scores)


def _end_with_parent(interval: float = 0.5) -> None:
    """Exit this process as soon as the process that started it is gone (a daemon thread polls its pid)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="cqdkit sweep: end with the sweep", daemon=True).start()


@dataclass
class _Worker:
    process: subprocess.Popen
    slot: int
    training: Training | None = None
    spec: Path | None = None
    began: float = 0.0


class LocalProcesses:
    """Up to ``jobs`` worker processes on this machine (``python -m cqdkit.sweep.worker``), each running one
    training after another, so Python and torch are imported once per worker, not per training; a worker that
    dies is replaced. Each sees one GPU, slot by slot, when there are GPUs. Trainings' output goes to their logs,
    the workers' own to ``worker-<slot>.log`` beside them."""

    def __init__(self, jobs: int, threads: int, folder: Path, gpus: int = 0, poll: float = 0.05) -> None:
        self.slots, self.threads, self.gpus, self.poll = jobs, threads, gpus, poll
        self.folder = Path(folder)
        self.workers: list[_Worker] = []

    def _start(self, slot: int) -> _Worker:
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path),
                           **{variable: str(self.threads) for variable in THREAD_VARIABLES})
        if self.gpus:
            environment["CUDA_VISIBLE_DEVICES"] = str(slot % self.gpus)
        with open_log(self.folder.parent / "logs" / f"worker-{slot}.log") as output:
            process = subprocess.Popen([sys.executable, "-m", "cqdkit.sweep.worker"], stdin=subprocess.PIPE,
                                       stdout=output, stderr=subprocess.STDOUT, env=environment, text=True)
        worker = _Worker(process, slot)
        self.workers.append(worker)
        return worker

    def submit(self, training: Training) -> None:
        idle = [w for w in self.workers if w.training is None]
        if idle:
            worker = idle[0]
        else:
            taken = {w.slot for w in self.workers}
            worker = self._start(next(s for s in range(self.slots) if s not in taken))
        spec = self.folder / f"{training.key}.json"
        for stale in (spec.with_suffix(".scores.json"), spec.with_suffix(".error.txt")):
            remove_ours(stale)
        atomic_write_json(spec, {"name": training.name, "task": training.task, "arguments": training.arguments,
                                 "log": training.log, "threads": self.threads})
        worker.training, worker.spec, worker.began = training, spec, time.perf_counter()
        try:
            worker.process.stdin.write(f"{spec}\n")
            worker.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died while idle: wait() reports the training as died, and it is retried

    def running(self) -> list[Training]:
        return [w.training for w in self.workers if w.training is not None]

    def wait(self) -> list[Finished]:
        while True:
            done = [finished for worker in self.workers if worker.training is not None
                    for finished in [self._finished(worker)] if finished is not None]
            if done:
                return done
            time.sleep(self.poll)

    def _finished(self, worker: _Worker) -> Finished | None:
        """The worker's training, if it stopped (scores, an error, or the worker's death); the worker is free
        again, or gone when it died."""
        assert worker.training is not None and worker.spec is not None
        scores, error = worker.spec.with_suffix(".scores.json"), worker.spec.with_suffix(".error.txt")
        seconds = time.perf_counter() - worker.began
        if scores.exists():
            finished = Finished(worker.training, scores=json.loads(scores.read_text()), seconds=seconds)
        elif error.exists():
            finished = Finished(worker.training, error=error.read_text().strip(), seconds=seconds)
        elif worker.process.poll() is not None:
            finished = Finished(worker.training, died=True, seconds=seconds,
                                error=f"its process ended with exit code {worker.process.returncode}")
            self.workers.remove(worker)
        else:
            return None
        for path in (worker.spec, scores, error):
            remove_ours(path)
        worker.training = worker.spec = None
        return finished

    def close(self) -> None:
        for worker in self.workers:
            worker.process.kill()
            worker.process.wait()
            if worker.process.stdin:
                worker.process.stdin.close()
        self.workers.clear()


class RayTasks:
    """One Ray task per training, with ``threads`` CPUs (and one GPU when ``gpus``) as its resources, so the
    cluster's scheduler places it; a task whose worker dies is retried by Ray once.

    ``address``: a running cluster's (``ray start --head`` prints it), ``"auto"`` for the one this machine is
    part of, or None: the cluster named by ``RAY_ADDRESS``, else a new local one.
    """

    def __init__(self, threads: int, gpus: int = 0, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise CqdkitError("--engine ray needs Ray: pip install 'cqdkit[ray]' (or pip install ray)") from None
        self.ray = ray
        self.started_here = not ray.is_initialized()
        if self.started_here:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        self.threads, self.gpus = threads, gpus
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.slots = max(1, cpus // threads) if not gpus else max(1, int(ray.cluster_resources().get("GPU", 1)))
        self.remote = ray.remote(_ray_work).options(num_cpus=threads, num_gpus=1 if gpus else 0, max_retries=1)
        self.pending: dict[Any, tuple[Training, float]] = {}

    def submit(self, training: Training) -> None:
        self.pending[self.remote.remote(training, self.threads)] = (training, time.perf_counter())

    def running(self) -> list[Training]:
        return [training for training, _ in self.pending.values()]

    def wait(self) -> list[Finished]:
        ready, _ = self.ray.wait(list(self.pending), num_returns=1)
        done = []
        for reference in ready:
            training, began = self.pending.pop(reference)
            seconds = time.perf_counter() - began
            try:
                done.append(Finished(training, scores=self.ray.get(reference), seconds=seconds))
            except self.ray.exceptions.RayTaskError as error:
                cause = error.cause if getattr(error, "cause", None) is not None else error
                done.append(Finished(training, error=str(cause).strip().splitlines()[-1], seconds=seconds))
            except self.ray.exceptions.RayError as error:  # the worker died, and so did its retry
                done.append(Finished(training, died=True, error=f"its Ray worker died twice ({type(error).__name__})",
                                     seconds=seconds))
        return done

    def close(self) -> None:
        for reference in self.pending:
            self.ray.cancel(reference, force=True)
        self.pending.clear()
        if self.started_here:
            self.ray.shutdown()


def _ray_work(training: Training, threads: int) -> dict[str, Any]:
    """A Ray task: the training with its CPU threads (Ray picks the GPU and sets CUDA_VISIBLE_DEVICES)."""
    return execute(training, threads)
