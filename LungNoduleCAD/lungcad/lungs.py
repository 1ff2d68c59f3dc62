"""Find the lungs with classical image processing (threshold, components, fill), no network.

Used to compare the phantoms' lungs with real ones, and to restrict the segmentation network to
the slices and box that contain lung.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

from lungcad.ct import CT, Geometry
from lungcad.geometry import world_to_voxel

AIR_THRESHOLD_HU = -400.0
MIN_LUNG_ML = 5.0  # smaller air pockets (bowel gas, oesophagus) are not lung


def find_lungs(ct: CT, threshold_hu: float = AIR_THRESHOLD_HU) -> np.ndarray:
    """Boolean lung mask (vessels inside included) in the CT's (index, row, col) order.

    Air below ``threshold_hu`` that does not touch the in-plane border of its slice (the air
    around the patient does) and forms components of at least MIN_LUNG_ML is lung; holes in
    each axial slice (vessels, nodules) are filled, then a closing takes in vessels at the edge.
    """
    air = ct.hu < threshold_hu
    outside = np.zeros_like(air)
    for k in range(air.shape[0]):
        labels, border = _border_components(air[k])
        outside[k] = np.isin(labels, border)
    inner_air = air & ~outside
    labels, n = ndimage.label(inner_air)
    if n == 0:
        return inner_air
    sizes = ndimage.sum_labels(inner_air, labels, index=np.arange(1, n + 1))
    min_voxels = MIN_LUNG_ML * 1000.0 / ct.geometry.voxel_volume_mm3
    keep = np.flatnonzero(sizes >= min_voxels) + 1
    lungs = np.isin(labels, keep)
    for k in range(lungs.shape[0]):
        if lungs[k].any():
            lungs[k] = ndimage.binary_fill_holes(lungs[k])
    return lungs


@dataclass(frozen=True)
class LungStatistics:
    volume_ml: float
    parenchyma_mean_hu: float  # lung voxels below -500 HU
    dense_fraction: (
        float  # share of lung voxels at or above -500 HU (vessels, airway walls, nodules)
    )


def lung_statistics(ct: CT, lungs: np.ndarray | None = None) -> LungStatistics:
    """Volume, parenchyma density and the share of dense structures (mostly vessels)."""
    mask = find_lungs(ct) if lungs is None else lungs
    values = ct.hu[mask]
    if values.size == 0:
        return LungStatistics(0.0, float("nan"), float("nan"))
    parenchyma = values[(values < -500) & (values > -990)]
    return LungStatistics(
        volume_ml=float(mask.sum() * ct.geometry.voxel_volume_mm3 / 1000.0),
        parenchyma_mean_hu=float(parenchyma.mean()) if parenchyma.size else float("nan"),
        dense_fraction=float((values >= -500).mean()),
    )


# --- the parenchyma mask that candidates must lie in ----------------------------------------------

#: Voxel size (mm) the lungs are looked for at: a mask for candidate centres and a bounding box
#: need no finer grid, and working on every voxel of a 512x512x600 scan takes ~15 s and ~1 GB.
LUNG_SEARCH_MM = 2.5

#: Smoothed air at or below this is pure air (outside the body, trachea, bronchi, bowel gas), not
#: lung: parenchyma reads about -900 to -650 HU, air -1000 (measured on the real samples: air
#: outside the body -999 to -1024, lungs -668 to -800, gas pockets in the stomach -957 to -966).
PURE_AIR_HU = -950.0

#: Holes in a slice's lung up to this size (mm across, as a disc) are filled: the largest nodule,
#: a vessel; a larger one is the dome of the diaphragm ringed by the lung's base, or the heart.
MAX_HOLE_MM = 30.0

#: Candidates whose centre lies within this distance (mm) of the mask count as in the lung.
LUNG_MARGIN_MM = 5.0

#: A component of inner air whose median (unsmoothed) is at or below this is gas, not lung: the
#: stomach's gas reads -957 to -966 on the real samples, lungs -668 to -800; severe emphysema
#: (median near -930) is where this rule would start to fail.
GAS_MEDIAN_HU = -935.0

#: Closing radius (mm): concavities of the lung outline up to this size (a juxta-pleural or
#: juxta-mediastinal nodule, a vessel entering at the hilum) are taken into the mask.
LUNG_CLOSING_MM = 10.0


def coarse_ct(ct: CT, target_mm: float = LUNG_SEARCH_MM) -> CT:
    """Every k-th voxel along each axis (k from the spacing), with the matching geometry."""
    strides = [max(1, round(target_mm / s)) for s in ct.geometry.spacing_irc]
    hu = np.ascontiguousarray(ct.hu[:: strides[0], :: strides[1], :: strides[2]])
    g = ct.geometry
    spacing_xyz = [s * k for s, k in zip(g.spacing_xyz, strides[::-1], strict=True)]
    geometry = Geometry.from_arrays(g.origin_xyz, spacing_xyz, g.direction, hu.shape)
    return CT(hu=hu, geometry=geometry, series_uid=ct.series_uid, source=ct.source)


@dataclass(frozen=True, eq=False)
class LungMask:
    """A boolean lung mask on its own (usually coarse) grid: is this point in the lung?"""

    mask: np.ndarray  # (index, row, col) bool
    geometry: Geometry

    @property
    def volume_ml(self) -> float:
        return float(self.mask.sum() * self.geometry.voxel_volume_mm3 / 1000.0)

    @cached_property
    def _distance_mm(self) -> np.ndarray:
        """Each voxel's distance (mm) to the nearest lung voxel (0 inside); inf without lung."""
        if not self.mask.any():
            return np.full(self.mask.shape, np.inf, dtype=np.float32)
        spacing = self.geometry.spacing_irc
        return ndimage.distance_transform_edt(~self.mask, sampling=spacing).astype(np.float32)

    def voxel_mask(self, geometry: Geometry) -> np.ndarray:
        """The mask on ``geometry``'s voxels (nearest mask voxel), for a grid this mask was
        sampled from (same origin and direction, spacing a whole multiple: :func:`coarse_ct`)."""
        strides = np.asarray(self.geometry.spacing_irc) / np.asarray(geometry.spacing_irc)
        index = [
            np.minimum(np.rint(np.arange(n) / s).astype(np.int64), m - 1)
            for n, s, m in zip(geometry.shape_irc, strides, self.mask.shape, strict=True)
        ]
        return self.mask[np.ix_(*index)]

    def contains(self, points_lps: np.ndarray, margin_mm: float = LUNG_MARGIN_MM) -> np.ndarray:
        """For each LPS point (N, 3): whether it lies within ``margin_mm`` of the lung.

        The margin keeps a juxta-pleural nodule whose centre sits on the pleura (and absorbs the
        coarse grid's half voxel); points off the grid are outside.
        """
        points = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)
        irc = np.rint(world_to_voxel(points, self.geometry)).astype(np.int64)
        inside = np.all((irc >= 0) & (irc < np.asarray(self.mask.shape)), axis=1)
        found = np.zeros(len(points), dtype=bool)
        found[inside] = self._distance_mm[tuple(irc[inside].T)] <= margin_mm
        return found


