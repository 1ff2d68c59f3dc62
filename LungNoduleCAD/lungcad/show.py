"""Pictures a person can look at: orthogonal slices through a point of a CT, plus a zoomed crop.

The engine works in (index, row, col) arrays whose axes may point anywhere in the patient, so
showing ``ct.hu[k]`` as an image can be mirrored or sideways. Here the volume is first reoriented to
a canonical LPS-aligned grid (index axes increase toward patient Left, Posterior, Superior), then
each view is laid out in radiological convention:

- axial: anterior at the top, patient right on the image's left (viewed from the feet);
- coronal: superior at the top, patient right on the image's left (viewed from the front);
- sagittal: superior at the top, anterior on the image's left.

Images are drawn with their extent in millimetres, so anisotropic voxels keep true proportions, and
crosshairs and marker circles are placed in patient LPS millimetres directly.
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import SimpleITK as sitk
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from lungcad.atomic import write_bytes_atomic
from lungcad.ct import CT
from lungcad.geometry import voxel_to_world, world_to_voxel
from lungcad.io import on_grid

__all__ = [
    "Marker",
    "OrthogonalViews",
    "canonical_image",
    "orthogonal_views",
    "parse_point",
    "render_views",
]

log = logging.getLogger(__name__)

FIGSIZE_IN = (16.0, 4.5)  # 1600 x 450 px at DPI
DPI = 100
_AIR_HU = -1000

# (left, right, bottom, top) in mm, as imshow's ``extent`` takes it with origin="upper".
Extent = tuple[float, float, float, float]


@dataclass(frozen=True)
class Marker:
    """A circle to draw around a finding (e.g. green true positive, red false positive)."""

    center_xyz: tuple[float, float, float]
    diameter_mm: float
    label: str = ""
    color: str = "lime"

    def __post_init__(self) -> None:
        if len(self.center_xyz) != 3 or not all(math.isfinite(v) for v in self.center_xyz):
            raise ValueError(
                f"marker centre must be 3 finite LPS coordinates, got {self.center_xyz}"
            )
        if not (math.isfinite(self.diameter_mm) and self.diameter_mm > 0):
            raise ValueError(f"marker diameter must be positive, got {self.diameter_mm}")


@dataclass(frozen=True)
class OrthogonalViews:
    """The three slices through a point, already in display orientation (row 0 = image top).

    ``*_extent`` is (left, right, bottom, top) in LPS mm for ``imshow(origin="upper")``; the axial
    view's vertical axis is y (anterior, smaller y, at the top), the others' is z (superior on top).
    ``slice_xyz`` is where the three planes actually pass: the centre of the canonical voxel nearest
    to the requested point. ``spacing_xyz`` is the canonical grid's voxel size along L, P, S.
    """

    axial: np.ndarray
    coronal: np.ndarray
    sagittal: np.ndarray
    axial_extent: Extent
    coronal_extent: Extent
    sagittal_extent: Extent
    slice_xyz: tuple[float, float, float]
    spacing_xyz: tuple[float, float, float]


def parse_point(text: str) -> tuple[float, float, float]:
    """Parse ``"X,Y,Z"`` (LPS mm, as the CLI's ``--at`` takes it) into three finite floats.

    Surrounding whitespace and one pair of brackets or parentheses are tolerated, so a point copied
    from a log line such as ``(-12.5, 30.0, -100.2)`` works too.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a point as text 'X,Y,Z', got {type(text).__name__}")
    body = text.strip()
    if len(body) >= 2 and (body[0], body[-1]) in {("(", ")"), ("[", "]")}:
        body = body[1:-1]
    parts = [p.strip() for p in body.split(",")]
    if len(parts) != 3 or any(not p for p in parts):
        raise ValueError(
            f"expected a point as 'X,Y,Z' (three comma-separated mm values), got {text!r}"
        )
    values = []
    for name, part in zip("XYZ", parts, strict=True):
        # float() accepts "nan", "inf" and "1_0"; a coordinate is a plain decimal number.
        if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", part):
            raise ValueError(f"{name} coordinate {part!r} in {text!r} is not a number")
        values.append(float(part))
    return (values[0], values[1], values[2])


def _volume_extent_xyz(ct: CT) -> tuple[np.ndarray, np.ndarray]:
    """LPS bounding box (min, max corners, mm) of the voxel centres, for error messages."""
    n = np.asarray(ct.geometry.shape_irc) - 1
    corners = np.array([[i, r, c] for i in (0, n[0]) for r in (0, n[1]) for c in (0, n[2])])
    world = voxel_to_world(corners, ct.geometry)
    return world.min(axis=0), world.max(axis=0)


def _check_inside(ct: CT, at_xyz: Sequence[float]) -> tuple[int, int, int]:
    """The voxel (index, row, col) nearest to the point; ValueError if that is outside the CT."""
    point = np.asarray(at_xyz, dtype=np.float64)
    if point.shape != (3,) or not np.all(np.isfinite(point)):
        raise ValueError(f"point must be 3 finite LPS coordinates (mm), got {at_xyz!r}")
    irc = np.rint(world_to_voxel(point, ct.geometry)).astype(np.int64)
    if np.any(irc < 0) or np.any(irc >= np.asarray(ct.geometry.shape_irc)):
        lo, hi = _volume_extent_xyz(ct)
        raise ValueError(
            f"point LPS ({point[0]:.1f}, {point[1]:.1f}, {point[2]:.1f}) mm is outside the volume "
            f"{ct.series_uid or ''}, which spans x {lo[0]:.1f}..{hi[0]:.1f}, "
            f"y {lo[1]:.1f}..{hi[1]:.1f}, z {lo[2]:.1f}..{hi[2]:.1f} mm (LPS)"
        )
    return (int(irc[0]), int(irc[1]), int(irc[2]))


def canonical_image(ct: CT) -> sitk.Image:
    """The CT on a grid whose index axes increase toward L, P, S, with identity direction.

    DICOMOrient only permutes and flips axes (no interpolation). An oblique scan keeps a residual
    rotation after that, so it is resampled (linear) onto an axis-aligned grid of the same spacing.
    """
    image = on_grid(sitk.GetImageFromArray(ct.hu), ct.geometry)
    # ITK 5.x: the letters name where each axis points *toward*; "LPS" gives identity direction.
    image = sitk.DICOMOrient(image, "LPS")
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    if np.allclose(direction, np.eye(3), atol=1e-4):
        return image
    log.info(
        "oblique volume (direction %s): resampling to an LPS-aligned grid for display",
        np.round(direction, 3).tolist(),
    )
    spacing = np.asarray(image.GetSpacing())
    size = np.asarray(image.GetSize())
    corners = np.array(
        [[i, j, k] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)],
        dtype=np.float64,
    )
    world = np.array([image.TransformContinuousIndexToPhysicalPoint(c.tolist()) for c in corners])
    lo, hi = world.min(axis=0), world.max(axis=0)
    new_size = [int(v) for v in np.floor((hi - lo) / spacing + 1e-6).astype(int) + 1]
    return sitk.Resample(
        image,
        new_size,
        sitk.Transform(),
        sitk.sitkLinear,
        lo.tolist(),
        spacing.tolist(),
        np.eye(3).ravel().tolist(),
        float(_AIR_HU),
        sitk.sitkInt16,
    )


