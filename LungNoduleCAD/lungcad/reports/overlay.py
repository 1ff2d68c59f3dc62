"""overlay.png: a picture of the findings a reader can check at a glance.

One panel per finding: the axial slice through its centre in lung window, radiological
orientation (patient right on the image's left, anterior at the top, via
:func:`lungcad.show.canonical_image`), zoomed around it, with the outline of its mask in its
malignancy band's colour, its number, and its diameter and probabilities in the panel title. The
summary line and the case are the figure title. With no findings the picture is the middle axial
slice with the summary, so a case without findings still has a picture that says so.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lungcad.atomic import write_bytes_atomic
from lungcad.ct import CT
from lungcad.geometry import voxel_to_world
from lungcad.io import on_grid
from lungcad.pipeline.findings import BAND_COLORS_RGB, Finding
from lungcad.reports.common import ResultLike, check_writable
from lungcad.safe_names import checked_series_uid
from lungcad.show import LUNG_WINDOW, canonical_image, draw_axial, orthogonal_views

__all__ = ["MAX_PANELS", "mask_on_axial_slice", "write_overlay_png"]

MAX_PANELS = 12
COLUMNS = 3
PANEL_IN = 4.2
DPI = 100
_UPSAMPLE = 4
_STROKE = [patheffects.withStroke(linewidth=2.5, foreground="black")]


def mask_on_axial_slice(finding: Finding, ct: CT, canonical: sitk.Image, z_mm: float) -> np.ndarray:
    """The finding's mask on the canonical grid's axial slice at ``z_mm`` (rows = y, cols = x).

    The mask's box is resampled (nearest neighbour) onto that one slice, so any direction matrix
    (flipped, permuted, oblique) lands where the CT's voxels land in the picture.
    """
    m = finding.mask
    image = on_grid(
        sitk.GetImageFromArray(m.array.astype(np.uint8)),
        ct.geometry,
        origin_xyz=voxel_to_world(m.start_irc, ct.geometry),
    )
    nx, ny, _ = canonical.GetSize()
    ox, oy, _ = canonical.GetOrigin()
    sx, sy, sz = canonical.GetSpacing()
    plane = sitk.Resample(
        image,
        [nx, ny, 1],
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        (ox, oy, z_mm),
        (sx, sy, sz),
        np.eye(3).ravel().tolist(),
        0,
        sitk.sitkUInt8,
    )
    return sitk.GetArrayFromImage(plane)[0].astype(bool)


def _outline(
    ax: Axes,
    mask: np.ndarray,
    origin_xy: tuple[float, float],
    spacing_xy: tuple[float, float],
    color: tuple[float, float, float],
) -> None:
    """Draw the mask's outline along voxel edges (contour of a nearest-neighbour upsampling)."""
    rows, cols = np.nonzero(mask)
    r0, r1 = max(rows.min() - 1, 0), rows.max() + 2
    c0, c1 = max(cols.min() - 1, 0), cols.max() + 2
    up = _UPSAMPLE
    crop = np.kron(mask[r0:r1, c0:c1].astype(float), np.ones((up, up)))
    # sub-voxel sample centres: voxel c covers [c - 0.5, c + 0.5) in index units
    offsets = (np.arange(up) + 0.5) / up - 0.5
    cols_idx = (np.arange(c0, c0 + crop.shape[1] // up)[:, None] + offsets).ravel()
    rows_idx = (np.arange(r0, r0 + crop.shape[0] // up)[:, None] + offsets).ravel()
    xs = origin_xy[0] + spacing_xy[0] * cols_idx
    ys = origin_xy[1] + spacing_xy[1] * rows_idx
    ax.contour(xs, ys, crop, levels=[0.5], colors=[color], linewidths=1.6)


def _panel_title(f: Finding, threshold: float) -> str:
    return (
        f"N{f.number}   {f.diameter_mm:.1f} mm   {f.band(threshold).value}\n"
        f"p(nodule) {f.p_nodule:.2f}   p(malignant) {f.p_malignant:.2f}"
    )


def draw_finding(ax: Axes, ct: CT, canonical: sitk.Image, f: Finding, threshold: float) -> None:
    """One finding's key image (axial view, outline and numbers): the overlay's and the report's."""
    views = orthogonal_views(ct, f.center_lps, canonical)
    x, y, _ = f.center_lps
    z_plane = views.slice_xyz[2]
    draw_axial(ax, views, LUNG_WINDOW)
    color = BAND_COLORS_RGB[f.band(threshold)]
    mask = mask_on_axial_slice(f, ct, canonical, z_plane)
    if mask.any():
        ox, oy, _ = canonical.GetOrigin()
        sx, sy, _ = canonical.GetSpacing()
        _outline(ax, mask, (ox, oy), (sx, sy), color)
    half = max(30.0, 2.0 * f.diameter_mm)
    ax.set_xlim(x - half, x + half)
    ax.set_ylim(y + half, y - half)  # anterior (smaller y) at the top
    ax.annotate(
        f"N{f.number}",
        xy=(x + 0.6 * f.diameter_mm, y - 0.6 * f.diameter_mm),
        xytext=(6, 6),
        textcoords="offset points",
        color=color,
        fontsize=12,
        fontweight="bold",
        path_effects=_STROKE,
    )
    ax.set_title(_panel_title(f, threshold), fontsize=9, color="black")
    ax.set_xlabel(f"R ← x (mm) → L      axial z = {z_plane:.1f} mm", fontsize=8)
    ax.set_ylabel("P ← y (mm) → A", fontsize=8)
    ax.tick_params(labelsize=7)


def _draw_empty(ax: Axes, ct: CT, canonical: sitk.Image, text: str) -> None:
    middle = np.asarray(ct.geometry.shape_irc) // 2
    views = orthogonal_views(ct, voxel_to_world(middle, ct.geometry), canonical)
    draw_axial(ax, views, LUNG_WINDOW)
    ax.text(
        0.5, 0.05, text, transform=ax.transAxes, ha="center", va="bottom", color="white",
        fontsize=10, path_effects=_STROKE,
    )  # fmt: skip
    ax.set_title(f"axial z = {views.slice_xyz[2]:.1f} mm (no findings)", fontsize=9)
    ax.tick_params(labelsize=7)


def write_overlay_png(
    result: ResultLike,
    ct: CT,
    path: Path | str,
    *,
    title: str | None = None,
    overwrite: bool = False,
    canonical: sitk.Image | None = None,
) -> Path:
    """Write overlay.png atomically; refuses an existing file unless ``overwrite``."""
    path = check_writable(Path(path), overwrite)
    canonical = canonical if canonical is not None else canonical_image(ct)
    shown = result.findings[:MAX_PANELS]
    n = max(len(shown), 1)
    cols = min(n, COLUMNS)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(PANEL_IN * cols, PANEL_IN * rows + 0.9), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    threshold = result.thresholds.malignancy
    if shown:
        for ax, f in zip(axes, shown, strict=False):
            draw_finding(ax, ct, canonical, f, threshold)
    else:
        _draw_empty(axes[0], ct, canonical, result.summary.text)
    for ax in axes[n:]:
        ax.set_axis_off()
    more = len(result.findings) - len(shown)
    head = title or checked_series_uid(result.series_uid)[0] or "(no valid series UID)"
    lines = [head, result.summary.text]
    if more > 0:
        lines.append(f"(showing the first {len(shown)} of {len(result.findings)} findings)")
    fig.suptitle("\n".join(lines), fontsize=10)
    png = io.BytesIO()
    try:
        fig.savefig(png, format="png", dpi=DPI)
    finally:
        fig.clear()
    return write_bytes_atomic(path, png.getvalue())
