"""What a run's saved models say about its test split: per-class accuracy and a few example pairs.

The test split is rebuilt from the run's ``config.json`` with :class:`~cqdkit.train.experiment.Experiment`
(which trains and writes nothing when built), the models are the run's ``model.safetensors`` read back with
:func:`cqdkit.export.load_trained`, and predictions go through the same :func:`~cqdkit.train.evaluate.predict`
as the run's own evaluation, so the per-class accuracies add up to the accuracies in ``results.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..reporting import Reporter
from .folder import RunFolder


@dataclass(frozen=True)
class Example:
    """One test sample: its views (``H x W x 3`` uint8, x's RGB channels) and each model's predicted class
    (the teacher ``a`` on x, the students on z)."""

    index: int
    label: int
    x: np.ndarray
    z: np.ndarray
    predicted: dict[str, int]


@dataclass(frozen=True)
class TestPredictions:
    """The students' predictions on every test z view, and example pairs.

    Attributes:
        classes: class names, by index.
        labels: ``(N,)`` the test samples' classes.
        predicted: method -> ``(N,)`` its predicted class on each test z view (the models trained on z).
        examples: a few samples spread over the classes, with the teacher's prediction on x too.
    """

    classes: list[str]
    labels: np.ndarray
    predicted: dict[str, np.ndarray]
    examples: list[Example] = field(default_factory=list)

    def counts(self) -> np.ndarray:
        """``(C,)`` test images per class."""
        return np.bincount(self.labels, minlength=len(self.classes))

    def per_class(self, method: str) -> np.ndarray:
        """``(C,)`` top-1 accuracy of ``method`` on each class's test z views (NaN: no test image)."""
        hits = np.bincount(self.labels, weights=(self.predicted[method] == self.labels).astype(np.float64),
                           minlength=len(self.classes))
        counts = self.counts()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)

    def accuracy(self, method: str) -> float:
        """Top-1 accuracy of ``method`` on all test z views."""
        return float((self.predicted[method] == self.labels).mean())


def predict_test_split(folder: RunFolder, *, examples: int = 12, reporter: Reporter | None = None) -> TestPredictions:
    """Predictions of the run's models on its test split.

    Every model trained on z (B, the student, ...) is run on every test z view; the teacher on the x views
    of the ``examples`` samples only.

    Raises:
        CqdkitError: the dataset, a plugin or a saved model of the run is not available here.
    """
    from torch.utils.data import Subset

    from ..export import load_trained
    from ..train.config import RunConfig
    from ..train.evaluate import predict
    from ..train.experiment import Experiment
    from ..train.methods import METHODS

    config = dataclasses.replace(RunConfig.load(folder.path / "config.json"), device="auto", workers=0,
                                 compile=False)
    experiment = Experiment(config, folder.path, reporter=reporter)
    test = experiment.test_set
    labels = np.array([record.label for record in test.records], dtype=np.int64)
    students = [m for m in folder.models if m in METHODS and METHODS[m].view == "z" and folder.weights(m).exists()]
    batch = max(config.batch_size, 64)

    def run(method: str, dataset: Any, view: str) -> np.ndarray:
        classifier = load_trained(folder.weights(method)).module
        channels = classifier.normalizer.scale.shape[1]
        available = len(experiment.maker.x_channels) if view == "x" else 3
        logits, _ = predict(classifier.backbone, classifier.normalizer, dataset, view, experiment.hardware,
                            batch_size=batch, name=f"report: {METHODS[method].title} on test {view}",
                            channels=channels if channels < available else None, reporter=reporter)
        return logits.argmax(dim=1).numpy()

    predicted = {method: run(method, test, "z") for method in students}
    chosen = spread_over_classes(labels, examples)
    teacher_x: dict[str, np.ndarray] = {}
    if chosen and "a" in folder.models and folder.weights("a").exists():
        teacher_x["a"] = run("a", Subset(test, chosen), "x")
    shown = []
    for position, index in enumerate(chosen):
        sample = test[index]
        to_image = lambda view: sample.view(view)[:3].permute(1, 2, 0).numpy().astype(np.uint8)  # noqa: E731
        guesses = {m: int(values[position]) for m, values in teacher_x.items()}
        guesses.update({m: int(values[index]) for m, values in predicted.items()})
        shown.append(Example(index, int(labels[index]), to_image("x"), to_image("z"), guesses))
    return TestPredictions(list(experiment.data.classes), labels, predicted, shown)


def spread_over_classes(labels: np.ndarray, count: int) -> list[int]:
    """Up to ``count`` sample indices: the first sample of each class in class order, then the second, ...

        >>> spread_over_classes(np.array([1, 1, 0, 2, 0]), 4)
        [2, 0, 3, 4]
    """
    by_class = [list(np.flatnonzero(labels == c)) for c in range(int(labels.max(initial=-1)) + 1)]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < count and any(depth < len(indices) for indices in by_class):
        chosen += [int(indices[depth]) for indices in by_class if depth < len(indices)][: count - len(chosen)]
        depth += 1
    return chosen
