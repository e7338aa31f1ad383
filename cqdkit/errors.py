"""Errors that cqdkit expects and reports as one clear message (no traceback).

Every error a user can cause -- a bad spec, an unknown name, a corrupt file, a broken plugin --
is a :class:`CqdkitError`. The CLI prints its message and exits with status 2; anything else is a bug
and is shown with a full traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CqdkitError(Exception):
    """Base class of every expected cqdkit error."""


class UnknownNameError(CqdkitError, KeyError):
    """A degradation, backbone, loss or dataset name that no plugin provides.

    Example:
        >>> err = UnknownNameError("degradation", "tsp", ["tps", "gray", "lowres"])
        >>> str(err)
        "unknown degradation 'tsp'; did you mean 'tps'? (known: gray, lowres, tps)"
    """

    def __init__(self, kind: str, name: str, known: Iterable[str], *, hint: str = "") -> None:
        self.kind, self.name = kind, name
        self.known = sorted(set(known))
        self.matches = closest_matches(name, self.known)
        message = f"unknown {kind} {name!r}"
        if self.matches:
            message += "; did you mean " + " or ".join(repr(m) for m in self.matches) + "?"
        if self.known and len(self.known) <= 40:
            message += f" (known: {', '.join(self.known)})"
        if hint:
            message += f" {hint}"
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class PluginError(CqdkitError):
    """A plugin failed to load, raised inside a hook, or broke a rule of the plugin system."""


class SpecError(CqdkitError, ValueError):
    """A degradation spec string or parameter that cannot be understood."""


class DataError(CqdkitError):
    """A dataset file that is missing, corrupt or not in the expected format."""


class TrainingError(CqdkitError):
    """Training cannot go on (a NaN loss, an incompatible checkpoint, ...)."""


def closest_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates closest to ``name`` (case-insensitive), best first."""
    candidates = list(candidates)
    by_lower = {c.lower(): c for c in candidates}
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.6)
    return [by_lower[m] for m in matches]
