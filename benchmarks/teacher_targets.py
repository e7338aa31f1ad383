"""How much the teacher's soft targets say, at each temperature, for a finished run or table experiment.

    python benchmarks/teacher_targets.py RUN_DIR [--temperatures 1,2,4,10]

For the run's model A on its training x views (what CQD distils from): accuracy and NLL, the standard
deviation of its logits, and for each T the mean entropy of softmax(f(x)/T) (nats; log C is uniform), its
mean top probability, and the size of the distillation gradient per unit lambda relative to the
cross-entropy's, both with respect to a fresh student's logits (all zero):
``mean_i ||d softCE_T(s_i, t_i) / d s_i|| / mean_i ||d CE(s_i, y_i) / d s_i||``. Without a T^2 factor this
ratio falls roughly like 1 / (C T^2); a lambda near 1 / ratio gives distillation the weight of the labels.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from cqdkit.train.config import RunConfig
from cqdkit.train.evaluate import accuracy, negative_log_likelihood, predict
from cqdkit.train.experiment import Experiment


def soft_target_statistics(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> dict[str, float]:
    """Entropy and top probability of the softened targets, and the gradient ratio for a fresh student."""
    soft = F.softmax(logits / temperature, dim=1)
    fresh = torch.zeros_like(logits)
    ce_gradient = F.softmax(fresh, 1) - F.one_hot(labels, logits.shape[1]).float()
    distill_gradient = (F.softmax(fresh / temperature, 1) - soft) / temperature
    return {
        "entropy": float(-(soft * soft.clamp_min(1e-12).log()).sum(1).mean()),
        "top_probability": float(soft.max(1).values.mean()),
        "gradient_ratio_per_lambda": float(distill_gradient.norm(dim=1).mean() / ce_gradient.norm(dim=1).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder (or a table's seed-N/<degradation> folder)")
    parser.add_argument("--temperatures", default="1,2,4,10")
    args = parser.parse_args()
    experiment = Experiment(RunConfig.load(args.run_dir / "config.json"), args.run_dir)
    teacher = experiment.train_or_load("a")  # finished: loaded, not trained
    logits, labels = predict(teacher.model, teacher.normalizer, experiment.train_set, "x", teacher.hardware)
    report = {
        "run": str(args.run_dir),
        "classes": experiment.data.num_classes,
        "uniform_entropy": math.log(experiment.data.num_classes),
        "train_x_accuracy": accuracy(logits, labels),
        "train_x_nll": negative_log_likelihood(logits, labels),
        "logit_std": float(logits.std()),
        "temperatures": {t: soft_target_statistics(logits, labels, float(t))
                         for t in args.temperatures.split(",")},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
