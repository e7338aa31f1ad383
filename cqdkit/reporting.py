"""How the library tells its user what it is doing, without knowing about the command line.

Long computations report through a :class:`Reporter`:

* ``progress(description, total)``: a transient rich progress bar, on a terminal only;
* ``epoch(model, row)``: one finished epoch of one model (the ``log.jsonl`` row). Where no progress bar
  can show (a log file, CI, a batch scheduler), it becomes one plain line: model, epoch, loss, accuracy,
  images/s;
* ``message(text)``: a line for the user (the run folder, which detector ran, ...);
* ``result(model, scores)``: a model's final test scores.

``log_format="json"`` replaces all of that by one JSON object per event on ``json_stream`` (stdout for the
command line), for machines. ``tensorboard=FOLDER`` also writes every epoch's scalars and the final test
scores as TensorBoard event files, one sub-run per model (``FOLDER/<model>``); it needs the optional
``tensorboard`` package.

Example:
    >>> reporter = Reporter.silent()
    >>> with reporter.progress("epoch 1/8", total=3) as advance:
    ...     for _ in range(3):
    ...         advance(1)
"""

from __future__ import annotations

import copy
import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import CqdkitError

if TYPE_CHECKING:
    from rich.console import Console

LOG_FORMATS = ("rich", "json")


class Reporter:
    """Progress, per-epoch lines, messages and results, shown on ``console`` (None: shown nowhere).

    Args:
        console: a rich console; progress bars appear only when it is a terminal.
        bars: show progress bars (``--quiet`` turns them and the per-epoch lines off, keeping messages).
        log_format: ``"rich"`` (for people) or ``"json"`` (one JSON object per event on ``json_stream``).
        json_stream: where JSON events go (default: stdout).
        tensorboard: a folder for TensorBoard event files (one sub-folder per model), or None.
    """

    def __init__(
        self,
        console: Console | None,
        *,
        bars: bool = True,
        log_format: str = "rich",
        json_stream: IO[str] | None = None,
        tensorboard: Path | None = None,
    ) -> None:
        if log_format not in LOG_FORMATS:
            raise CqdkitError(f"--log-format {log_format!r}; expected one of {', '.join(LOG_FORMATS)}")
        self.console = console
        self.bars = bars
        self.log_format = log_format
        self.json_stream = json_stream
        self.tensorboard = _TensorBoard(Path(tensorboard)) if tensorboard is not None else None
        self.prefix = ""

    def scoped(self, prefix: str) -> Reporter:
        """The same reporter, naming models ``<prefix>/<model>`` (a table's ``seed-0/lowres/A+CQD``)."""
        child = copy.copy(self)
        child.prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        return child

    def muted(self) -> Reporter:
        """The same reporter without progress bars and per-epoch lines (messages, results and JSON events stay):
        for the many short trainings of a search."""
        child = copy.copy(self)
        child.bars = False
        return child

    def with_tensorboard(self, folder: Path) -> Reporter:
        """The same reporter, also writing TensorBoard event files under ``folder``."""
        child = copy.copy(self)
        child.tensorboard = _TensorBoard(Path(folder))
        return child

    def _name(self, model: str) -> str:
        return f"{self.prefix}/{model}" if self.prefix else model

    @classmethod
    def silent(cls) -> Reporter:
        """A reporter that shows nothing."""
        return cls(None)

    @classmethod
    def default(cls) -> Reporter:
        """A reporter on a new stderr console."""
        from rich.console import Console

        return cls(Console(stderr=True))

    @property
    def _json(self) -> bool:
        return self.log_format == "json"

    @property
    def _terminal(self) -> bool:
        return self.console is not None and self.console.is_terminal and not self._json

    @property
    def shows_bars(self) -> bool:
        """Whether progress bars show (a terminal, and not ``--quiet`` or JSON)."""
        return self._terminal and self.bars

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A transient progress bar of ``total`` steps on a terminal (nothing in logs); yields ``advance(n)``."""
        if not (self._terminal and self.bars):
            yield lambda n=1: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n=1: bar.advance(task, n)

    def epoch(self, model: str, row: dict[str, Any], epochs: int) -> None:
        """One finished epoch of ``model`` (a ``log.jsonl`` row) out of ``epochs``."""
        model = self._name(model)
        if self.tensorboard is not None:
            self.tensorboard.epoch(model, row)
        if self._json:
            self._emit({"event": "epoch", "model": model, "epochs": epochs, **row})
        elif self.console is not None and self.bars and not self._terminal:
            speed = row["images"] / row["seconds"] if row.get("seconds") else math.nan
            text = f"{model} epoch {row['epoch']}/{epochs}: loss {row['loss']:.4f}"
            if row.get("distill"):
                text += f" (distillation term {row['distill']:.4f}"
                text += f", its KL part {row['distill_kl']:.4f})" if row.get("distill_kl") is not None else ")"
            text += f", train accuracy {100 * row['train_acc']:.1f}%"
            if row.get("val_acc") is not None:
                text += f", validation accuracy {100 * row['val_acc']:.1f}%"
            self.message(text + f", {speed:.0f} images/s")

    def result(self, model: str, scores: dict[str, float]) -> None:
        """A model's final scores (test accuracies and more)."""
        model = self._name(model)
        if self.tensorboard is not None:
            self.tensorboard.result(model, scores)
        if self._json:
            self._emit({"event": "result", "model": model, **scores})

    def message(self, text: str) -> None:
        """A line of information for the user (plain text, no markup)."""
        if self._json:
            self._emit({"event": "message", "text": text})
        elif self.console is not None:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def event(self, kind: str, **fields: Any) -> None:
        """Any other event (a run's start and end, a table's results): JSON only."""
        if self._json:
            self._emit({"event": kind, **fields})

    def _emit(self, payload: dict[str, Any]) -> None:
        """One line of strict JSON (NaN and infinities become null)."""
        stream = self.json_stream or sys.stdout
        stream.write(json.dumps(_strict(payload), default=str, allow_nan=False) + "\n")
        stream.flush()

    def close(self) -> None:
        """Flush and close the TensorBoard files."""
        if self.tensorboard is not None:
            self.tensorboard.close()