def orthogonal_views(
    ct: CT, at_xyz: Sequence[float], canonical: sitk.Image | None = None
) -> OrthogonalViews:
    """Axial, coronal and sagittal slices through an LPS point, in radiological display orientation.

    Exposed apart from :func:`render_views` so the orientation can be checked on arrays.
    ``canonical`` is :func:`canonical_image` of ``ct``, when pictures of several points reuse it.
    """
    _check_inside(ct, at_xyz)
    image = canonical if canonical is not None else canonical_image(ct)
    vol = sitk.GetArrayViewFromImage(image)  # (z, y, x): increasing toward S, P, L
    ox, oy, oz = image.GetOrigin()
    sx, sy, sz = image.GetSpacing()
    nz, ny, nx = vol.shape
    ijk = np.rint((np.asarray(at_xyz, dtype=np.float64) - (ox, oy, oz)) / (sx, sy, sz))
    # An oblique volume's resampled box differs slightly from the original; stay on the grid.
    i, j, k = (int(np.clip(v, 0, n - 1)) for v, n in zip(ijk, (nx, ny, nz), strict=True))

    x_lo, x_hi = ox - sx / 2, ox + (nx - 0.5) * sx
    y_lo, y_hi = oy - sy / 2, oy + (ny - 0.5) * sy
    z_lo, z_hi = oz - sz / 2, oz + (nz - 0.5) * sz
    return OrthogonalViews(
        # row 0 = most anterior (top), col 0 = most right (image left)
        axial=np.array(vol[k, :, :]),
        # row 0 = most superior (top), col 0 = most right (image left)
        coronal=np.array(vol[::-1, j, :]),
        # row 0 = most superior (top), col 0 = most anterior (image left)
        sagittal=np.array(vol[::-1, :, i]),
        axial_extent=(x_lo, x_hi, y_hi, y_lo),
        coronal_extent=(x_lo, x_hi, z_lo, z_hi),
        sagittal_extent=(y_lo, y_hi, z_lo, z_hi),
        slice_xyz=(ox + i * sx, oy + j * sy, oz + k * sz),
        spacing_xyz=(sx, sy, sz),
    )


