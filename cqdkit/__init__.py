"""cqdkit: Cross Quality Distillation.

Train a teacher f on high-quality views x, make low-quality views z from x automatically, and train a
student g on z that imitates f (Su and Maji, "Cross Quality Distillation").

``import cqdkit`` is cheap: it imports neither torch nor timm. Heavy parts load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import (
    CqdkitError,
    DataError,
    PluginConflictError,
    PluginError,
    SpecError,
    TrainingError,
    UnknownNameError,
)
from .plugin import get_plugin_manager, hookimpl

__version__ = "0.1.0"

# Public names that live in heavier modules, imported on first access (PEP 562).
_LAZY: dict[str, str] = {}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cqdkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CqdkitError",
    "DataError",
    "PluginConflictError",
    "PluginError",
    "SpecError",
    "TrainingError",
    "UnknownNameError",
    "__version__",
    "get_plugin_manager",
    "hookimpl",
    *_LAZY,
]