def parenchyma_mask(ct: CT, closing_mm: float = LUNG_CLOSING_MM) -> LungMask:
    """The lungs as a region candidates may lie in: air inside the body, not pure air, closed.

    Works on a coarse, lightly smoothed copy (:data:`LUNG_SEARCH_MM`). Air (below
    :data:`AIR_THRESHOLD_HU`) is lung when it is not outside the body and its component reads
    like parenchyma. Outside air is told apart by its density, not by touching the slice border,
    so lungs that touch the edge of a cropped field stay lung. Pure air inside the body (trachea,
    main bronchi, stomach and bowel gas; :data:`PURE_AIR_HU`) is not lung. Holes up to
    :data:`MAX_HOLE_MM` (vessels, nodules) and cavities the lung encloses in 3D (a mass) are
    filled, then a closing of ``closing_mm`` takes in what lies in the lung outline's
    concavities (juxta-pleural and juxta-vascular nodules) and the mask is filled again; the
    airway lumen is taken out last. The field's edges are treated as continuing the image, so a
    cropped or two-slice scan is not eroded at its border.
    """
    coarse = coarse_ct(ct)
    spacing = np.asarray(coarse.geometry.spacing_irc)
    smooth = ndimage.gaussian_filter(coarse.hu.astype(np.float32), 1.0, mode="nearest")
    air = smooth < AIR_THRESHOLD_HU
    pure = smooth <= PURE_AIR_HU
    inner = air & ~_outside_air(air, smooth)
    labels, n = ndimage.label(inner)
    if n == 0:
        return LungMask(np.zeros(coarse.hu.shape, dtype=bool), coarse.geometry)
    index = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(inner, labels, index=index)
    # parenchyma reads well above pure air; a gas pocket's median is air (its rim is not)
    medians = np.asarray(ndimage.median(coarse.hu, labels, index=index))
    min_voxels = MIN_LUNG_ML * 1000.0 / coarse.geometry.voxel_volume_mm3
    keep = index[(sizes >= min_voxels) & (medians > GAS_MEDIAN_HU)]
    lungs = np.isin(labels, keep)
    airway = lungs & pure
    pixel_mm2 = float(spacing[1] * spacing[2])
    lungs = fill_slice_holes(lungs, pixel_mm2)
    if closing_mm > 0 and lungs.any():
        lungs = fill_slice_holes(_closed(lungs, closing_mm, spacing), pixel_mm2)
    # a mass the lung encloses in 3D is in it, however large (the dome is not enclosed: it
    # continues into the abdomen)
    lungs = ndimage.binary_fill_holes(lungs)
    opened_airway = ndimage.binary_opening(airway)  # the lumen, not noise specks
    return LungMask(lungs & ~opened_airway, coarse.geometry)