#: (level, width) in HU: the lung window every picture of the project uses by default.
LUNG_WINDOW: tuple[float, float] = (-600.0, 1500.0)


def draw_axial(ax: Axes, views: OrthogonalViews, window: tuple[float, float] = LUNG_WINDOW) -> None:
    """The axial view in patient mm (radiological orientation), grey levels from ``window``."""
    level, width = window
    ax.imshow(
        views.axial,
        cmap="gray",
        vmin=level - width / 2,
        vmax=level + width / 2,
        extent=views.axial_extent,
        origin="upper",
        interpolation="nearest",
    )


def _crosshair(ax: Axes, h: float, v: float, gap: float, color: str = "yellow") -> None:
    """Thin crosshair through (h, v) with a gap at the centre, so the finding stays visible."""
    x0, x1 = sorted(ax.get_xlim())
    y0, y1 = sorted(ax.get_ylim())
    style = {"color": color, "linewidth": 0.8, "alpha": 0.8}
    ax.plot([x0, h - gap], [v, v], **style)
    ax.plot([h + gap, x1], [v, v], **style)
    ax.plot([h, h], [y0, v - gap], **style)
    ax.plot([h, h], [v + gap, y1], **style)


def _draw_markers(
    ax: Axes,
    markers: Sequence[Marker],
    h_axis: int,
    v_axis: int,
    plane_axis: int,
    plane_mm: float,
    half_voxel_mm: float,
) -> None:
    """Circles for the markers whose sphere the displayed plane passes through.

    The plane is a slice of finite thickness, so a half voxel is added to the radius: a 3 mm
    nodule between two 2.5 mm slice centres is still shown on the nearer one.
    """
    for m in markers:
        radius = m.diameter_mm / 2
        if abs(m.center_xyz[plane_axis] - plane_mm) > radius + half_voxel_mm:
            continue
        center = (m.center_xyz[h_axis], m.center_xyz[v_axis])
        ax.add_patch(Circle(center, radius, fill=False, edgecolor=m.color, linewidth=1.5))
        if m.label:
            ax.annotate(
                m.label,
                xy=(center[0] + radius * 0.71, center[1]),
                xytext=(4, 4),
                textcoords="offset points",
                color=m.color,
                fontsize=8,
                fontweight="bold",
                path_effects=[patheffects.withStroke(linewidth=2, foreground="black")],
            )


def _scale_bar(ax: Axes, length_mm: float) -> None:
    """A white bar of known length in the lower-left corner of a zoomed view."""
    x0, x1 = ax.get_xlim()
    y_bottom, y_top = ax.get_ylim()  # data value shown at the bottom / top of the axes
    start = x0 + 0.06 * (x1 - x0)
    y = y_bottom + 0.08 * (y_top - y_bottom)
    ax.plot([start, start + length_mm], [y, y], color="white", linewidth=2)
    ax.text(
        start + length_mm / 2,
        y + 0.03 * (y_top - y_bottom),
        f"{length_mm:g} mm",
        color="white",
        fontsize=8,
        ha="center",
        va="bottom",
    )


class _Panel(NamedTuple):
    """One view: image, extent, captions, and the LPS axes running across, up and through it."""

    image: np.ndarray
    extent: Extent
    title: str
    xlabel: str
    ylabel: str
    h_axis: int  # LPS axis (0 x, 1 y, 2 z) running horizontally
    v_axis: int  # ... vertically
    plane_axis: int  # ... through the slice
    plane_mm: float  # where the slice is along plane_axis
    thickness_mm: float  # voxel size along plane_axis


