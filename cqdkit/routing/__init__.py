"""Multi-quality models (paper section 2.3): a quality classifier on log-magnitude spectra routes each
image to the expert trained for its quality.

Public names are imported on first access, so ``import cqdkit.routing`` does not import torch::

    from cqdkit.routing import QualityRouter, Expert, LogSpectrum, fit_quality_classifier
"""

from __future__ import annotations

from cqdkit.lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "LogSpectrum": "cqdkit.routing.spectrum",
    "grayscale": "cqdkit.routing.spectrum",
    "QualityRouter": "cqdkit.routing.router",
    "Expert": "cqdkit.routing.router",
    "spectrum_features": "cqdkit.routing.fit",
    "fit_quality_classifier": "cqdkit.routing.fit",
    "quality_accuracy": "cqdkit.routing.fit",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
