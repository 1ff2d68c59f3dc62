#!/usr/bin/env bash
# Reproduce the bundled weights (LungNoduleCAD/Resources/Models/README.md says how each was made):
#   training/scripts/reproduce_bundled_weights.sh DATA_ROOT RUN_DIR
# Stage 1, DATA_ROOT/phantoms-120: 120 full-size phantoms, seed 1000, 10 subsets (generated when
# missing). The segmentation UNet (task defaults), its own candidates mined over the set, the
# nodule classifier on candidates.csv plus those, the malignancy network from scratch
# (`lungcad-train all` runs the same sequence in one go); exported to RUN_DIR/models. On a 2-core
# CPU, float32: about 37 + 47 + 37 + 11 min.
# Stage 2 (real-CT robustness), DATA_ROOT/phantoms-v2-60: 60 full-size phantoms of realism
# version 2 (0.6-5 mm slices, 30 % contrast-enhanced, fissures, denser peripheral vessels), seed
# 1200, 6 subsets. The stage-1 UNet and nodule classifier fine-tuned there with domain
# randomisation (kernel, noise, HU calibration, thick slices), the nodule classifier on the new
# UNet's mined candidates, then calibrated (Platt scaling on the validation series); the stage-1
# malignancy network is calibrated the same way on this set's validation nodules. Exported to
# RUN_DIR/models, the bundled set. On a 2-core CPU: about 5 + 15 + 12 + 25 + 2 min.
# For a quick dry run on small phantoms, SPACING="2 2 2.5", TRAIN_ARGS="--epochs 1
# --epoch-length 16" and CASES2=6 (all unset for the real thing). STAGE1_MODELS=DIR skips stage 1
# and starts stage 2 from the three weights files in DIR (e.g. the bundled stage-1 set).
set -euo pipefail
root=${1:?usage: $0 DATA_ROOT RUN_DIR}
run=${2:?usage: $0 DATA_ROOT RUN_DIR}
python=${PYTHON:-python3}
spacing=(${SPACING:-0.75 0.75 1.25})
read -r -a extra <<< "${TRAIN_ARGS:-}"
train() { "$python" -m lungcad_training.cli "$@" --spacing "${spacing[@]}" --quiet; }
if [ -n "${STAGE1_MODELS:-}" ]; then
    mkdir -p "$run/models"
    cp "$STAGE1_MODELS"/{segmentation,nodule,malignancy}.{safetensors,json} "$run/models/"
else
    data="$root/phantoms-120"
    if [ ! -d "$data" ]; then
        "$python" -m lungcad.cli phantom "$data" --cases 120 --seed 1000 --size full --subsets 10 \
            --workers 2 --quiet
    fi
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
fi

# Stage 2: version-2 phantoms, fine-tuning with domain randomisation, calibration.
data2="$root/phantoms-v2-60"
if [ ! -d "$data2" ]; then
    "$python" -m lungcad.cli phantom "$data2" --cases "${CASES2:-60}" --seed 1200 --size full \
        --subsets 6 --workers 2 --realism-version 2 --quiet
fi
run2="$run/stage2"
finetune=(--val-stride 5 --domain-randomization --lr 0.0003 --epoch-length 4096)
train segmentation --data "$data2" --out "$run2" --init "$run/models/segmentation.safetensors" \
    --epochs 6 --workers 1 "${finetune[@]}" "${extra[@]}"
train mine --data "$data2" --cache "$run2/cache" --weights "$run2/segmentation/best.pt" \
    --out "$run2/mined_candidates.csv" --precision float32
train nodule --data "$data2" --out "$run2" --init "$run/models/nodule.safetensors" \
    --extra-candidates "$run2/mined_candidates.csv" --epochs 6 --workers 0 "${finetune[@]}" \
    "${extra[@]}"
for task in segmentation nodule; do
    "$python" -m lungcad_training.cli export --checkpoint "$run2/$task/best.pt" \
        --task "$task" --out "$run2/models/$task.safetensors" --overwrite
done
cp "$run2/models/segmentation.safetensors" "$run2/models/segmentation.json" "$run/models/"
calibrate() { "$python" -m lungcad_training.cli calibrate "$@" --spacing "${spacing[@]}" --overwrite; }
calibrate --task nodule --weights "$run2/models/nodule.safetensors" --data "$data2" \
    --cache "$run2/cache" --mined "$run2/mined_candidates.csv" --val-stride 5 \
    --out "$run/models/nodule.safetensors"
calibrate --task malignancy --weights "$run/models/malignancy.safetensors" --data "$data2" \
    --cache "$run2/cache" --val-stride 5 --out "$run2/models/malignancy.safetensors"
cp "$run2/models/malignancy.safetensors" "$run2/models/malignancy.json" "$run/models/"
