#!/usr/bin/env bash
# Reproduce the bundled weights: the documented phantom training set, then `lungcad-train all`.
#   training/scripts/reproduce_bundled_weights.sh DATA_DIR RUN_DIR [extra lungcad-train all flags]
# DATA_DIR is generated (40 full-size phantoms, seed 1000, 4 subsets) when it does not exist yet.
# The bundled weights came from: ... DATA_DIR RUN_DIR --epochs 15 --epoch-length 8192 --workers 6
# on one CUDA GPU (bf16 autocast); the exported weights land in RUN_DIR/models.
set -euo pipefail
data=${1:?usage: $0 DATA_DIR RUN_DIR [lungcad-train all flags]}
run=${2:?usage: $0 DATA_DIR RUN_DIR [lungcad-train all flags]}
shift 2
python=${PYTHON:-python3}
if [ ! -d "$data" ]; then
    "$python" -m lungcad.cli phantom "$data" --cases 40 --seed 1000 --size full --subsets 4 --quiet
fi
"$python" -m lungcad_training.cli all --data "$data" --out "$run" --val-stride 5 "$@"
