"""Benchmark: how long a threshold-slider move takes to update the scene (200 candidates).

    python LungNoduleCAD/Scripts/bench_thresholds.py [--candidates 200] [--steps 41]

Builds a detection result with N candidates on a full-size CT grid (no network: the candidate
cache is synthetic), shows it in a real MRML scene (slicer-core, or Slicer's own scene with
``Slicer --no-main-window --python-script``), then drags each slider through its range and prints
the time of every update (re-filter + segments, points and table), median and worst.
"""

import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1]
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from LungNoduleCADLib.benchmark import main  # noqa: E402
from LungNoduleCADLib.mrml import in_slicer_application  # noqa: E402

if __name__ == "__main__":
    status = main(sys.argv[1:])
    if in_slicer_application():
        import slicer

        slicer.util.exit(status)
    else:
        sys.exit(status)