def _strict(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


class _TensorBoard:
    """TensorBoard event files: ``folder/<model>`` per model, the epoch as the step."""

    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise CqdkitError(f"--tensorboard needs the tensorboard package ({error}); pip install tensorboard "
                              "(or cqdkit[tensorboard])") from None
        self.folder, self.writer_type, self.writers = folder, SummaryWriter, {}

    def _writer(self, model: str) -> Any:
        if model not in self.writers:
            folder = "".join(c if c.isalnum() or c in "+-_./" else "-" for c in model)  # A→B: A-B
            self.writers[model] = self.writer_type(log_dir=str(self.folder / folder))
        return self.writers[model]

    def epoch(self, model: str, row: dict[str, Any]) -> None:
        writer = self._writer(model)
        step = int(row["epoch"])
        for key in ("loss", "ce", "distill", "distill_gradient_ratio", "train_acc", "val_acc", "lr"):
            if row.get(key) is not None:
                writer.add_scalar(f"train/{key}" if key != "val_acc" else "val/acc", float(row[key]), step)
        if row.get("seconds"):
            writer.add_scalar("train/images_per_second", row["images"] / row["seconds"], step)
        writer.flush()

    def result(self, model: str, scores: dict[str, float]) -> None:
        writer = self._writer(model)
        for key, value in scores.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                writer.add_scalar(f"test/{key}", float(value), 0)
        writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


@contextmanager
def reporting_into(reporter: Reporter | None, folder: Path, *, tensorboard: bool) -> Iterator[Reporter]:
    """``reporter`` (silent when None) for a command writing into ``folder``: with ``tensorboard`` it also
    writes event files into ``folder/tensorboard``, closed when the block ends."""
    reporter = reporter or Reporter.silent()
    if tensorboard:
        reporter = reporter.with_tensorboard(Path(folder) / "tensorboard")
    try:
        yield reporter
    finally:
        reporter.close()
