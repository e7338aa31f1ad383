"""Merge the ``tune.json`` of several ``cqdkit tune`` runs (each over its own degradations, possibly its own
grid) into one file that ``cqdkit table --tuned`` reads.

    python benchmarks/merge_tune.py OUT.json runs/results/tune-a/tune.json runs/results/tune-b/tune.json ...

Each degradation keeps its own grid (every cell of ``methods.<method>.<degradation>.grid`` says its T and
lambda); the top-level ``grids`` records which T and lambda each degradation was searched over. A
degradation found in two inputs is an error: the merge never picks between two searches.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def merge(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """One tune payload from several; the split, score, seeds and paper values must agree."""
    merged: dict[str, Any] = {key: payloads[0][key] for key in ("split", "score", "seeds", "folds", "paper")}
    merged["grids"], merged["methods"] = {}, {}
    for payload in payloads:
        for key in ("split", "score", "seeds", "folds", "paper"):
            if payload[key] != merged[key]:
                raise SystemExit(f"cannot merge: {key} is {payload[key]!r} in one file and {merged[key]!r} in another")
        for method, found in payload["methods"].items():
            for degradation, choice in found.items():
                if degradation in merged["methods"].setdefault(method, {}):
                    raise SystemExit(f"cannot merge: {degradation} ({method}) was tuned in two of the files")
                merged["methods"][method][degradation] = choice
                merged["grids"][degradation] = {"temperatures": payload["temperatures"], "lambdas": payload["lambdas"]}
    return merged


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    payloads = [json.loads(Path(name).read_text()) for name in sys.argv[2:]]
    Path(sys.argv[1]).write_text(json.dumps(merge(payloads), indent=2) + "\n")


if __name__ == "__main__":
    main()
