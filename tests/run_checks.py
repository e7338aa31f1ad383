"""Checks on a finished run folder that can fail: its reported accuracies are those of its saved models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cqdkit.export import load_trained
from cqdkit.train.config import RunConfig
from cqdkit.train.experiment import Experiment


def recomputed_accuracy(run_dir: Path, method: str, view: str) -> float:
    """Top-1 accuracy of ``run_dir/method/model.safetensors`` on the run's test ``view``, computed afresh."""
    experiment = Experiment(RunConfig.load(run_dir / "config.json"), run_dir)
    classifier = load_trained(run_dir / method / "model.safetensors").module
    channels = classifier.normalizer.scale.shape[1]
    hits = []
    with torch.no_grad():
        for batch in DataLoader(experiment.test_set, batch_size=16):
            images = batch.view(view)[:, :channels]
            hits.append(classifier(images).argmax(1) == batch.label)
    return float(torch.cat(hits).float().mean())


def assert_results_match_models(run_dir: Path) -> dict:
    """Every accuracy in ``results.json`` equals a fresh evaluation of the saved model (NaN where the
    model cannot see the view). Returns the results."""
    results = json.loads((run_dir / "results.json").read_text())
    for method, scores in results["models"].items():
        for view in ("x", "z"):
            reported = scores[f"test_{view}"]
            if math.isnan(reported):
                continue
            assert reported == recomputed_accuracy(run_dir, method, view), (method, view)
    return results
