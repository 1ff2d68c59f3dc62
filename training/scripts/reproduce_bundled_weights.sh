#!/usr/bin/env bash
# Reproduce the bundled weights (LungNoduleCAD/Resources/Models/README.md says how each was made):
#   training/scripts/reproduce_bundled_weights.sh DATA_ROOT RUN_DIR
# DATA_ROOT/phantoms-120: 120 full-size phantoms, seed 1000, 10 subsets (generated when missing).
# The steps are the ones the bundled weights were made with, one command each: the segmentation
# UNet (task defaults), its own candidates mined over the set, the nodule classifier on
# candidates.csv plus those, the malignancy network from scratch. `lungcad-train all` runs the
# same sequence in one go. The exported models land in RUN_DIR/models. On a 2-core CPU, float32:
# about 37 + 47 + 37 + 11 min. For a quick dry run on small phantoms, SPACING="2 2 2.5" and
# TRAIN_ARGS="--epochs 1 --epoch-length 16" (both unset for the real thing).
set -euo pipefail
root=${1:?usage: $0 DATA_ROOT RUN_DIR}
run=${2:?usage: $0 DATA_ROOT RUN_DIR}
python=${PYTHON:-python3}
data="$root/phantoms-120"
if [ ! -d "$data" ]; then
    "$python" -m lungcad.cli phantom "$data" --cases 120 --seed 1000 --size full --subsets 10 \
        --workers 2 --quiet
fi
spacing=(${SPACING:-0.75 0.75 1.25})
read -r -a extra <<< "${TRAIN_ARGS:-}"
train() { "$python" -m lungcad_training.cli "$@" --spacing "${spacing[@]}" --quiet; }
train segmentation --data "$data" --out "$run" --val-stride 5 "${extra[@]}"
train mine --data "$data" --cache "$run/cache" --weights "$run/segmentation/best.pt" \
    --out "$run/mined_candidates.csv" --precision float32
train nodule --data "$data" --out "$run" --val-stride 5 \
    --extra-candidates "$run/mined_candidates.csv" "${extra[@]}"
train malignancy --data "$data" --out "$run" --val-stride 5 --workers 0 "${extra[@]}"
for task in segmentation nodule malignancy; do
    "$python" -m lungcad_training.cli export --checkpoint "$run/$task/best.pt" \
        --task "$task" --out "$run/models/$task.safetensors" --overwrite
done
