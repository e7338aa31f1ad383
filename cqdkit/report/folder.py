"""Reading what ``cqdkit run`` and ``cqdkit table`` wrote: the folder a report is made of.

A run folder holds ``config.json`` (the settings), ``results.json`` (every model's test accuracy, the gain
over B, the distillation strength) and one sub-folder per model (``a/``, ``b/``, ``<method>/``) with its
``log.jsonl`` (one line per epoch) and ``model.safetensors`` + ``model.json``. A table folder holds
``table.json`` (every cell, per seed, and the settings of each degradation). Every file is checked when read
(:mod:`.schema`): a report is never built on a file that is not what cqdkit writes. Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..files import read_regular_text
from ..schema import check_log, check_results, read_json, read_model_description
from ..train.written import check_config, check_table

#: The order of models in a report: the teacher, then the students from the baseline to the distilled ones.
MODEL_ORDER = ("a", "b", "a-b", "cqd", "a-cqd")


@dataclass(frozen=True)
class RunFolder:
    """A finished ``cqdkit run`` folder.

    Attributes:
        path: the folder.
        config: ``config.json``: ``run`` (the settings), ``pipeline``, ``dataset``, ``distillation``, ...
        results: ``results.json``: ``models`` (method -> scores), ``method`` (the student), ``gain``, ...
        logs: method -> its ``log.jsonl`` lines (one dict per epoch), for the models that have one.
    """

    path: Path
    config: dict[str, Any]
    results: dict[str, Any]
    logs: dict[str, list[dict[str, Any]]]

    @property
    def method(self) -> str:
        """The run's student method (``a-cqd``, ``cqd``, ``b``, ...)."""
        return str(self.results["method"])

    @property
    def models(self) -> list[str]:
        """The methods with results, teacher first, then in Table 1's order."""
        names = list(self.results["models"])
        return sorted(names, key=lambda name: (MODEL_ORDER.index(name) if name in MODEL_ORDER else len(MODEL_ORDER),
                                               name))

    @property
    def baseline(self) -> str | None:
        """B, when the run trained it besides another student."""
        return self.results.get("baseline")

    @property
    def classes(self) -> list[str]:
        """Class names by index, from a saved model's description (``model.json``)."""
        for name in self.models:
            description = self.path / name / "model.json"
            if description.is_file():
                return list(read_model_description(description)["classes"])
        count = (self.config.get("dataset") or {}).get("classes") or 0
        return [f"class {index}" for index in range(count)]

    def weights(self, method: str) -> Path:
        """The saved model of ``method``."""
        return self.path / method / "model.safetensors"


@dataclass(frozen=True)
class TableFolder:
    """A ``cqdkit table`` folder: ``table`` is ``table.json`` (rows, degradations, seeds, raw values per
    seed, mean and std per cell, settings per degradation)."""

    path: Path
    table: dict[str, Any]


def read_folder(path: str | Path) -> RunFolder | TableFolder:
    """The run or table written in ``path``.

    Raises:
        DataError: ``path`` is neither a finished run folder nor a table folder, or a file in it cannot be
            read.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such folder; expected a cqdkit run or table folder")
    if (path / "table.json").is_file():
        table = read_json(path / "table.json")
        check_table(path / "table.json", table)
        return TableFolder(path, table)
    if (path / "config.json").is_file() and not (path / "results.json").is_file():
        raise DataError(f"{path}: no results.json: the run has not finished "
                        f"(cqdkit run --resume --out {path} continues it)")
    if not (path / "results.json").is_file():
        raise DataError(f"{path}: not a cqdkit run folder (config.json, results.json) or table folder (table.json)")
    config, results = read_json(path / "config.json"), read_json(path / "results.json")
    check_results(path / "results.json", results)
    check_config(path / "config.json", config)
    check_no_unseen_view(path, config, results)
    logs = {name: read_log(path / name / "log.jsonl") for name in results["models"]
            if (path / name / "log.jsonl").exists()}  # a FIFO or folder there is refused
    check_classes(path, config, list(results["models"]))
    return RunFolder(path, config, results, logs)


def check_classes(path: Path, config: dict[str, Any], models: list[str]) -> None:
    """Every saved model's ``model.json`` of the run is sound, all name the same classes in the same order, and
    as many as the dataset has (``config.json``'s ``dataset.classes``)."""
    first: tuple[Path, list[str]] | None = None
    for name in models:
        description = path / name / "model.json"
        if not description.is_file():
            continue
        classes = read_model_description(description)["classes"]
        if first is None:
            first = (description, classes)
        elif classes != first[1]:
            raise DataError(f"{description}: field classes must be the classes of {first[0]} (the same run), got "
                            f"{json.dumps(classes)[:80]}")
    count = (config.get("dataset") or {}).get("classes")
    if first is not None and count is not None and count != len(first[1]):
        raise DataError(f"{path / 'config.json'}: field dataset.classes must be {len(first[1])}, the number of class "
                        f"names in {first[0]}, got {count}")


def check_no_unseen_view(path: Path, config: dict[str, Any], results: dict[str, Any]) -> None:
    """A NaN accuracy means a model could not see that view (a teacher with privileged channels tested on z, a
    student on x): in a run whose x is plain RGB, every model sees both views, so a NaN there is damage."""
    channels = (config.get("pipeline") or {}).get("x_channels")
    if not isinstance(channels, list) or len(channels) > 3:
        return
    for name, scores in results["models"].items():
        for view in ("test_x", "test_z"):
            value = scores.get(view)
            if isinstance(value, float) and math.isnan(value):
                raise DataError(f"{path / 'results.json'}: field models.{name}.{view} is NaN, but x has only the "
                                f"channels {', '.join(channels)}, so every model sees both views; expected an accuracy")


def read_log(path: Path) -> list[dict[str, Any]]:
    """The epochs of a model's ``log.jsonl``, one dict per line."""
    try:
        text = read_regular_text(path, "a log.jsonl")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text, as cqdkit writes it ({error})") from error
    epochs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            epoch = json.loads(line)
        except ValueError as error:
            raise DataError(f"{path} line {number}: not JSON ({error})") from error
        if not isinstance(epoch, dict) or "epoch" not in epoch:
            raise DataError(f"{path} line {number}: expected an object with 'epoch', got {line[:80]!r}")
        epochs.append(epoch)
    check_log(path, epochs)
    return epochs
