"""One training of a sweep: the function that trains (or loads) a model and scores it, its arguments, and the
trainings whose models it reads.

A sweep (``table``, ``tune``, ``compare``) is a list of :class:`Training` in an order where every training comes
after the ones it waits for. Each is independent of where it runs: its function is importable by name (a
worker process or a Ray node imports it), its arguments are JSON values, and every model it trains takes its
random streams from its own seeds, so it gives the same scores in any process (see :mod:`cqdkit.sweep.run`).

Example:
    >>> from cqdkit.sweep import Training
    >>> teacher = Training("seed-0/A", "cqdkit.train.tune:train_teacher", {"config": {}, "directory": "out"})
    >>> student = Training("seed-0/B", "cqdkit.train.tune:score", {"config": {}, "directory": "out"},
    ...                    after=("seed-0/A",))
    >>> student.key != teacher.key
    True
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..data.cache import digest
from ..errors import CqdkitError


@dataclass(frozen=True)
class Training:
    """One training of a sweep.

    Args:
        name: how progress lines and errors name it (``tps/seed-0/T2-lambda5 cqd``); unique in its sweep.
        task: ``"module:function"``; called as ``function(**arguments, reporter=reporter)``, it trains or loads
            and returns the scores (a dict of JSON values).
        arguments: JSON values only (configs as dicts, paths as strings): they name the training in its
            record (:attr:`key`), so a changed setting is a new training.
        after: the names of the trainings that must have finished first (a student waits for its teacher).
        log: the file its output goes to when it runs outside the main process.
    """

    name: str
    task: str
    arguments: dict[str, Any]
    after: tuple[str, ...] = ()
    log: str | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """A stable key for what this training computes: its task and arguments (not its name or log)."""
        return digest(self.task, json.dumps(self.arguments, sort_keys=True, default=str))

    def function(self) -> Callable[..., dict[str, Any]]:
        """The task's function, imported by name."""
        module, _, name = self.task.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as error:
            raise CqdkitError(f"training {self.name}: cannot import its task {self.task!r} ({error})") from None


def check_order(trainings: list[Training]) -> None:
    """Raise unless names are unique and every training comes after the ones it waits for."""
    seen: set[str] = set()
    for training in trainings:
        if training.name in seen:
            raise CqdkitError(f"two trainings of the sweep are named {training.name!r}")
        missing = [name for name in training.after if name not in seen]
        if missing:
            raise CqdkitError(f"training {training.name} waits for {', '.join(missing)}, which is not before it "
                              "in the sweep")
        seen.add(training.name)
