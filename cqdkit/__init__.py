"""cqdkit: Cross Quality Distillation.

Train a teacher f on high-quality views x, make low-quality views z from x automatically, and train a
student g on z that imitates f (Su and Maji, "Cross Quality Distillation").

``import cqdkit`` is cheap: it imports neither torch nor timm. Heavy parts load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"  # before the imports below: the plugin manager names it

from .errors import (
    CqdkitError,
    DataError,
    PluginError,
    SpecError,
    TrainingError,
    UnknownNameError,
)
from .lazy import lazy_attributes
from .plugin import PluginClashWarning, PluginManager, get_plugin_manager, hookimpl

# Public names that live in heavier modules, imported on first access (PEP 562).
_LAZY: dict[str, str] = {
    # degradations: the pair (x, z)
    "make_pair": "cqdkit.degradations.pipeline",
    "PairMaker": "cqdkit.degradations.pipeline",
    "parse_spec": "cqdkit.degradations.spec",
    # data
    "load_dataset": "cqdkit.data.load",
    "split_train_val": "cqdkit.data.split",
    "PairedDataset": "cqdkit.data.paired",
    "Sample": "cqdkit.data.sample",
    "ImageDataset": "cqdkit.data.records",
    "Record": "cqdkit.data.records",
    # models and losses
    "create_backbone": "cqdkit.models.backbone",
    "load_weights": "cqdkit.models.weights",
    "save_weights": "cqdkit.models.weights",
    "Normalizer": "cqdkit.models.preprocessing",
    # training and evaluation
    "RunConfig": "cqdkit.train.config",
    "METHODS": "cqdkit.train.methods",
    "Reporter": "cqdkit.reporting",
    "Experiment": "cqdkit.train.experiment",
    "run": "cqdkit.train.run",
    "run_table": "cqdkit.train.table",
    "run_tune": "cqdkit.train.tune",
    "run_multires": "cqdkit.train.multires",
    "run_compare": "cqdkit.train.compare",
    # sweeps: many trainings in parallel, recorded and resumed
    "SweepSettings": "cqdkit.sweep.run",
    "Training": "cqdkit.sweep.training",
    "run_sweep": "cqdkit.sweep.run",
    "explain_run": "cqdkit.explain.analysis",
    # a trained model for new images
    "Predictor": "cqdkit.predictor",
    "Predictions": "cqdkit.predictor",
    "load_predictor": "cqdkit.predictor",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = [
    "CqdkitError",
    "DataError",
    "PluginClashWarning",
    "PluginError",
    "SpecError",
    "TrainingError",
    "UnknownNameError",
    "__version__",
    "PluginManager",
    "get_plugin_manager",
    "hookimpl",
    *_LAZY,
]
