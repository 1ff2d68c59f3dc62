"""Realism statistics: the same measurements on synthetic phantoms and on real chest CT.

The phantoms are only useful if a model trained on them sees what it will see on real scans, so
their likeness is measured, not assumed (issue 13). Every statistic here is computed by the same
code on both kinds of scan:

* the lung HU histogram (-1000..-400 HU, 10 HU bins) and its distance between two scans;
* the share of dense structures in the lung (>= -500 HU: vessels, airway walls, nodules);
* vessel cross-sections per cm² of lung area, by depth from the pleura;
* noise SD in air outside the body, in fat and in muscle, from homogeneous patches;
* the noise power spectrum's peak frequency (cycles/mm).

Slice-wise statistics run on the array's index axis (axial in every scan we read) with the
in-plane pixel spacing; they skip no anatomy, but a scan's slices are sampled evenly (at most
``MAX_SLICES``) so a 600-slice scan costs no more than a 100-slice one. Where a statistic cannot be
measured (a crop with no air outside the body, no lung found), it is None and ``notes`` says why.
Pure numpy/scipy: no Slicer, no torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, stats

from lungcad.ct import CT, Geometry
from lungcad.io import PADDING_HU
from lungcad.lungs import AIR_THRESHOLD_HU, fill_slice_holes, lung_statistics, parenchyma_mask

log = logging.getLogger(__name__)

HIST_EDGES_HU = np.arange(-1000.0, -400.0 + 1e-9, 10.0)  # 60 bins of 10 HU
DENSE_HU = -500.0  # as lungs.lung_statistics' dense_fraction
#: depth bands from the lung boundary (mm): (label, low, high)
DEPTH_BANDS_MM: tuple[tuple[str, float, float], ...] = (
    ("0-10", 0.0, 10.0),
    ("10-20", 10.0, 20.0),
    ("20-40", 20.0, 40.0),
    (">40", 40.0, np.inf),
)
#: a dense component smaller than this (mm²) is noise, not a vessel; at 0.98 mm pixels one pixel
#: counts, at 0.625 mm two are needed, so scanners with finer pixels are not favoured.
MIN_CROSS_SECTION_MM2 = 0.5
#: the noise classes: (name, low HU, high HU) of the local mean
NOISE_CLASSES: tuple[tuple[str, float, float], ...] = (
    ("air", -1100.0, -900.0),
    ("fat", -150.0, -50.0),
    ("muscle", 20.0, 80.0),
)
NOISE_WINDOW_MM = 5.0  # local SD window side; in mm so every pixel size sees the same scale
NPS_ROI_MM = 20.0  # square ROI side for the noise power spectrum
OUTSIDE_AIR_MEDIAN_HU = -950.0  # border-touching air darker than this is room air, not lung
MIN_NOISE_WINDOWS = 200  # fewer homogeneous window centres than this: n/a
MIN_NPS_ROIS = 4
MAX_SLICES = 96


@dataclass
class RealismStats:
    """One scan's realism statistics; None where not measurable (``notes`` says why)."""

    lung_ml: float
    histogram: np.ndarray | None  # share of lung voxels per HIST_EDGES_HU bin (sums to 1)
    dense_share: float | None
    vessels_per_cm2: dict[str, float | None]  # by DEPTH_BANDS_MM label
    vessel_counts: dict[str, int]
    band_area_cm2: dict[str, float]
    noise_sd_hu: dict[str, float | None]  # by NOISE_CLASSES name
    nps_peak_cyc_mm: float | None
    notes: dict[str, str] = field(default_factory=dict)


def lung_mask(ct: CT) -> np.ndarray:
    """The lung mask every figure here uses, on the CT's own voxels: air within the parenchyma
    mask without its closing (:func:`lungcad.lungs.parenchyma_mask`, which keeps lungs that touch
    a crop's edge and leaves out stomach gas), its vessels filled in, no chest wall."""
    region = parenchyma_mask(ct, closing_mm=0.0).voxel_mask(ct.geometry)
    pixel_mm2 = ct.geometry.spacing_irc[1] * ct.geometry.spacing_irc[2]
    return fill_slice_holes(region & (ct.hu < AIR_THRESHOLD_HU), pixel_mm2)


def lung_litres(ct: CT, lungs: np.ndarray) -> float:
    return float(lungs.sum()) * ct.geometry.voxel_volume_mm3 / 1e6


def sample_slices(n: int, at_most: int = MAX_SLICES) -> np.ndarray:
    """Evenly spaced slice indices, all of them when there are few."""
    if n <= at_most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, at_most).round().astype(int))


