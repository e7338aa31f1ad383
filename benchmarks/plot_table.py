"""Plot a ``cqdkit table`` result: accuracy by method for each degradation, with error bars.

    python benchmarks/plot_table.py benchmarks/results/table1.json docs/images/table1.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROWS = ["A/A", "A/B", "B/B", "A→B/B", "CQD/B", "A+CQD/B"]
COLOURS = ["#4c72b0", "#c44e52", "#8c8c8c", "#dd8452", "#55a868", "#2ca02c"]


def plot(table: dict, out: Path) -> None:
    degradations = table["degradations"]
    rows = [row for row in ROWS if any(table["table"][d].get(row) for d in degradations)]
    width = 0.8 / len(rows)
    figure, axes = plt.subplots(figsize=(1.9 * len(degradations) + 2, 3.6))
    for k, row in enumerate(rows):
        means, spreads, positions = [], [], []
        for i, degradation in enumerate(degradations):
            stats = table["table"][degradation].get(row)
            if stats:
                positions.append(i + (k - (len(rows) - 1) / 2) * width)
                means.append(100 * stats["mean"])
                spreads.append(100 * stats["std"])
        axes.bar(positions, means, width, yerr=spreads, capsize=2, label=row, color=COLOURS[ROWS.index(row)])
    axes.set_xticks(range(len(degradations)), degradations)
    axes.set_ylabel("test accuracy (%)")
    axes.set_ylim(0, 100)
    seeds = len(table["seeds"])
    axes.set_title(f"{table['teacher']} → {table['student']} on {table['dataset']}: mean ± std over {seeds} seeds")
    axes.legend(ncol=len(rows), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=130)


if __name__ == "__main__":
    plot(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
