"""What unlabelled pairs give: on the embedded benchmark, keep a fraction of the training labels and train CQD
with and without the other training images as unlabelled pairs (the distillation terms only learn from them).

    python benchmarks/unlabeled_pairs.py [--degrade tps,localization] [--fraction 0.2] [--seeds 3] [--out DIR]

For every degradation and seed, A and B train on the labelled images only (shared by both students); CQD's
strength is chosen on the validation split as by default. Prints a Markdown table of test accuracy on z (mean ±
sd over the seeds) and writes ``unlabeled.json`` with every seed's numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from cqdkit.plugin.params import split_specs
from cqdkit.train.config import RunConfig
from cqdkit.train.experiment import Experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degrade", default="tps,localization")
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/unlabeled"))
    parser.add_argument("--no-amp", action="store_true", help="float32 on a CPU with bf16 hardware")
    args = parser.parse_args()
    rows: dict[str, dict[str, list[float]]] = {}
    for degradation in split_specs(args.degrade):
        scores = rows.setdefault(degradation, {"B": [], "CQD, labelled pairs only": [], "CQD + unlabelled pairs": [],
                                               "A/A": [], "unlabelled": []})
        for seed in range(args.seeds):
            base = RunConfig(degrade=degradation, seed=seed, method="cqd", label_fraction=args.fraction,
                             amp=not args.no_amp)
            folder = args.out / degradation / f"seed-{seed}"
            with_pairs = Experiment(base, folder / "with", teacher_root=folder)
            without = Experiment(dataclasses.replace(base, distill_unlabeled=False), folder / "without",
                                 teacher_root=folder)
            scores["A/A"].append(with_pairs.evaluate("a")["test_x"])
            scores["B"].append(without.evaluate("b")["test_z"])
            scores["CQD, labelled pairs only"].append(without.evaluate("cqd")["test_z"])
            scores["CQD + unlabelled pairs"].append(with_pairs.evaluate("cqd")["test_z"])
            scores["unlabelled"].append(len(with_pairs.distill_set) - len(with_pairs.train_set))
            print(degradation, seed, {name: values[-1] for name, values in scores.items()}, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "unlabeled.json").write_text(json.dumps({"fraction": args.fraction, "rows": rows}, indent=2))
    print(f"\n{100 * args.fraction:.0f}% of the training labels kept; test accuracy on z (%), mean ± sd over "
          f"{args.seeds} seeds\n")
    names = ["A/A", "B", "CQD, labelled pairs only", "CQD + unlabelled pairs"]
    print("| degradation | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
    for degradation, scores in rows.items():
        cells = [f"{100 * statistics.fmean(scores[n]):.1f} ± {100 * statistics.stdev(scores[n]):.1f}"
                 if len(scores[n]) > 1 else f"{100 * scores[n][0]:.1f}" for n in names]
        print(f"| {degradation} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
