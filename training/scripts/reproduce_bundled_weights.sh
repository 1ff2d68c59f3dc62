#!/usr/bin/env bash
# Reproduce the bundled weights: the documented phantom training set, then `lungcad-train all`.
#   training/scripts/reproduce_bundled_weights.sh DATA_DIR RUN_DIR [extra lungcad-train all flags]
# DATA_DIR is generated (120 full-size phantoms, seed 1000, 10 subsets) when it does not exist yet.
# `all` uses the task defaults, which are the bundled recipe (training/lungcad_training/config.py);
# the exported weights land in RUN_DIR/models. The bundled weights came from exactly this on a
# 2-core CPU (LungNoduleCAD/Resources/Models/README.md gives the time and the metrics).
set -euo pipefail
data=${1:?usage: $0 DATA_DIR RUN_DIR [lungcad-train all flags]}
run=${2:?usage: $0 DATA_DIR RUN_DIR [lungcad-train all flags]}
shift 2
python=${PYTHON:-python3}
if [ ! -d "$data" ]; then
    "$python" -m lungcad.cli phantom "$data" --cases 120 --seed 1000 --size full --subsets 10 \
        --workers 2 --quiet
fi
"$python" -m lungcad_training.cli all --data "$data" --out "$run" --val-stride 5 "$@"