def _border_components(mask2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A slice's component labels and the labels of the components touching its border."""
    labels, _ = ndimage.label(mask2d)
    edges = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    border = np.unique(edges)
    return labels, border[border > 0]


def _outside_air(air: np.ndarray, smooth: np.ndarray) -> np.ndarray:
    """Per axial slice: air components that touch the slice border and read as pure air (their
    mean: a large pocket of outside air averages near -1000 HU, a lung cut by the field -800)."""
    outside = np.zeros_like(air)
    for k in range(air.shape[0]):
        labels, border = _border_components(air[k])
        if len(border) == 0:
            continue
        means = ndimage.mean(smooth[k], labels, index=border)
        outer = border[np.asarray(means) <= PURE_AIR_HU]
        outside[k] = np.isin(labels, outer)
    return outside


def fill_slice_holes(mask: np.ndarray, pixel_mm2: float) -> np.ndarray:
    """Per axial slice, holes up to :data:`MAX_HOLE_MM` across filled (vessels, nodules); larger
    ones stay open: near the bases the lung rings the diaphragm's dome, which is not lung."""
    out = mask.copy()
    max_pixels = np.pi * (MAX_HOLE_MM / 2) ** 2 / pixel_mm2
    for k in range(out.shape[0]):
        if not out[k].any():
            continue
        holes = ndimage.binary_fill_holes(out[k]) & ~out[k]
        labels, n = ndimage.label(holes)
        if n == 0:
            continue
        sizes = ndimage.sum_labels(holes, labels, index=np.arange(1, n + 1))
        out[k] |= np.isin(labels, np.flatnonzero(sizes <= max_pixels) + 1)
    return out


#: Grid (mm) the closing runs on: a 10 mm ball needs no finer one, and distance maps on the
#: search grid of a full-size scan take ~3 s.
CLOSING_GRID_MM = 5.0


def _closed(mask: np.ndarray, radius_mm: float, spacing_irc: np.ndarray) -> np.ndarray:
    """``mask`` plus its closing by a ball of ``radius_mm``.

    The closing runs on a :data:`CLOSING_GRID_MM` grid (block majority) via two distance maps,
    the image continued at its edges so that a cropped field is not eroded at its border; the
    result is brought back by repetition and joined with ``mask``.
    """
    factor = np.maximum(np.round(CLOSING_GRID_MM / spacing_irc).astype(int), 1)
    shape = np.asarray(mask.shape)
    blocks = -(-shape // factor)
    tail = [(0, int(b * f - n)) for b, f, n in zip(blocks, factor, shape, strict=True)]
    padded_mask = np.pad(mask, tail, mode="edge")
    split = padded_mask.reshape(blocks[0], factor[0], blocks[1], factor[1], blocks[2], factor[2])
    small = split.mean(axis=(1, 3, 5)) >= 0.5
    spacing = spacing_irc * factor
    pad = [(int(r), int(r)) for r in np.ceil(radius_mm / spacing).astype(int)]
    padded = np.pad(small, pad, mode="edge")
    grown = ndimage.distance_transform_edt(~padded, sampling=spacing) <= radius_mm
    closed = ndimage.distance_transform_edt(grown, sampling=spacing) > radius_mm
    closed = closed[tuple(slice(a, a + n) for (a, _), n in zip(pad, small.shape, strict=True))]
    for axis, f in enumerate(factor):
        closed = np.repeat(closed, f, axis=axis)
    return mask | closed[: shape[0], : shape[1], : shape[2]]
