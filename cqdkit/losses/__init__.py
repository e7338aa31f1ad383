"""Distillation: the terms Equation 1 adds to the cross-entropy, and how a run builds them.

A term is a :class:`DistillTerm` (:mod:`cqdkit.losses.term`): logit losses (``softce``, the paper's;
``logit-l2``; ``kl``; a plugin's :class:`~cqdkit.plugin.DistillLoss`) run as :class:`LogitTerm`, and
distillers that match intermediate features or relations between samples (``fitnet``, ``at``, ``st``,
``pkt``, ``sp``, ``rkd``, ``crd``) are terms of their own, one module each. All are registered by
:mod:`cqdkit.losses.plugin` through the same hook as a third party's. A run names them in a loss spec
(:mod:`cqdkit.losses.spec`, ``softce+fitnet:student=-2``) and builds them with :func:`build_terms`. The
classes are imported on first access, so importing this package stays cheap.
"""

from __future__ import annotations

from cqdkit.lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "SoftCrossEntropy": "cqdkit.losses.distill",
    "LogitSquaredError": "cqdkit.losses.distill",
    "KLDivergence": "cqdkit.losses.distill",
    "DistillTerm": "cqdkit.losses.term",
    "LogitTerm": "cqdkit.losses.term",
    "Outputs": "cqdkit.losses.term",
    "TermBatch": "cqdkit.losses.term",
    "DistillContext": "cqdkit.losses.term",
    "WeightedTerm": "cqdkit.losses.term",
    "features_as_maps": "cqdkit.losses.term",
    "TermSpec": "cqdkit.losses.spec",
    "parse_loss": "cqdkit.losses.spec",
    "build_loss": "cqdkit.losses.build",
    "build_terms": "cqdkit.losses.build",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
