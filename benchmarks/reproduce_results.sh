#!/usr/bin/env bash
# Regenerates every number in docs/results.md on the embedded synthetic benchmark (CPU profile:
# convnet-s, 64 px, 8 epochs). About four hours on 2 CPU cores, most of it the tuning grid (the
# SRCNN training is about 20 minutes more; SKIP_SRCNN=1 reuses benchmarks/results/srcnn-synthetic.safetensors;
# SKIP_TUNE=1 reuses benchmarks/results/tune.json). Raw JSON goes to benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/results}
DEGRADATIONS=localization,lowres,edges,tps
RESULTS=benchmarks/results
mkdir -p "$RESULTS" docs/images
SECONDS=0
# Tables 1-4, section 3 and the privileged runs are the paper's loss, --loss softce (the CPU profile's default
# is softce+rkd, each term kept or dropped on validation); step 2b compares the terms.

# 1. T and lambda per degradation and distilled method (CQD and A+CQD each on its own), on the validation
#    split only: a quarter of each class's training images, 2 seeds, scored by calibrated validation NLL on
#    z, over the default grid (T in 1,2,4,10; lambda in 0,2,5,20,50,200,500,1000). One sweep, two trainings at
#    a time (--jobs 2, one CPU thread each: the scores are those of --jobs 1).
if [ "${SKIP_TUNE:-0}" != 1 ]; then
  cqdkit tune --loss softce --degrade "$DEGRADATIONS" --seeds 2 --val-fraction 0.25 --jobs 2 --quiet --out "$OUT/tune"
  cp "$OUT/tune/tune.json" "$RESULTS/tune.json"
  for figure in "$OUT/tune"/*.png; do cp "$figure" "docs/images/tune-$(basename "$figure")"; done
fi
echo "tune: ${SECONDS}s"

# 2. Table 1: every method and degradation, 3 seeds, last epoch; each distilled method's strength chosen on
#    validation per seed and degradation (the default, --lambda auto), float32 (--no-amp: the same numbers on
#    a CPU with bf16 hardware); then with the full grid's choice (tune.json) for comparison.
cqdkit table --loss softce --degrade "$DEGRADATIONS" --seeds 3 --no-amp --jobs 2 --quiet --out "$OUT/table1"
cp "$OUT/table1/table.json" "$RESULTS/table1.json"
cp "$OUT/table1/table.md" "$RESULTS/table1.md"
cqdkit report "$OUT/table1"   # the table's page; its figure (bars, error bars over seeds) is the docs' one
cp "$OUT/table1/report/table.png" docs/images/table1.png
cqdkit table --loss softce --degrade "$DEGRADATIONS" --seeds 3 --tuned "$RESULTS/tune.json" --jobs 2 --quiet \
  --out "$OUT/table1-tuned"
cp "$OUT/table1-tuned/table.json" "$RESULTS/table1-tuned.json"
cp "$OUT/table1-tuned/table.md" "$RESULTS/table1-tuned.md"
echo "table 1: ${SECONDS}s"

# 2b. Which distillation for which gap: ten losses on the four degradations and the privileged mask, 3 seeds,
#     each loss's weight (and temperature, layers) chosen on validation. Two trainings at a time.
LOSSES=softce,logit-l2,kl,fitnet,at,st,pkt,sp,rkd,crd
cqdkit compare --loss "$LOSSES" --degrade "$DEGRADATIONS" --seeds 3 --no-amp --jobs 2 --quiet --out "$OUT/compare"
cqdkit compare --loss "$LOSSES" --degrade privileged:channels=mask --no-crop --seeds 3 --no-amp --jobs 2 \
  --quiet --out "$OUT/compare-privileged"
cp "$OUT/compare/compare.json" "$RESULTS/compare.json"
cp "$OUT/compare-privileged/compare.json" "$RESULTS/compare-privileged.json"
cp "$OUT/compare/compare.png" docs/images/compare.png
python benchmarks/unlabeled_pairs.py --no-amp --out "$OUT/unlabeled" | tee "$RESULTS/unlabeled.md"
cp "$OUT/unlabeled/unlabeled.json" "$RESULTS/unlabeled.json"
echo "compare, unlabelled: ${SECONDS}s"

# 3. Table 2 analogue on localization: a bigger teacher (convnet-m) distilled into the small student.
for pair in "convnet-m convnet-s"; do
  set -- $pair
  cqdkit table --loss softce --degrade localization --teacher "$1" --student "$2" --seeds 3 --tuned "$RESULTS/tune.json" \
    --quiet --out "$OUT/table2-$1-$2"
  cp "$OUT/table2-$1-$2/table.json" "$RESULTS/table2-$1-$2.json"
done
echo "table 2: ${SECONDS}s"

# 4. Table 3: mixed-quality test sets, the paper's (clean + lowres) and three qualities (clean, lowres, tps).
cqdkit multires --loss softce --degrade lowres --quiet --out "$OUT/multires"
cqdkit multires --loss softce --degrade lowres,tps --quiet --out "$OUT/multires-3"
cp "$OUT/multires/table3.json" "$RESULTS/table3-lowres.json"
cp "$OUT/multires-3/table3.json" "$RESULTS/table3-lowres-tps.json"
echo "table 3: ${SECONDS}s"

# 5. Table 4: SRCNN upsampling instead of bicubic (x4: 16 px of a 64 px view, lowres size=56),
#    each distilled method with the T and lambda tuned for lowres.
SRCNN="$RESULTS/srcnn-synthetic.safetensors"
if [ "${SKIP_SRCNN:-0}" != 1 ]; then
  cqdkit sr-train --size 56 --image-size 64 --epochs 60 --quiet --out "$SRCNN"
fi
BICUBIC="lowres:size=56"
SR="lowres:size=56,upsample=srcnn,weights=$SRCNN"
python - "$RESULTS/tune.json" "$OUT/table4-tuned.json" "$BICUBIC" "$SR" <<'PY'
import json, sys
tune = json.load(open(sys.argv[1]))
for found in tune["methods"].values():  # both specs are lowres: they get lowres's values
    found.update({spec: found["lowres"] for spec in sys.argv[3:]})
json.dump(tune, open(sys.argv[2], "w"))
PY
cqdkit table --loss softce --degrade "$BICUBIC,$SR" --tuned "$OUT/table4-tuned.json" --seeds 3 --quiet --out "$OUT/table4"
cp "$OUT/table4/table.json" "$RESULTS/table4.json"
echo "table 4: ${SECONDS}s"

# 6. Section 3 on localization: saliency, tau and confusions of B vs A+CQD.
cqdkit run --loss softce --degrade localization --quiet --out "$OUT/explain-localization"
cqdkit explain "$OUT/explain-localization" --quiet
cp "$OUT/explain-localization/explain/report.json" "$RESULTS/explain-localization.json"
for figure in saliency tau confusions; do
  cp "$OUT/explain-localization/explain/$figure.png" "docs/images/explain-$figure.png"
done
echo "explain: ${SECONDS}s"

# 7. Privileged information: a teacher that also sees the object mask (cqdkit-privileged plugin),
#    distilled into an RGB student, against the RGB student alone; whole images (no crop).
#    Needs the plugin: pip install -e plugins/cqdkit-privileged
cqdkit table --loss softce --degrade privileged:channels=mask --no-crop --teacher convnet-m --student convnet-s --seeds 3 \
  --quiet --out "$OUT/privileged"
cp "$OUT/privileged/table.json" "$RESULTS/privileged.json"
cqdkit table --loss softce --degrade privileged:channels=mask --no-crop --teacher convnet-m --student convnet-s --seeds 2 \
  --image-size 96 --quiet --out "$OUT/privileged-96"
cp "$OUT/privileged-96/table.json" "$RESULTS/privileged-96px.json"
echo "privileged: ${SECONDS}s"
