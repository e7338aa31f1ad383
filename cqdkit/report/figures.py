"""The report's figures, drawn on matplotlib's Agg canvas (no display, no pyplot state) and saved as PNG.

- :func:`curves_figure`: every model's loss, cross-entropy, distillation term, its KL part and training accuracy per
  epoch (a run's ``log.jsonl`` files), one panel each;
- :func:`per_class_figure`: test accuracy per class on z, B against the student (grouped bars; for many
  classes, the per-class difference, sorted);
- :func:`table_figure`: Table 1 as bars, accuracy by method for each degradation, mean ± std over seeds.

Each returns the :class:`matplotlib.figure.Figure`; :func:`save_png` writes it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_save_figure

DPI = 100

#: One colour per method, the same in every figure.
METHOD_COLOURS = {"a": "#4c72b0", "b": "#8c8c8c", "a-b": "#dd8452", "cqd": "#55a868", "a-cqd": "#2ca02c"}
#: One colour per Table 1 row (train / test).
ROW_COLOURS = {"A/A": "#4c72b0", "A/B": "#c44e52", "B/B": "#8c8c8c", "A→B/B": "#dd8452", "CQD/B": "#55a868",
               "A+CQD/B": "#2ca02c"}

#: (log.jsonl key, panel title) of the learning curves.
CURVE_PANELS = (
    ("loss", "loss (CE + λ · distillation)"),
    ("ce", "cross-entropy"),
    ("distill", "distillation term"),
    ("distill_kl", "its KL part (soft CE − H(teacher))"),
    ("train_acc", "training accuracy (%)"),
)

#: Above this many classes the per-class figure shows the sorted difference instead of labelled bars.
MAX_LABELLED_CLASSES = 30


def new_figure(width: float, height: float, *, layout: str | None = "constrained") -> Any:
    """A figure of ``width`` x ``height`` inches on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Any, path: Path) -> None:
    """Write ``figure`` as a PNG, atomically."""
    atomic_save_figure(figure, Path(path), dpi=DPI)


def curves_figure(logs: dict[str, list[dict[str, Any]]], titles: dict[str, str]) -> Any:
    """Five panels (:data:`CURVE_PANELS`), one line per model; ``logs`` maps a method to its epochs."""
    from matplotlib.ticker import MaxNLocator

    figure = new_figure(14.5, 3.4)
    axes = figure.subplots(1, len(CURVE_PANELS), squeeze=False)[0]
    last = max((e["epoch"] for epochs in logs.values() for e in epochs if isinstance(e.get("epoch"), int)), default=1)
    for axis, (key, title) in zip(axes, CURVE_PANELS):
        drawn = 0
        for method, epochs in logs.items():
            points = [(e["epoch"], e[key]) for e in epochs if isinstance(e.get(key), (int, float))]
            if key in ("distill", "distill_kl") and not any(value for _, value in points):
                continue  # a model trained without distillation: its term is 0 throughout
            if not points:
                continue
            scale = 100.0 if key == "train_acc" else 1.0
            axis.plot([p[0] for p in points], [scale * p[1] for p in points], marker="o", markersize=3,
                      linewidth=1.5, color=METHOD_COLOURS.get(method), label=titles.get(method, method))
            drawn += 1
        if not drawn:
            empty = {"distill": "no distillation in this run", "distill_kl": "no soft cross-entropy in this run"}
            axis.text(0.5, 0.5, empty.get(key, "no data"),
                      ha="center", va="center", transform=axis.transAxes, color="#777777")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("epoch", fontsize=9)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlim(0.7, last + 0.3)  # whole epochs, also for a run of one epoch
        axis.tick_params(labelsize=8)
        axis.ticklabel_format(axis="y", useOffset=False)  # 1.0987 rather than "1e-5 + 1.098"
        axis.grid(alpha=0.3)
        if key == "train_acc":
            axis.set_ylim(0, 100)
        values = [v for line in axis.lines for v in line.get_ydata() if v > 0]
        if key == "loss" and values and max(values) > 20 * min(values):
            axis.set_yscale("log")  # a distilled model's loss (CE + lambda x term) dwarfs the others
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=9)
    return figure


def per_class_figure(classes: Sequence[str], accuracies: dict[str, np.ndarray], titles: dict[str, str]) -> Any:
    """Per-class test accuracy on z of each model in ``accuracies`` (method -> ``(C,)``, NaN: no image).

    Up to :data:`MAX_LABELLED_CLASSES` classes: horizontal bars per class, one per model, with the class
    names. More: one bar per class of the last model minus the first (the student minus B), sorted.
    """
    if len(classes) <= MAX_LABELLED_CLASSES:
        return _labelled_bars(classes, accuracies, titles)
    return _sorted_differences(classes, accuracies, titles)


