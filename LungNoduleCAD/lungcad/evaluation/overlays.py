"""Per-case pictures of the evaluation at the results' thresholds.

One PNG per scan: a zoomed axial slice (radiological orientation, lung window) through each
marked item: true positives (kept findings on an annotated nodule) in green, false positives
(kept findings on nothing annotated) in red, missed nodules (no kept finding) in orange. Every
item whose sphere the slice cuts is circled on every panel.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from lungcad.atomic import write_bytes_atomic
from lungcad.ct import CT
from lungcad.ctio import read_ct
from lungcad.evaluation.evaluate import CaseEvaluation
from lungcad.evaluation.matching import Status
from lungcad.geometry import voxel_to_world, world_to_voxel
from lungcad.show import LUNG_WINDOW, canonical_image, draw_axial, orthogonal_views

log = logging.getLogger(__name__)

COLORS = {"TP": "lime", "FP": "red", "missed": "orange"}
DEFAULT_FP_DIAMETER_MM = 8.0
MAX_PANELS = 16
ZOOM_MM = 80.0


@dataclass(frozen=True)
class Item:
    kind: str  # "TP", "FP" or "missed"
    center_xyz: tuple[float, float, float]
    diameter_mm: float
    label: str

    @property
    def color(self) -> str:
        return COLORS[self.kind]


def overlay_items(ce: CaseEvaluation) -> list[Item]:
    """True positives (at the annotation), false positives (at the finding), missed nodules.

    A missed nodule that a candidate below the nodule threshold hit says so in its label.
    """
    items: list[Item] = []
    op = ce.operating
    for k, prob in enumerate(op.nodule_prob.tolist()):
        center = tuple(float(v) for v in ce.nodule_xyz[k])
        diameter = float(ce.nodule_diameter_mm[k])
        if math.isnan(prob):
            label = f"missed {diameter:.0f} mm"
            best = float(ce.froc.nodule_prob[k])  # best candidate on it, kept or not
            if not math.isnan(best):
                label += f" (filtered, p={best:.2f})"
            items.append(Item("missed", center, diameter, label))
        else:
            items.append(Item("TP", center, diameter, f"TP p={prob:.2f}"))
    kept_idx = np.flatnonzero(ce.kept)
    case = ce.case
    fps = [
        (float(case.probability[i]), i)
        for i, s in zip(kept_idx, op.status, strict=True)
        if s == Status.FALSE_POSITIVE
    ]
    for prob, i in sorted(fps, reverse=True):
        diameter = DEFAULT_FP_DIAMETER_MM
        if case.diameter_mm is not None and case.diameter_mm[i] > 0:
            diameter = float(case.diameter_mm[i])
        center = tuple(float(v) for v in case.xyz[i])
        items.append(Item("FP", center, diameter, f"FP p={prob:.2f}"))
    order = {"TP": 0, "missed": 1, "FP": 2}
    return sorted(items, key=lambda it: order[it.kind])


def _inside(ct: CT, xyz: tuple[float, float, float]) -> bool:
    irc = np.rint(world_to_voxel(np.asarray(xyz), ct.geometry))
    return bool(np.all(irc >= 0) and np.all(irc < np.asarray(ct.geometry.shape_irc)))


def render_case_overlay(ct: CT, items: list[Item], out_path: Path, title: str) -> Path:
    """Write one PNG with a zoomed axial panel per item (at most MAX_PANELS)."""
    shown = [it for it in items if _inside(ct, it.center_xyz)]
    if len(shown) < len(items):
        log.warning("%s: %d marked items lie outside the CT", title, len(items) - len(shown))
    more = max(0, len(shown) - MAX_PANELS)
    shown = shown[:MAX_PANELS]
    canonical = canonical_image(ct)
    level, width = LUNG_WINDOW
    n = max(1, len(shown))
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.0 * ncols, 4.2 * nrows + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    if not shown:
        center = _volume_center(ct)
        views = orthogonal_views(ct, center, canonical)
        _panel(axes[0], views, None, items, level, width, "nothing to mark", zoom=False)
    for ax, item in zip(axes, shown, strict=False):
        views = orthogonal_views(ct, item.center_xyz, canonical)
        _panel(ax, views, item, items, level, width, item.label, zoom=True)
    for ax in axes[len(shown) or 1 :]:
        ax.set_axis_off()
    counts = {k: sum(it.kind == k for it in items) for k in COLORS}
    fig.suptitle(
        f"{title}\ntrue positives {counts['TP']} (green), false positives {counts['FP']} (red), "
        f"missed {counts['missed']} (orange)" + (f"; {more} more not shown" if more else ""),
        fontsize=10,
    )
    png = io.BytesIO()
    try:
        fig.savefig(png, format="png", dpi=100)
    finally:
        fig.clear()
    return write_bytes_atomic(out_path, png.getvalue())


def _volume_center(ct: CT) -> tuple[float, float, float]:
    mid = (np.asarray(ct.geometry.shape_irc) - 1) / 2.0
    return tuple(float(v) for v in voxel_to_world(np.rint(mid), ct.geometry))


def _panel(ax, views, item: Item | None, items, level, width, label: str, zoom: bool) -> None:
    ax.set_facecolor("black")
    draw_axial(ax, views, (level, width))
    plane = views.slice_xyz[2]
    half = views.spacing_xyz[2] / 2.0
    if zoom and item is not None:
        x, y = item.center_xyz[0], item.center_xyz[1]
        ax.set_xlim(x - ZOOM_MM / 2, x + ZOOM_MM / 2)
        ax.set_ylim(y + ZOOM_MM / 2, y - ZOOM_MM / 2)  # anterior at the top
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    for it in items:
        r = it.diameter_mm / 2.0
        if abs(it.center_xyz[2] - plane) > r + half:
            continue
        lw = 2.0 if it is item else 1.2
        ax.add_patch(
            Circle(
                it.center_xyz[:2], max(r, 1.5) * 1.3, fill=False, edgecolor=it.color, linewidth=lw
            )
        )
        if it is not item:
            ax.annotate(
                it.label,
                xy=(it.center_xyz[0] + r, it.center_xyz[1]),
                fontsize=7,
                color=it.color,
                path_effects=[patheffects.withStroke(linewidth=2, foreground="black")],
            )
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    color = item.color if item is not None else "black"
    ax.set_title(f"{label}  (z = {plane:.1f} mm)", fontsize=9, color=color if zoom else "black")
    ax.set_xlabel("R ← x (mm) → L", fontsize=8)
    ax.set_ylabel("A ← y (mm) → P", fontsize=8)
    ax.tick_params(labelsize=7)


def write_case_overlay(ce: CaseEvaluation, ct_path: Path, out_path: Path) -> Path:
    ct = read_ct(ct_path)
    items = overlay_items(ce)
    t = ce.thresholds
    title = (
        f"{ce.case.series_uid}   ·   findings = p_nodule >= {t.nodule:g}   "
        f"({int(ce.kept.sum())} of {len(ce.case)} candidates)"
    )
    return render_case_overlay(ct, items, out_path, title)
