"""Choose the CPU profile's T and lambda from a (merged) ``tune.json``: the evidence behind ``CPU_PROFILE``.

    python benchmarks/choose_cpu_profile.py benchmarks/results/tune.json

One T and lambda must serve every degradation and both distilled methods (``cqdkit run`` uses the
profile's values unless told otherwise). Among the cells searched for every degradation, the rule takes
the cell that beats lambda = 0 beyond the seeds' spread ("qualifies", as in ``cqdkit tune``) for the most
(method, degradation) pairs; ties go to the larger mean gain in calibrated validation NLL over lambda = 0,
averaged over all pairs. Only validation scores are read; the test split plays no part.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any


def rank_cells(tune: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (T, lambda > 0) searched for all degradations and methods, best first, with its evidence."""
    pairs = [(method, degradation, found) for method, per_degradation in tune["methods"].items()
             for degradation, found in per_degradation.items()]
    cells_per_pair = [{(c["temperature"], c["lam"]): c for c in found["grid"] if c["lam"] > 0} for _, _, found in pairs]
    common = set.intersection(*(set(cells) for cells in cells_per_pair))
    ranked = []
    for key in common:
        cells = [cells[key] for cells in cells_per_pair]
        ranked.append({
            "temperature": key[0], "lam": key[1],
            "qualifies": sum(c["qualifies"] for c in cells),
            "mean_gain": statistics.fmean(c["gain"] for c in cells),
            "per_pair": {f"{method}/{degradation}": {"gain": round(c["gain"], 4), "qualifies": c["qualifies"],
                                                     "val_z": round(c["val_z"], 4)}
                         for (method, degradation, _), c in zip(pairs, cells)},
        })
    return sorted(ranked, key=lambda cell: (-cell["qualifies"], -cell["mean_gain"]))


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    ranked = rank_cells(json.loads(Path(sys.argv[1]).read_text()))
    print(f"{'T':>4s} {'lambda':>7s} {'qualifies':>10s} {'mean NLL gain':>14s}")
    for cell in ranked:
        print(f"{cell['temperature']:4g} {cell['lam']:7g} {cell['qualifies']:10d} {cell['mean_gain']:14.4f}")
    best = ranked[0]
    print(f"\nchosen: T = {best['temperature']:g}, lambda = {best['lam']:g}")
    for pair, evidence in best["per_pair"].items():
        print(f"  {pair:22s} gain {evidence['gain']:+.4f}  qualifies {evidence['qualifies']}  val acc {evidence['val_z']:.3f}")


if __name__ == "__main__":
    main()
