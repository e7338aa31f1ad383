"""Carving a validation split from the training split (seeded, stratified by class).

The validation split is what every choice (hyper-parameters, epochs, lambda, T) is tuned on; the test
split is only ever evaluated.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..errors import DataError
from .records import Record

#: The fraction of each class's training images held out for validation by default.
DEFAULT_VAL_FRACTION = 0.1


def split_train_val(
    records: list[Record], fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0
) -> tuple[list[Record], list[Record]]:
    """Split ``records`` into ``(train, val)``, holding out ``fraction`` of each class.

    Each class with at least two images gives ``round(fraction * n)`` of them (at least one when
    ``fraction > 0``, never all) to validation, chosen with ``seed``. Both lists keep the input order, and
    the split depends only on the records, the fraction and the seed.

    Example:
        >>> train, val = split_train_val(dataset.train, 0.1, seed=0)  # doctest: +SKIP
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"validation fraction {fraction}; expected a number in [0, 1)")
    by_class: dict[int, list[int]] = defaultdict(list)
    for position, record in enumerate(records):
        by_class[record.label].append(position)
    held_out: set[int] = set()
    for label in sorted(by_class):
        positions = by_class[label]
        if fraction == 0.0 or len(positions) < 2:
            continue
        count = min(len(positions) - 1, max(1, round(fraction * len(positions))))
        rng = np.random.default_rng([seed, label])
        held_out.update(rng.choice(positions, size=count, replace=False).tolist())
    train = [r for i, r in enumerate(records) if i not in held_out]
    val = [r for i, r in enumerate(records) if i in held_out]
    return train, val


def split_folds(records: list[Record], folds: int, fold: int, seed: int = 0) -> tuple[list[Record], list[Record]]:
    """Fold ``fold`` of a ``folds``-fold cross-validation: ``(train, val)`` with fold ``fold`` held out.

    Each class's records are shuffled with ``seed`` and dealt round-robin into the folds, so every fold has
    about ``1/folds`` of every class and each record is held out in exactly one fold. Both lists keep the
    input order.

    Example:
        >>> train, val = split_folds(dataset.train, folds=5, fold=0, seed=0)  # doctest: +SKIP
    """
    if folds < 2 or not 0 <= fold < folds:
        raise DataError(f"fold {fold} of {folds}; expected at least 2 folds and 0 <= fold < folds")
    by_class: dict[int, list[int]] = defaultdict(list)
    for position, record in enumerate(records):
        by_class[record.label].append(position)
    largest = max((len(positions) for positions in by_class.values()), default=0)
    if largest < folds:  # then fold `largest` and every later one would hold out nothing
        raise DataError(f"--folds {folds}: the largest class has only {largest} training images, so some folds "
                        f"would have no validation images; expected at most {largest} folds")
    held_out: set[int] = set()
    for label in sorted(by_class):
        order = np.random.default_rng([seed, label]).permutation(by_class[label])
        held_out.update(int(position) for k, position in enumerate(order) if k % folds == fold)
    train = [r for i, r in enumerate(records) if i not in held_out]
    val = [r for i, r in enumerate(records) if i in held_out]
    return train, val