# --- lung HU histogram --------------------------------------------------------------------------


def lung_histogram(hu: np.ndarray, lungs: np.ndarray) -> np.ndarray | None:
    """Share of the lung's voxels in each 10 HU bin from -1000 to -400 (None: no lung voxels).

    Voxels outside the range (vessels above, clipped air below) are left out, so the
    histogram describes the parenchyma's density and texture.
    """
    counts, _ = np.histogram(hu[lungs], bins=HIST_EDGES_HU)
    total = counts.sum()
    return counts / total if total else None


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Earth mover's (1-Wasserstein) distance in HU between two lung histograms.

    Chosen over Jensen-Shannon because it is in HU and grows with how far apart the parenchyma
    densities are (a phantom lung 60 HU too dense reads 60); Jensen-Shannon saturates at ln 2 as
    soon as two histograms stop overlapping, whatever the gap.
    """
    centres = (HIST_EDGES_HU[:-1] + HIST_EDGES_HU[1:]) / 2
    return float(stats.wasserstein_distance(centres, centres, a, b))


# --- vessels by depth ---------------------------------------------------------------------------


def vessel_cross_sections(
    hu: np.ndarray, lungs: np.ndarray, pixel_mm: tuple[float, float], slices: np.ndarray
) -> tuple[dict[str, int], dict[str, float]]:
    """Dense components (>= -500 HU) per axial slice, counted by depth from the lung boundary.

    Returns (components per depth band, lung area per band in cm²). A component's depth is the
    mean over its pixels of the in-plane distance (mm, ``distance_transform_edt`` with the pixel
    spacing) to the nearest non-lung pixel; the lung area of a band is the area of lung pixels at
    that depth, so count / area is a density that does not depend on how big the lungs are. The
    array border is not a boundary: in a crop, depths near the cut are upper bounds.
    """
    counts = dict.fromkeys((b[0] for b in DEPTH_BANDS_MM), 0)
    area_px = dict.fromkeys(counts, 0)
    min_px = MIN_CROSS_SECTION_MM2 / (pixel_mm[0] * pixel_mm[1])
    structure = np.ones((3, 3), dtype=bool)
    for k in slices:
        mask = lungs[k]
        if not mask.any():
            continue
        depth = ndimage.distance_transform_edt(mask, sampling=pixel_mm)
        labels, n = ndimage.label(mask & (hu[k] >= DENSE_HU), structure=structure)
        index = np.arange(1, n + 1)
        sizes = ndimage.sum_labels(np.ones_like(depth), labels, index) if n else np.zeros(0)
        depths = np.asarray(ndimage.mean(depth, labels, index)) if n else np.zeros(0)
        depths = depths[sizes >= min_px]
        in_lung = depth[mask]
        for label, low, high in DEPTH_BANDS_MM:
            counts[label] += int(np.count_nonzero((depths >= low) & (depths < high)))
            area_px[label] += int(np.count_nonzero((in_lung >= low) & (in_lung < high)))
    pixel_cm2 = pixel_mm[0] * pixel_mm[1] / 100.0
    return counts, {label: n * pixel_cm2 for label, n in area_px.items()}


# --- noise --------------------------------------------------------------------------------------


def _window_px(pixel_mm: tuple[float, float], side_mm: float, minimum: int = 3) -> int:
    return max(minimum, round(side_mm / float(np.mean(pixel_mm))))


def outside_air(hu: np.ndarray) -> np.ndarray:
    """Air outside the body: per slice, air components touching the slice's in-plane border whose
    median is below OUTSIDE_AIR_MEDIAN_HU (a lung cut by a crop's edge touches it too, but is
    lighter: about -850 HU)."""
    out = np.zeros(hu.shape, dtype=bool)
    for k in range(hu.shape[0]):
        labels, n = ndimage.label(hu[k] < DENSE_HU)
        if n == 0:
            continue
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        border = border[border > 0]
        if border.size == 0:
            continue
        medians = np.asarray(ndimage.median(hu[k], labels, border))
        out[k] = np.isin(labels, border[medians < OUTSIDE_AIR_MEDIAN_HU])
    return out


def _local_sd_samples(
    image: np.ndarray, allowed: np.ndarray, low: float, high: float, w: int
) -> np.ndarray:
    """Local SDs (ddof 1) of the w x w windows that lie wholly in a homogeneous region.

    A window counts when every pixel in it has its own local mean within [low, high] (so the
    window does not straddle an edge), lies in ``allowed``, and less than half of it is padding.
    """
    x = image.astype(np.float64)
    mean = ndimage.uniform_filter(x, w, mode="reflect")
    square = ndimage.uniform_filter(x * x, w, mode="reflect")
    n = w * w
    var = np.maximum(square - mean * mean, 0.0) * n / (n - 1)
    in_class = (mean >= low) & (mean <= high) & allowed
    whole = ndimage.minimum_filter(in_class.astype(np.uint8), size=w, mode="constant") > 0
    padding = ndimage.uniform_filter((image <= PADDING_HU).astype(np.float64), w)
    ok = whole & (padding < 0.5) & (var > 0)
    return np.sqrt(var[ok])


def noise_sd(
    hu: np.ndarray,
    pixel_mm: tuple[float, float],
    slices: np.ndarray,
    low: float,
    high: float,
    allowed: np.ndarray | None = None,
) -> tuple[float | None, int]:
    """Median local SD (HU) over homogeneous windows of one HU class; (None, n) if too few.

    Windows are NOISE_WINDOW_MM square in plane. The median of the sample SD of n Gaussian values
    is sigma * sqrt(median(chi2(n-1)) / (n-1)), about 1.5 % low for 25 pixels; that factor is
    divided out, so white Gaussian noise of SD sigma reads sigma. Correlated CT noise reads
    somewhat lower (the window mean takes part of it), the same way on every scan.
    """
    w = _window_px(pixel_mm, NOISE_WINDOW_MM)
    samples = []
    for k in slices:
        region = np.ones(hu.shape[1:], dtype=bool) if allowed is None else allowed[k]
        if region.any():
            samples.append(_local_sd_samples(hu[k], region, low, high, w))
    values = np.concatenate(samples) if samples else np.zeros(0)
    if values.size < MIN_NOISE_WINDOWS:
        return None, int(values.size)
    dof = w * w - 1
    bias = np.sqrt(stats.chi2.ppf(0.5, dof) / dof)
    return float(np.median(values) / bias), int(values.size)


def nps_peak(
    hu: np.ndarray,
    pixel_mm: tuple[float, float],
    slices: np.ndarray,
    classes: tuple[tuple[float, float], ...],
) -> tuple[float | None, int]:
    """Peak frequency (cycles/mm) of the radially averaged 2D noise power spectrum; (None, n).

    ROIs of NPS_ROI_MM square tile each slice with half overlap; one is used when all its pixels
    have their local mean in one HU class (homogeneous tissue). Each ROI has its mean and a fitted
    second-order surface removed (as AAPM TG-233 advises, so slow anatomical trends do not pose
    as low-frequency noise), its |FFT|² is averaged over all ROIs, then averaged in rings one
    frequency step wide; the peak skips the zero frequency.
    """
    n = _window_px(pixel_mm, NPS_ROI_MM, minimum=8)
    w = _window_px(pixel_mm, NOISE_WINDOW_MM)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    y, x = yy.ravel(), xx.ravel()
    design = np.stack([np.ones(n * n), y, x, y * y, x * x, x * y], axis=1)
    stride = max(1, n // 2)
    power = np.zeros((n, n))
    used = 0
    for k in slices:
        image = hu[k].astype(np.float64)
        mean = ndimage.uniform_filter(image, w, mode="reflect")
        homogeneous = [(mean >= lo) & (mean <= hi) for lo, hi in classes]
        for r in range(0, image.shape[0] - n + 1, stride):
            for c in range(0, image.shape[1] - n + 1, stride):
                if not any(h[r : r + n, c : c + n].all() for h in homogeneous):
                    continue
                roi = image[r : r + n, c : c + n]
                if np.count_nonzero(roi <= PADDING_HU) > roi.size // 2:
                    continue
                coef, *_ = np.linalg.lstsq(design, roi.ravel(), rcond=None)
                detrended = roi - (design @ coef).reshape(n, n)
                power += np.abs(np.fft.fft2(detrended)) ** 2
                used += 1
    if used < MIN_NPS_ROIS:
        return None, used
    power *= pixel_mm[0] * pixel_mm[1] / (n * n * used)
    fy = np.fft.fftfreq(n, d=pixel_mm[0])
    fx = np.fft.fftfreq(n, d=pixel_mm[1])
    radius = np.hypot(*np.meshgrid(fy, fx, indexing="ij"))
    step = max(1.0 / (n * pixel_mm[0]), 1.0 / (n * pixel_mm[1]))
    ring = np.rint(radius / step).astype(int)
    ring_power = ndimage.mean(power, ring, np.arange(ring.max() + 1))
    ring_power = np.asarray(ring_power)
    ring_power[0] = -np.inf  # the mean was removed: zero frequency carries nothing
    return float(np.argmax(ring_power) * step), used


# --- one scan -----------------------------------------------------------------------------------


def measure_realism(ct: CT, lungs: np.ndarray | None = None) -> RealismStats:
    """Every realism statistic of one scan (the lung mask from :func:`lung_mask` by default)."""
    lungs = lung_mask(ct) if lungs is None else lungs
    g = ct.geometry
    _warn_if_not_axial(g)
    pixel_mm = (g.spacing_irc[1], g.spacing_irc[2])
    slices = sample_slices(ct.shape[0])
    notes: dict[str, str] = {}
    lung_ml = lung_litres(ct, lungs) * 1000.0
    histogram = lung_histogram(ct.hu, lungs)
    dense = lung_statistics(ct, lungs).dense_fraction if lungs.any() else None
    if not lungs.any():
        notes["lung"] = "no lung found by the lung mask"
    counts, areas = vessel_cross_sections(ct.hu, lungs, pixel_mm, slices)
    per_cm2 = {b: (counts[b] / areas[b] if areas[b] >= 1.0 else None) for b in counts}
    empty = [b for b, v in per_cm2.items() if v is None]
    if empty:
        notes["vessels"] = f"under 1 cm² of lung at depth {', '.join(empty)} mm"

    noise: dict[str, float | None] = {}
    air = outside_air(ct.hu)
    for name, low, high in NOISE_CLASSES:
        allowed = air if name == "air" else None
        noise[name], found = noise_sd(ct.hu, pixel_mm, slices, low, high, allowed)
        if noise[name] is None:
            why = (
                "no air outside the body in the field of view (a crop)"
                if name == "air" and not air.any()
                else f"{found} homogeneous {name} windows, {MIN_NOISE_WINDOWS} needed"
            )
            notes[f"noise {name}"] = why
    classes = tuple((low, high) for name, low, high in NOISE_CLASSES if name != "air")
    peak, rois = nps_peak(ct.hu, pixel_mm, slices, classes)
    if peak is None:
        notes["nps"] = f"{rois} homogeneous {NPS_ROI_MM:.0f} mm ROIs, {MIN_NPS_ROIS} needed"
    return RealismStats(
        lung_ml=lung_ml,
        histogram=histogram,
        dense_share=dense,
        vessels_per_cm2=per_cm2,
        vessel_counts=counts,
        band_area_cm2=areas,
        noise_sd_hu=noise,
        nps_peak_cyc_mm=peak,
        notes=notes,
    )


def _warn_if_not_axial(g: Geometry) -> None:
    if abs(g.direction_matrix[2, 2]) < 0.9:
        log.warning("the index axis is not head-foot: slice-wise statistics are not axial")


# --- a thick-slice stand-in ---------------------------------------------------------------------


def average_slabs(ct: CT, slab_mm: float) -> CT:
    """``ct`` re-sliced to ``slab_mm`` slices by averaging its slices over each slab.

    Each output slice is the overlap-weighted mean of the input slices in its slab (a boxcar
    slice-sensitivity profile), so partial volume looks as on a real thick-slice scan; only whole
    slabs are kept. Geometry follows the direction matrix: the new origin is the first slab's
    centre.
    """
    g = ct.geometry
    dz = g.spacing_irc[0]
    n_in = ct.shape[0]
    n_out = int(n_in * dz // slab_mm)
    if n_out < 2:
        raise ValueError(f"{n_in} slices of {dz} mm make fewer than two {slab_mm} mm slabs")
    edges_in = np.arange(n_in + 1) * dz  # slice i covers [i dz, (i + 1) dz) from the first edge
    starts = np.arange(n_out) * slab_mm
    weights = np.clip(
        np.minimum(edges_in[None, 1:], starts[:, None] + slab_mm)
        - np.maximum(edges_in[None, :-1], starts[:, None]),
        0.0,
        None,
    )
    weights /= weights.sum(axis=1, keepdims=True)
    hu = np.tensordot(weights, ct.hu.astype(np.float32), axes=(1, 0))
    first_centre_index = (slab_mm / 2) / dz - 0.5  # in input slice units
    origin = np.asarray(g.origin_xyz) + g.direction_matrix[:, 2] * first_centre_index * dz
    geometry = Geometry.from_arrays(
        origin, (g.spacing_xyz[0], g.spacing_xyz[1], slab_mm), g.direction, hu.shape
    )
    return CT(
        hu=np.rint(hu).astype(np.int16),
        geometry=geometry,
        series_uid=None,
        source=ct.source,
        metadata={**ct.metadata, "derived": f"{dz:g} mm slices averaged over {slab_mm:g} mm"},
    )
