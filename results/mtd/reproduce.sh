#!/usr/bin/env bash
# Reproduces results/mtd/ from a local copy of Magnetic Tile Defect (never committed: licence).
# Usage: results/mtd/reproduce.sh /path/to/Magnetic-Tile-Defect [RUN]
# The copy: the `Magnetic-Tile-Defect/` folder of github.com/Charmve/Surface-Defect-Detection.
set -euo pipefail
SRC=${1:?path to Magnetic-Tile-Defect}
RUN=${2:-runs/mtd}
DATA=data/mtd
PY=${PY:-.venv/bin/python}
[ -d "$DATA" ] || $PY -m train data import mtd "$SRC" "$DATA"
$PY -m train data check "$DATA" --defect-types keep || true   # 4 image-level MT_Uneven images
$PY -m train run --data "$DATA" --out "$RUN" --preset cpu --defect-types keep --no-locations \
    ${TRAIN_FLAGS:-}
$PY -m pyinspect evaluate --model "$RUN/student.onnx" --data "$DATA" --split test --threshold argmax \
    --json > results/mtd/test-default.json
rm -f results/mtd/calibration.png   # the published plot is regenerated for this model
$PY -m pyinspect calibrate --model "$RUN/student.onnx" --data "$DATA" --split val --target-tpr 0.97 \
    --plot results/mtd/calibration.png
$PY -m pyinspect evaluate --model "$RUN/student.onnx" --data "$DATA" --split test \
    --json > results/mtd/test-calibrated.json
$PY -m pyinspect evaluate --model "$RUN/student.onnx" --data "$DATA" --split val \
    --json > results/mtd/val-calibrated.json
cp "$RUN/run.json" "$RUN/curves.png" results/mtd/   # settings, timings, class counts; training curves
