"""Run LungNoduleCAD over CTs without the GUI, as ``lungcad detect`` does, inside Slicer.

    Slicer --no-main-window --python-script LungNoduleCAD/Scripts/batch.py \
        --input data/subset0 --output results [--shard 0/4] [--device cuda] [--overwrite]

Cases done before with the same input and settings are skipped; ``--shard I/N`` runs every N-th
case. Also runs with plain Python where the ``slicer-core`` package is installed
(``python LungNoduleCAD/Scripts/batch.py --input ... --output ...``). See
LungNoduleCADLib/batch.py for what is written.
"""

import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1]  # holds LungNoduleCADLib and lungcad
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from LungNoduleCADLib.batch import main  # noqa: E402
from LungNoduleCADLib.mrml import in_slicer_application  # noqa: E402

if __name__ == "__main__":
    status = main(sys.argv[1:])
    if in_slicer_application():
        import slicer

        slicer.util.exit(status)
    else:
        sys.exit(status)
