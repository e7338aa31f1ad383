"""Distillation losses: the L2 term of Equation 1.

``softce`` (the paper's), ``logit-l2`` and ``kl`` are registered by :mod:`cqdkit.losses.plugin`; build one
by name with ``get_plugin_manager().loss("softce").factory(temperature=10.0)``. The classes live in
:mod:`cqdkit.losses.distill` and are imported on first access, so importing this package stays cheap.
"""

from __future__ import annotations

from cqdkit.lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "SoftCrossEntropy": "cqdkit.losses.distill",
    "LogitSquaredError": "cqdkit.losses.distill",
    "KLDivergence": "cqdkit.losses.distill",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
