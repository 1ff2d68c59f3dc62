"""Draw the 128x128 extension/module icon: two lungs on a CT-dark disc, one nodule in red.

python LungNoduleCAD/Scripts/make_icon.py   # writes both icon files
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Circle, Ellipse, FancyBboxPatch

ROOT = Path(__file__).resolve().parents[2]
TARGETS = (
    ROOT / "Resources" / "Icons" / "LungNoduleCAD.png",
    ROOT / "LungNoduleCAD" / "Resources" / "Icons" / "LungNoduleCAD.png",
)
SUSPICIOUS = (0.90, 0.15, 0.15)  # lungcad.pipeline.BAND_COLORS_RGB[SUSPICIOUS]
BENIGN = (0.20, 0.75, 0.30)


def draw(path: Path) -> None:
    fig = plt.figure(figsize=(1, 1), dpi=128)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 128)
    ax.set_ylim(0, 128)
    ax.axis("off")
    ax.add_patch(
        FancyBboxPatch(
            (4, 4),
            120,
            120,
            boxstyle="round,pad=0,rounding_size=22",
            facecolor=(0.13, 0.16, 0.2),
            edgecolor="none",
        )
    )
    ax.add_patch(Ellipse((64, 62), 112, 92, facecolor=(0.55, 0.55, 0.55), edgecolor="none"))
    for x, angle in ((40, 8), (88, -8)):
        ax.add_patch(Ellipse((x, 62), 40, 74, angle=angle, facecolor=(0.08, 0.08, 0.1)))
    ax.add_patch(Ellipse((64, 56), 14, 40, facecolor=(0.75, 0.75, 0.75), edgecolor="none"))
    ax.add_patch(Circle((88, 78), 9, facecolor=SUSPICIOUS, edgecolor="white", linewidth=1.5))
    ax.add_patch(Circle((38, 46), 5, facecolor=BENIGN, edgecolor="white", linewidth=1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=128, transparent=True)
    plt.close(fig)


if __name__ == "__main__":
    for target in TARGETS:
        draw(target)
        print(target)
    sys.exit(0)
