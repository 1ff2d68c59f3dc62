#!/usr/bin/env bash
# Reproduce the bundled weights (LungNoduleCAD/Resources/Models/README.md says where each came from):
#   training/scripts/reproduce_bundled_weights.sh DATA_ROOT RUN_DIR
# DATA_ROOT/phantoms-120: 120 full-size phantoms, seed 1000, 10 subsets -> segmentation, malignancy
# DATA_ROOT/phantoms-40:  the first 40 of the same cases (seed 1000, 4 subsets) -> nodule classifier
# Both sets are generated when missing. The segmentation and malignancy runs use the task defaults
# (training/lungcad_training/config.py); the nodule classifier is the earlier run's recipe. The
# three exported models land in RUN_DIR/models. On a 2-core CPU: about 40 + 3 min for segmentation
# and malignancy; the nodule run took 36 s on an H100 and is about 100x slower on such a CPU.
set -euo pipefail
root=${1:?usage: $0 DATA_ROOT RUN_DIR}
run=${2:?usage: $0 DATA_ROOT RUN_DIR}
python=${PYTHON:-python3}
phantoms() {  # folder cases subsets
    if [ ! -d "$1" ]; then
        "$python" -m lungcad.cli phantom "$1" --cases "$2" --seed 1000 --size full --subsets "$3" \
            --workers 2 --quiet
    fi
}
phantoms "$root/phantoms-120" 120 10
phantoms "$root/phantoms-40" 40 4
train() { "$python" -m lungcad_training.cli "$@" --val-stride 5 --quiet; }
train segmentation --data "$root/phantoms-120" --out "$run/main"
train malignancy --data "$root/phantoms-120" --out "$run/main"
train nodule --data "$root/phantoms-40" --out "$run/nodule-40" --epochs 10 --epoch-length 4096
for task in segmentation malignancy; do
    "$python" -m lungcad_training.cli export --checkpoint "$run/main/$task/best.pt" \
        --task "$task" --out "$run/models/$task.safetensors" --overwrite
done
"$python" -m lungcad_training.cli export --checkpoint "$run/nodule-40/nodule/best.pt" \
    --task nodule --out "$run/models/nodule.safetensors" --overwrite