def _labelled_bars(classes: Sequence[str], accuracies: dict[str, np.ndarray], titles: dict[str, str]) -> Any:
    methods = list(accuracies)
    figure = new_figure(8.0, 1.4 + len(classes) * (0.16 * len(methods) + 0.12))
    axis = figure.subplots()
    positions = np.arange(len(classes), dtype=np.float64)[::-1]  # the first class on top
    bar = 0.8 / max(len(methods), 1)
    for k, method in enumerate(methods):
        values = 100 * np.asarray(accuracies[method], dtype=np.float64)
        offsets = positions + (len(methods) - 1 - 2 * k) * bar / 2
        axis.barh(offsets, np.nan_to_num(values), bar, color=METHOD_COLOURS.get(method),
                  label=titles.get(method, method))
        for y, value in zip(offsets, values):
            axis.text((0 if math.isnan(value) else value) + 1, y, "—" if math.isnan(value) else f"{value:.0f}",
                      va="center", fontsize=7, color="#444444")
    axis.set_yticks(positions, [_short(name) for name in classes], fontsize=8)
    axis.set_xlim(0, 108)
    axis.set_xlabel("test accuracy on z (%)", fontsize=9)
    axis.tick_params(axis="x", labelsize=8)
    axis.grid(axis="x", alpha=0.3)
    axis.set_title("per-class test accuracy on the z views", fontsize=10)
    figure.legend(loc="outside lower center", ncol=len(methods), fontsize=8, frameon=False)
    return figure


def _sorted_differences(classes: Sequence[str], accuracies: dict[str, np.ndarray], titles: dict[str, str]) -> Any:
    methods = list(accuracies)
    first, last = methods[0], methods[-1]
    if first == last:
        values, label = 100 * np.asarray(accuracies[last], dtype=np.float64), f"{titles.get(last, last)} (%)"
    else:
        values = 100 * (np.asarray(accuracies[last], dtype=np.float64) - np.asarray(accuracies[first], dtype=np.float64))
        label = f"{titles.get(last, last)} − {titles.get(first, first)} (points)"
    values = np.sort(values[np.isfinite(values)])[::-1]
    figure = new_figure(10.0, 3.6)
    axis = figure.subplots()
    colours = [METHOD_COLOURS.get(last, "#2ca02c") if v >= 0 else "#c44e52" for v in values]
    axis.bar(np.arange(len(values)), values, 1.0, color=colours)
    axis.axhline(0, color="#333333", linewidth=0.8)
    axis.set_xlim(-0.5, len(values) - 0.5)
    axis.set_xticks([])
    axis.set_xlabel(f"{len(values)} classes, sorted", fontsize=9)
    axis.set_ylabel(label, fontsize=9)
    axis.tick_params(axis="y", labelsize=8)
    axis.grid(axis="y", alpha=0.3)
    mean = float(values.mean()) if len(values) else math.nan
    axis.set_title(f"per-class test accuracy on z: {label}; mean {mean:+.1f}", fontsize=10)
    return figure


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def table_figure(table: dict[str, Any]) -> Any:
    """Table 1 (``table.json`` of ``cqdkit table``) as grouped bars: for each degradation, one bar per row
    (A/A, A/B, B/B, A→B/B, CQD/B, A+CQD/B) at its mean accuracy, with the standard deviation over seeds as
    an error bar. Rows without a value anywhere (e.g. A→B for different architectures) are left out."""
    degradations = list(table["degradations"])
    rows = [row for row in ROW_COLOURS if any(_finite_stats(table["table"][d].get(row)) for d in degradations)]
    width = 0.8 / max(len(rows), 1)
    figure = new_figure(1.9 * len(degradations) + 2.4, 4.0)
    axis = figure.subplots()
    for k, row in enumerate(rows):
        means, spreads, positions = [], [], []
        for i, degradation in enumerate(degradations):
            stats = _finite_stats(table["table"][degradation].get(row))
            if stats:
                positions.append(i + (k - (len(rows) - 1) / 2) * width)
                means.append(100 * stats["mean"])
                spreads.append(100 * stats["std"] if math.isfinite(stats["std"]) else 0.0)
        axis.bar(positions, means, width, yerr=spreads, capsize=2, label=row, color=ROW_COLOURS[row])
    axis.set_xticks(range(len(degradations)), [_short(d, 24) for d in degradations])
    axis.set_ylabel("test accuracy (%)")
    axis.set_ylim(0, 100)
    axis.grid(axis="y", alpha=0.3)
    seeds = len(table["seeds"])
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed"
    axis.set_title(f"{table.get('teacher', '?')} → {table.get('student', '?')} on {table.get('dataset', '?')}: {spread}",
                   fontsize=10)
    figure.legend(ncol=len(rows), fontsize=8, loc="outside lower center", frameon=False)
    return figure


def _finite_stats(stats: dict[str, float] | None) -> dict[str, float] | None:
    """A cell's statistics when its mean is a number (None for a missing row or a NaN mean)."""
    if not stats or not isinstance(stats.get("mean"), (int, float)) or not math.isfinite(stats["mean"]):
        return None
    return stats
