"""Lazy public names (PEP 562): a package lists where each name lives and imports it on first use.

This keeps ``import cqdkit`` and ``cqdkit --help`` free of torch, timm and OpenCV.

Example (in a package's ``__init__.py``)::

    __getattr__, __dir__ = lazy_attributes(__name__, {"make_pair": ".pipeline"})
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_attributes(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``names`` maps a public name to its module
    (absolute, or relative to ``package``); the value is imported once and then cached in the package."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(names[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
