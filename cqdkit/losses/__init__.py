"""Distillation losses: the L2 term of Equation 1.

``softce`` (the paper's), ``logit-l2`` and ``kl`` are registered by :mod:`cqdkit.losses.plugin`; build one
by name with ``build_loss("softce", temperature=10.0)``, which also calls it once on tiny logits so that a
plugin's loss that breaks the contract fails before training (:mod:`cqdkit.losses.build`). The classes live
in :mod:`cqdkit.losses.distill` and are imported on first access, so importing this package stays cheap.
"""

from __future__ import annotations

from cqdkit.lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "SoftCrossEntropy": "cqdkit.losses.distill",
    "LogitSquaredError": "cqdkit.losses.distill",
    "KLDivergence": "cqdkit.losses.distill",
    "build_loss": "cqdkit.losses.build",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
