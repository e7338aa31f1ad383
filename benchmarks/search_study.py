"""How well a short training predicts which distillation strength ends best (the study behind the default
search of ``--lambda auto``, docs/results.md).

    python benchmarks/search_study.py [--degrade tps,localization] [--seed 0] [--out runs/search-study]

For one data seed per degradation, every cell of T in {2, 4, 10} x lambda in {5, 50, 500} and lambda = 0 (B)
trains with two student seeds: on the run's schedule, scored on the validation split (calibrated NLL of the z
views, accuracy) after 2, 4 and 8 epochs; and with compressed schedules of 2 and 4 epochs (the learning rate
decaying over those). Writes every score to ``search-study.json`` and prints, per scoring, the cells ranked.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from cqdkit.plugin.params import split_specs
from cqdkit.train.config import RunConfig
from cqdkit.train.experiment import Experiment

CELLS = [(None, None), *itertools.product((2.0, 4.0, 10.0), (5.0, 50.0, 500.0))]
SCORE = "val_z_calibrated_nll"


def study(degradation: str, seed: int, out: Path) -> list[dict]:
    root = Experiment(RunConfig(degrade=degradation, seed=seed, method="cqd", amp=False), out / degradation)
    root.train_or_load("a")
    rows = []
    for student_seed, (temperature, lam) in itertools.product((seed, seed + 1_000_003), CELLS):
        name = "lambda0" if temperature is None else f"T{temperature:g}-l{lam:g}"
        method = "b" if temperature is None else "cqd"
        values = dict(student_seed=student_seed, loss="softce", temperature=temperature or 1.0, lam=lam or 0.0)
        row = {"cell": name, "student_seed": student_seed}
        stopped = root.sibling(root.directory / "full" / name / f"s{student_seed}", **values)
        for epochs in (2, 4, 8):
            trained = stopped.train_or_load(method, epochs=epochs if epochs < 8 else None)
            row[f"nll{epochs}"] = stopped.score(trained, "val")[SCORE]
        for epochs in (2, 4):
            compressed = root.sibling(root.directory / f"compressed-{epochs}" / name / f"s{student_seed}",
                                      epochs=epochs, **values)
            row[f"compressed{epochs}"] = compressed.evaluate(method, "val")[SCORE]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degrade", default="tps,localization")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/search-study"))
    args = parser.parse_args()
    results = {degradation: study(degradation, args.seed, args.out) for degradation in split_specs(args.degrade)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search-study.json").write_text(json.dumps(results, indent=1))
    for degradation, rows in results.items():
        for key in ("nll2", "nll4", "compressed2", "compressed4", "nll8"):
            for student_seed in sorted({row["student_seed"] for row in rows}):
                ranked = sorted((row for row in rows if row["student_seed"] == student_seed), key=lambda r: r[key])
                print(degradation, key, student_seed, [row["cell"] for row in ranked])


if __name__ == "__main__":
    main()