def render_views(
    ct: CT,
    at_xyz: tuple[float, float, float],
    out_path: Path,
    *,
    crop_mm: float = 60.0,
    window: tuple[float, float] = LUNG_WINDOW,
    title: str | None = None,
    markers: Sequence[Marker] = (),
    canonical: sitk.Image | None = None,
) -> Path:
    """Write one 1600x450 PNG: axial, coronal and sagittal slices and an axial zoom at a point.

    ``at_xyz`` is LPS mm; ``window`` is (level, width) in HU, lung window by default. Each view has
    a crosshair at the point and the circles of ``markers`` whose sphere the view's plane cuts.
    The file is written atomically: a half-written PNG never replaces an older one. Pass
    ``canonical`` (:func:`canonical_image` of ``ct``) to skip reorienting for each of many points.
    """
    level, width = (float(v) for v in window)
    if not width > 0:
        raise ValueError(f"window width must be positive, got {width}")
    if not (math.isfinite(crop_mm) and crop_mm > 0):
        raise ValueError(f"crop_mm must be positive, got {crop_mm}")
    irc = _check_inside(ct, at_xyz)
    views = orthogonal_views(ct, at_xyz, canonical)
    x, y, z = (float(v) for v in at_xyz)
    hu = int(ct.hu[irc])
    vmin, vmax = level - width / 2, level + width / 2
    sx, sy, sz = views.spacing_xyz
    px, py, pz = views.slice_xyz
    # Keep the crosshair off a marked finding at the point: the gap clears its circle.
    finding_gap = max(
        (
            1.25 * m.diameter_mm / 2
            for m in markers
            if math.dist(m.center_xyz, (x, y, z)) <= m.diameter_mm / 2
        ),
        default=0.0,
    )

    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 4)
    lr, ap, si, pa = (
        "R  ←  x (mm)  →  L",
        "P  ←  y (mm)  →  A",
        "I  ←  z (mm)  →  S",
        "A  ←  y (mm)  →  P",
    )
    ax_t, cor_t, sag_t = (
        f"Axial  z = {pz:.1f} mm",
        f"Coronal  y = {py:.1f} mm",
        f"Sagittal  x = {px:.1f} mm",
    )
    zoom_t = f"Axial zoom {crop_mm:g} mm  (W {width:g} L {level:g})"
    axial = _Panel(views.axial, views.axial_extent, ax_t, lr, ap, 0, 1, 2, pz, sz)
    panels = [
        axial,
        _Panel(views.coronal, views.coronal_extent, cor_t, lr, si, 0, 2, 1, py, sy),
        _Panel(views.sagittal, views.sagittal_extent, sag_t, pa, si, 1, 2, 0, px, sx),
        axial._replace(title=zoom_t),
    ]
    point = (x, y, z)
    for n, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
        image, extent, label, xlabel, ylabel, ha, va, plane, plane_mm, thick = panel
        h, v = point[ha], point[va]
        zoom = n == 3
        ax.set_facecolor("black")
        ax.imshow(
            image,
            cmap="gray",
            vmin=vmin,
            vmax=vmax,
            extent=extent,
            origin="upper",
            interpolation="nearest" if zoom else "antialiased",
        )
        if zoom:
            ax.set_xlim(h - crop_mm / 2, h + crop_mm / 2)
            ax.set_ylim(v + crop_mm / 2, v - crop_mm / 2)  # anterior (smaller y) at the top
            _scale_bar(ax, 10.0 if crop_mm >= 20 else 1.0)
        xlim, ylim = ax.get_xlim(), ax.get_ylim()
        gap = (0.1 if zoom else 0.05) * min(abs(xlim[1] - xlim[0]), abs(ylim[1] - ylim[0]))
        _crosshair(ax, h, v, max(gap, finding_gap))
        _draw_markers(ax, markers, ha, va, plane, plane_mm, thick / 2)
        ax.set_xlim(xlim)  # circles and lines must not widen the view
        ax.set_ylim(ylim)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(labelsize=8)

    head = ct.series_uid or "(no series UID)"
    if title:
        head = f"{title}   ·   {head}"
    fig.suptitle(
        f"{head}\nLPS ({x:.1f}, {y:.1f}, {z:.1f}) mm   ·   voxel (index, row, col) = "
        f"({irc[0]}, {irc[1]}, {irc[2]})   ·   {hu} HU",
        fontsize=11,
    )

    out_path = Path(out_path)
    png = io.BytesIO()
    try:
        fig.savefig(png, format="png", dpi=DPI)
    finally:
        fig.clear()
    write_bytes_atomic(out_path, png.getvalue())
    log.info("wrote %s (views at LPS %.1f, %.1f, %.1f mm)", out_path, x, y, z)
    return out_path
