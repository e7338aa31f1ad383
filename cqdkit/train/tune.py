"""``cqdkit tune``: choose T and lambda on the validation split (never the test split).

For each degradation, model A is trained once; then the student method is trained for every (T, lambda)
of the grid and scored by its accuracy on the validation z views. The best cell wins (ties go to the
smaller lambda, then the smaller T). The paper searched T in {1, 2, 5, 10} the same way.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..files import atomic_write_json
from ..reporting import Reporter
from .config import RunConfig
from .distributed import world
from .table import slug

TEMPERATURES: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0)
LAMBDAS: tuple[float, ...] = (1.0, 5.0, 20.0, 50.0, 200.0)


def run_tune(
    base: RunConfig,
    degradations: list[str],
    out: Path,
    *,
    temperatures: tuple[float, ...] = TEMPERATURES,
    lambdas: tuple[float, ...] = LAMBDAS,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Grid-search T and lambda per degradation; writes ``out/tune.json`` and returns it."""
    from .experiment import Experiment

    out = Path(out)
    result: dict[str, Any] = {"split": "val", "degradations": {}}
    for degradation in degradations:
        grid = []
        for temperature in temperatures:
            for lam in lambdas:
                config = dataclasses.replace(base, degrade=degradation, temperature=temperature, lam=lam)
                experiment = Experiment(
                    config,
                    out / slug(degradation) / f"T{temperature:g}-lambda{lam:g}",
                    teacher_root=out / "teachers",
                    reporter=reporter,
                )
                method = experiment.config.method
                scores = experiment.evaluate(method, split="val")
                grid.append({"temperature": temperature, "lam": lam, "method": method, "val_z": scores["val_z"],
                             "val_x": scores["val_x"]})
        best = max(grid, key=lambda cell: (cell["val_z"], -cell["lam"], -cell["temperature"]))
        result["degradations"][degradation] = {
            "chosen": {"temperature": best["temperature"], "lam": best["lam"]},
            "val_z": best["val_z"],
            "grid": grid,
        }
    if world()[0] == 0:
        atomic_write_json(out / "tune.json", result)
    return result


def chosen_values(tune_result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{degradation: {"temperature": T, "lam": lambda}}`` from a ``tune.json`` payload."""
    return {d: dict(v["chosen"]) for d, v in tune_result["degradations"].items()}
