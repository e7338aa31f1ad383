"""What a sweep has finished: one JSON file per training, written atomically the moment it finishes.

A sweep run again (after a kill, a crash, or to add seeds) reads them and trains only what is missing.
A record is named by the training's :attr:`~cqdkit.sweep.Training.key`, so a training whose settings changed
has no record and runs again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..files import atomic_write_json
from .training import Training

#: The record's format; a record of another version is not trusted (its training runs again).
VERSION = 1


class Records:
    """The finished trainings of one sweep, in ``folder`` (the sweep's ``<out>/trainings``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, training: Training) -> Path:
        return self.folder / f"{training.key}.json"

    def get(self, training: Training) -> dict[str, Any] | None:
        """The scores ``training`` returned when it finished, or None (never finished, or an unreadable record)."""
        try:
            record = json.loads(self.path(training).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("version") != VERSION or record.get("key") != training.key:
            return None
        return record.get("scores")

    def put(self, training: Training, scores: dict[str, Any], seconds: float) -> None:
        """Record that ``training`` finished with ``scores`` after ``seconds``."""
        atomic_write_json(self.path(training), {
            "version": VERSION, "key": training.key, "name": training.name, "task": training.task,
            "arguments": training.arguments, "scores": scores, "seconds": seconds,
        })
