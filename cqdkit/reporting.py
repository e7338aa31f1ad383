"""How the library tells its user what it is doing, without knowing about the command line.

Long computations (training epochs, evaluation, caching teacher logits) report through a
:class:`Reporter`: on a terminal it shows transient rich progress bars; :meth:`Reporter.silent` shows
nothing. The command line passes its own console; library users get a stderr console by default.

Example:
    >>> reporter = Reporter.silent()
    >>> with reporter.progress("epoch 1/8", total=3) as advance:
    ...     for _ in range(3):
    ...         advance(1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


class Reporter:
    """Progress of long computations and messages, shown on ``console`` (None: shown nowhere).

    Args:
        console: a rich console; progress bars appear only when it is a terminal.
        bars: show progress bars (``--quiet`` turns them off and keeps the messages).
    """

    def __init__(self, console: Console | None, *, bars: bool = True) -> None:
        self.console = console
        self.bars = bars

    @classmethod
    def silent(cls) -> Reporter:
        """A reporter that shows nothing."""
        return cls(None)

    @classmethod
    def default(cls) -> Reporter:
        """A reporter on a new stderr console."""
        from rich.console import Console

        return cls(Console(stderr=True))

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A transient progress bar of ``total`` steps on a terminal (nothing in logs); yields ``advance(n)``."""
        if self.console is None or not self.bars or not self.console.is_terminal:
            yield lambda n=1: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n=1: bar.advance(task, n)

    def message(self, text: str) -> None:
        """A line of information for the user (plain text, no markup)."""
        if self.console is not None:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)
