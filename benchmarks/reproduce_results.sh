#!/usr/bin/env bash
# Regenerates every number in docs/results.md on the embedded synthetic benchmark (CPU profile:
# convnet-s, 64 px, 8 epochs). About 20 minutes on 2 CPU cores. Raw JSON goes to benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/results}
DEGRADATIONS=localization,lowres,edges,tps
RESULTS=benchmarks/results
mkdir -p "$RESULTS" docs/images
SECONDS=0

# 1. T and lambda per degradation, on the validation split only.
cqdkit tune --degrade "$DEGRADATIONS" --temperatures 1,10 --lambdas 2,20 --quiet --out "$OUT/tune"
cp "$OUT/tune/tune.json" "$RESULTS/tune.json"
echo "tune: ${SECONDS}s"

# 2. Table 1: every method and degradation, 3 seeds, the tuned T and lambda, last epoch.
cqdkit table --degrade "$DEGRADATIONS" --seeds 3 --tuned "$RESULTS/tune.json" --quiet --out "$OUT/table1"
cp "$OUT/table1/table.json" "$RESULTS/table1.json"
cp "$OUT/table1/table.md" "$RESULTS/table1.md"
python benchmarks/plot_table.py "$RESULTS/table1.json" docs/images/table1.png
echo "table 1: ${SECONDS}s"

# 3. Table 2 analogue on localization: a bigger teacher (convnet-m) distilled into the small student.
for pair in "convnet-m convnet-s"; do
  set -- $pair
  cqdkit table --degrade localization --teacher "$1" --student "$2" --seeds 3 --tuned "$RESULTS/tune.json" \
    --quiet --out "$OUT/table2-$1-$2"
  cp "$OUT/table2-$1-$2/table.json" "$RESULTS/table2-$1-$2.json"
done
echo "table 2: ${SECONDS}s"
