"""How much faster a tune grid runs with --jobs 2 than with --jobs 1 on this machine, that the scores agree, and
what --prune chooses on the same grid.

The sweeps run here, one after the other, in fresh folders (nothing reused): the same grid of 12 trainings of
the CPU profile (convnet-s, 64 px, 8 epochs; tps; 2 seeds x (A, B, 4 cells of T and lambda)), one CPU thread per
training in all; then (--engine ray) on a local Ray, and with --prune and --jobs 2. Writes
benchmarks/results/sweep.json.

    python benchmarks/sweep_speedup.py [--engine ray] [--out runs/sweep-speedup]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

from cqdkit.reporting import Reporter
from cqdkit.sweep import SweepSettings
from cqdkit.train.config import RunConfig
from cqdkit.train.tune import run_tune

GRID = dict(methods=("cqd",), seeds=(0, 1), temperatures=(4.0, 10.0), lambdas=(0.0, 5.0, 50.0))


def scores(result: dict) -> dict:
    return {f"{degradation}/{cell['temperature']}/{cell['lam']}": cell["scores"]
            for degradation, found in result["methods"]["cqd"].items() for cell in found["grid"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/sweep-speedup")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="also time the grid on a local Ray (2 CPUs)")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    os.environ.setdefault("CQDKIT_CACHE", str(out / "cache"))
    base = RunConfig(degrade="tps", device="cpu", amp=False)
    runs = [("jobs 1", SweepSettings(jobs=1), False), ("jobs 2", SweepSettings(jobs=2), False)]
    if args.engine == "ray":
        runs.append(("ray", SweepSettings(engine="ray"), False))
    runs.append(("jobs 2 --prune", SweepSettings(jobs=2), True))
    # the synthetic images and pairs are generated once, before any timing
    run_tune(RunConfig(degrade="tps", device="cpu", amp=False, epochs=1), ["tps"], out / "warm-up", methods=("cqd",),
             seeds=(0,), temperatures=(4.0,), lambdas=(0.0, 5.0), reporter=Reporter.silent())
    timings, results = {}, {}
    for label, settings, prune in runs:
        began = time.perf_counter()
        results[label] = run_tune(base, ["tps"], out / label.replace(" ", "-"), **GRID, sweep=settings, prune=prune,
                                  reporter=Reporter.default())
        timings[label] = time.perf_counter() - began
        print(f"{label}: {timings[label]:.1f} s")
    trainings = len(list((out / "jobs-1" / "trainings").glob("*.json")))
    reference = scores(results["jobs 1"])
    report = {
        "grid": {key: list(value) for key, value in GRID.items()}, "trainings": trainings,
        "seconds": timings, "ratio_to_jobs_1": {label: timings[label] / timings["jobs 1"] for label in timings},
        "identical_scores": {label: scores(result) == reference for label, result in results.items()
                             if "prune" not in label},
        "chosen": {label: result["methods"]["cqd"]["tps"]["chosen"] for label, result in results.items()},
        "prune_rungs": results["jobs 2 --prune"]["rungs"],
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
    }
    print(json.dumps(report, indent=2))
    target = Path(__file__).parent / "results" / "sweep.json"
    target.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
