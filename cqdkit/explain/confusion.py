"""Pairwise confusions and the class pairs that CQD confuses less (paper section 3.3, Figure 7).

``c(i, j)`` is the fraction of the test examples of class i that a model classifies as class j: the
confusion matrix normalised per row (per true class). The pairwise confusion of two classes is
``c(i, j) + c(j, i)``, and :func:`top_reductions` ranks class pairs by how much it drops from one model
(B) to another (A+CQD).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import CqdkitError


@dataclass(frozen=True)
class PairReduction:
    """One class pair and its pairwise confusion under the two models."""

    i: int
    j: int
    before: float  # c(i, j) + c(j, i) of the first model (B)
    after: float  # the same for the second model (A+CQD)

    @property
    def reduction(self) -> float:
        return self.before - self.after


def confusion_matrix(labels: npt.ArrayLike, predictions: npt.ArrayLike, num_classes: int) -> np.ndarray:
    """Row-normalised confusion ``c[i, j]`` = fraction of class-i examples predicted as class j.

    A class without examples gets a row of zeros.

    Example:
        >>> confusion_matrix([0, 0, 1], [0, 1, 1], 2)
        array([[0.5, 0.5],
               [0. , 1. ]])
    """
    labels = np.asarray(labels, dtype=np.int64).ravel()
    predictions = np.asarray(predictions, dtype=np.int64).ravel()
    if labels.shape != predictions.shape:
        raise CqdkitError(f"confusion: {labels.size} labels but {predictions.size} predictions")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise CqdkitError(f"confusion: {name} must be class indices in [0, {num_classes}), "
                              f"got values from {values.min()} to {values.max()}")
    counts = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(counts, (labels, predictions), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def pairwise_confusion(confusion: npt.ArrayLike) -> np.ndarray:
    """Symmetric ``p[i, j] = c(i, j) + c(j, i)`` with a zero diagonal (a class is not confused with itself)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise CqdkitError(f"confusion: expected a square matrix, got shape {confusion.shape}")
    pairwise = confusion + confusion.T
    np.fill_diagonal(pairwise, 0.0)
    return pairwise


def top_reductions(before: npt.ArrayLike, after: npt.ArrayLike, k: int = 5) -> list[PairReduction]:
    """The ``k`` class pairs ``i < j`` whose pairwise confusion drops most from ``before`` to ``after``.

    ``before`` and ``after`` are row-normalised confusion matrices (:func:`confusion_matrix`). Only pairs
    whose confusion actually drops are returned, so there may be fewer than ``k``; ties keep the order of
    ``(i, j)``.

    Example:
        >>> b = np.array([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0], [0.0, 0.1, 0.9]])
        >>> [(p.i, p.j, round(p.reduction, 2)) for p in top_reductions(b, np.eye(3), k=5)]
        [(0, 1, 0.7), (1, 2, 0.1)]
    """
    old, new = pairwise_confusion(before), pairwise_confusion(after)
    if old.shape != new.shape:
        raise CqdkitError(f"confusion: matrices of different shapes {old.shape} and {new.shape}")
    i, j = np.triu_indices(old.shape[0], k=1)
    drop = old[i, j] - new[i, j]
    order = np.argsort(-drop, kind="stable")
    return [
        PairReduction(int(i[n]), int(j[n]), float(old[i[n], j[n]]), float(new[i[n], j[n]]))
        for n in order[:k]
        if drop[n] > 0
    ]
