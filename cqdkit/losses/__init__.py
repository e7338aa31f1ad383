"""Distillation losses: the L2 term of Equation 1.

``softce`` (the paper's), ``logit-l2`` and ``kl`` are registered by :mod:`cqdkit.losses.plugin`; build one
by name with ``get_plugin_manager().loss("softce").factory(temperature=10.0)``. The classes live in
:mod:`cqdkit.losses.distill` and are imported on first access, so importing this package stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY: dict[str, str] = {
    "SoftCrossEntropy": "cqdkit.losses.distill",
    "LogitSquaredError": "cqdkit.losses.distill",
    "KLDivergence": "cqdkit.losses.distill",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cqdkit.losses' has no attribute {name!r}")


__all__ = list(_LAZY)
