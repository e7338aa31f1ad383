"""Trainer throughput of two checkouts of cqdkit, measured in one run: ``benchmarks/trainer.py`` of each, in
turn, several times, each reporting its loops' images/s and their ratio to the bare PyTorch loop measured in
the same process (which cancels what another process does to the cores).

    python benchmarks/trainer_versions.py OLD_CHECKOUT [NEW_CHECKOUT] [--repeats 3] [-- trainer.py options]

Prints, per loop, the median over the repeats of each checkout's ratio to its bare loop, and new / old.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def run(checkout: Path, options: list[str]) -> dict[str, float]:
    """One run of ``checkout``'s trainer benchmark: ``{loop: ratio to the bare loop}``."""
    environment = {**os.environ, "PYTHONPATH": str(checkout)}
    output = subprocess.run([sys.executable, str(checkout / "benchmarks" / "trainer.py"), *options],
                            env=environment, capture_output=True, text=True, check=True).stdout
    ratios = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 3 and not line.startswith("#") and words[-1].replace(".", "", 1).isdigit():
            ratios[" ".join(words[:-2])] = float(words[-1])
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path, nargs="?", default=HERE)
    parser.add_argument("--repeats", type=int, default=3)
    args, options = parser.parse_known_args()
    options = [option for option in options if option != "--"]
    results: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    for _ in range(args.repeats):
        for name, checkout in (("old", args.old), ("new", args.new)):
            for loop, ratio in run(checkout, options).items():
                results[name].setdefault(loop, []).append(ratio)
    print(f"# trainer.py of {args.old} (old) and {args.new} (new), {args.repeats} runs each, alternating; ratio to "
          "the bare loop of the same process, median")
    print(f"{'loop':<16} {'old':>7} {'new':>7} {'new/old':>8}")
    for loop in results["new"]:
        new = statistics.median(results["new"][loop])
        old = statistics.median(results["old"][loop]) if loop in results["old"] else float("nan")
        print(f"{loop:<16} {old:>7.3f} {new:>7.3f} {new / old:>8.3f}")


if __name__ == "__main__":
    main()
