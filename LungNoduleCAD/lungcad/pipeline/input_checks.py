"""Say when a scan lies outside what the models know, in lines a radiologist reads at a glance.

The models were trained on a stated range of scans (each model card's ``training_range``: pixel
size, slice thickness and spacing, contrast, HU calibration). A scan outside it still runs, but
its findings deserve less trust, so :func:`check_input` returns plain-English warnings such as
"5.0 mm slices: the models were trained on 0.6-2.5 mm; expect more false findings". It also warns
when the lungs are not wholly in the field of view (none, one, or cut), whatever the cards say.

Everything is measured on a coarse copy of the CT (every k-th voxel, about :data:`CHECK_MM`), so
the checks take a fraction of a second on a full scan.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import numpy as np
from scipy import ndimage

from lungcad.ct import CT
from lungcad.lungs import AIR_THRESHOLD_HU, find_lungs
from lungcad.models import ModelCard, TrainingRange
from lungcad.pipeline.region import coarse_ct

log = logging.getLogger(__name__)

#: Voxel size (mm) the checks look at: a 512x512x300 scan becomes about 100x100x100 voxels.
CHECK_MM = 4.0
#: A spacing this far (relative) past the trained range is outside it; inside, resampling to the
#: canonical grid makes the difference immaterial.
SPACING_TOLERANCE = 0.10
#: Air or fat this far (HU) from the trained calibration means the scanner reads HU differently
#: (a calibrated scanner keeps water within about 5 HU and air within about 10).
AIR_TOLERANCE_HU = 50.0
FAT_TOLERANCE_HU = 40.0
#: Outside air is measured only when air touches most of the field's edge (a body all within it).
MIN_BORDER_AIR_FRACTION = 0.6
#: The scanner's padding outside its reconstruction circle (-1024, -2048, -3024) is not air.
PADDING_HU = -1024
MIN_SAMPLES = 500
FAT_WINDOW_HU = (-250.0, -20.0)
MIN_FAT_FRACTION = 0.02
#: Contrast-enhanced blood pool: an in-plane blob this large (cm2) at these HU, away from bone
#: (cortex and the marrow next to it: above BONE_HU, widened by two coarse voxels).
CONTRAST_HU = (150.0, 500.0)
BONE_HU = 400.0
CONTRAST_MIN_CM2 = 15.0
#: Lung within this share of its largest cross-section on the first or last slice: cut there.
CUT_AREA_FRACTION = 0.3
#: A parenchyma-like (-920 to -400 HU) region this large (cm2) in a slice at the field's edge:
#: lung cut there.
CUT_EDGE_CM2 = 10.0
PARENCHYMA_HU = (-920.0, -400.0)
#: Two lungs: in the slices of largest lung area, at least this share shows two separate lungs.
TWO_LUNG_SLICE_FRACTION = 0.3
MIN_LUNG_ML = 20.0

FEWER_FINDINGS = "expect more false findings"
LESS_RELIABLE = "findings may be less reliable"


def check_input(ct: CT, cards: Mapping[str, ModelCard] | Iterable[ModelCard]) -> tuple[str, ...]:
    """Warnings for ``ct`` against the cards' training ranges, plus the lung coverage; () if none.

    Cards without a training range (made before it existed) add no range checks; the HU
    calibration is then checked against standard CT values and the lungs are checked anyway.
    """
    cards = list(cards.values()) if isinstance(cards, Mapping) else list(cards)
    trained = combined_range([c.training_range for c in cards if c.training_range is not None])
    coarse = coarse_ct(ct, CHECK_MM)
    warnings: list[str] = []
    if trained is not None:
        warnings += spacing_warnings(ct, trained)
    warnings += calibration_warnings(coarse, trained)
    if trained is not None and trained.contrast == "none":
        warnings += contrast_warnings(coarse)
    warnings += lung_warnings(coarse)
    for line in warnings:
        log.warning("%s: %s", ct.series_uid or "CT", line)
    return tuple(warnings)


def combined_range(ranges: list[TrainingRange]) -> TrainingRange | None:
    """What all the models know: the overlap of their spacing ranges, the widest HU, and
    contrast "none" if any model saw none."""
    if not ranges:
        return None
    first = ranges[0]
    if all(r == first for r in ranges):
        return first

    def overlap(name: str) -> tuple[float, float]:
        lo = max(getattr(r, name)[0] for r in ranges)
        hi = min(getattr(r, name)[1] for r in ranges)
        return (lo, hi) if lo <= hi else getattr(first, name)

    def union(name: str) -> tuple[float, float]:
        return (min(getattr(r, name)[0] for r in ranges), max(getattr(r, name)[1] for r in ranges))

    kinds = {r.contrast for r in ranges}
    contrast = "none" if "none" in kinds else kinds.pop() if len(kinds) == 1 else "both"
    return TrainingRange(
        pixel_mm=overlap("pixel_mm"),
        slice_thickness_mm=overlap("slice_thickness_mm"),
        slice_spacing_mm=overlap("slice_spacing_mm"),
        contrast=contrast,
        hu_air=union("hu_air"),
        hu_fat=union("hu_fat"),
        hu_blood=union("hu_blood"),
        series=min(r.series for r in ranges),
        source="; ".join(sorted({r.source for r in ranges})),
    )


# --- geometry: no voxels read ---------------------------------------------------------------------


def _outside(value: float, span: tuple[float, float]) -> int:
    """-1 below the range, +1 above, 0 within it (with :data:`SPACING_TOLERANCE`)."""
    if value > span[1] * (1 + SPACING_TOLERANCE):
        return 1
    if value < span[0] / (1 + SPACING_TOLERANCE):
        return -1
    return 0


def _metadata_mm(ct: CT, key: str) -> list[float]:
    try:
        return [float(v) for v in ct.metadata.get(key, "").split()]
    except ValueError:
        return []


def spacing_warnings(ct: CT, trained: TrainingRange) -> list[str]:
    """Pixel size, slice spacing, slice thickness (when the file says) and uneven slices."""
    warnings = []
    slice_mm, *pixel = ct.geometry.spacing_irc
    pixel_mm = float(np.mean(pixel))
    lo, hi = trained.pixel_mm
    if _outside(pixel_mm, trained.pixel_mm):
        warnings.append(
            f"{pixel_mm:.2f} mm pixels: the models were trained on {lo:.2f}-{hi:.2f} mm; "
            f"{LESS_RELIABLE}"
        )
    lo, hi = trained.slice_spacing_mm
    side = _outside(slice_mm, trained.slice_spacing_mm)
    if side:
        warnings.append(
            f"{slice_mm:.1f} mm slices: the models were trained on {lo:.1f}-{hi:.1f} mm; "
            f"{FEWER_FINDINGS if side > 0 else LESS_RELIABLE}"
        )
    thickness = _metadata_mm(ct, "slice_thickness")
    if thickness and not side:  # thick slices spaced closely: the spacing check did not see them
        lo, hi = trained.slice_thickness_mm
        side = _outside(thickness[0], trained.slice_thickness_mm)
        if side:
            warnings.append(
                f"{thickness[0]:.1f} mm slice thickness: the models were trained on "
                f"{lo:.1f}-{hi:.1f} mm; {FEWER_FINDINGS if side > 0 else LESS_RELIABLE}"
            )
    gaps = _metadata_mm(ct, "slice_gap_range_mm")
    if len(gaps) == 2 and gaps[1] > gaps[0] * (1 + SPACING_TOLERANCE) + 0.01:
        warnings.append(
            f"Uneven slice spacing ({gaps[0]:.1f}-{gaps[1]:.1f} mm; missing slices?): the models "
            f"expect evenly spaced slices; {LESS_RELIABLE} near the gaps"
        )
    return warnings


# --- HU calibration and contrast ------------------------------------------------------------------


def _edges(array: np.ndarray) -> np.ndarray:
    """Each slice's in-plane edge pixels, walked round the edge: (slices, perimeter)."""
    return np.concatenate(
        [array[:, 0, :], array[:, 1:, -1], array[:, -1, -2::-1], array[:, -2:0:-1, 0]], axis=1
    )


def outside_air(coarse: CT) -> np.ndarray | None:
    """Air around the body (connected to the field's edge within its slice), None when the body
    does not lie wholly inside the field (too little air at the edge to call it outside)."""
    air = coarse.hu < AIR_THRESHOLD_HU
    if _edges(air).mean() < MIN_BORDER_AIR_FRACTION:
        return None
    labels, _ = ndimage.label(air, _in_plane_structure())  # within slices, never across
    edge = np.unique(_edges(labels))
    return np.isin(labels, edge[edge > 0])


def calibration_warnings(coarse: CT, trained: TrainingRange | None) -> list[str]:
    """Air outside the body far from the trained air HU; else fat far from the trained fat HU."""
    air_span = trained.hu_air if trained else (-1000.0, -1000.0)
    fat_span = trained.hu_fat if trained else (-100.0, -100.0)
    outside = outside_air(coarse)
    if outside is not None:
        # off the skin (partial volume) by one coarse voxel; padding outside the circle is no air
        inner = ndimage.binary_erosion(outside, _in_plane_structure(), iterations=1)
        values = coarse.hu[inner]
        values = values[values > PADDING_HU]
        if values.size >= MIN_SAMPLES:
            air = float(np.median(values))
            if not air_span[0] - AIR_TOLERANCE_HU <= air <= air_span[1] + AIR_TOLERANCE_HU:
                return [
                    f"Air outside the body reads {air:.0f} HU (the training scans: "
                    f"{_hu_text(air_span)}): the HU calibration differs; {LESS_RELIABLE}"
                ]
    fat = fat_peak_hu(coarse)
    if fat is not None and not fat_span[0] - FAT_TOLERANCE_HU <= fat <= fat_span[1] + (
        FAT_TOLERANCE_HU
    ):
        return [
            f"Fat reads {fat:.0f} HU (the training scans: {_hu_text(fat_span)}): the HU "
            f"calibration differs; {LESS_RELIABLE}"
        ]
    return []


def _in_plane_structure() -> np.ndarray:
    """Neighbours within a slice only: each slice is looked at on its own."""
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    return structure


def _hu_text(span: tuple[float, float]) -> str:
    lo, hi = span
    return f"{lo:.0f} HU" if round(lo) == round(hi) else f"{lo:.0f} to {hi:.0f} HU"


def fat_peak_hu(coarse: CT) -> float | None:
    """The HU of the fat peak in the histogram (None when there is too little fat to tell).

    Voxels next to air are left out: partial volume at the skin and the lungs spreads over the
    whole window and would pull the peak.
    """
    hu = coarse.hu
    near_air = ndimage.binary_dilation(hu < AIR_THRESHOLD_HU, _in_plane_structure())
    values = hu[~near_air]
    lo, hi = FAT_WINDOW_HU
    window = values[(values > lo) & (values < hi)]
    if window.size < MIN_SAMPLES or window.size < MIN_FAT_FRACTION * values.size:
        return None
    counts, edges = np.histogram(window, bins=np.arange(lo, hi + 5.0, 5.0))
    smooth = ndimage.gaussian_filter1d(counts.astype(np.float64), 2.0)
    peak = int(np.argmax(smooth))
    if peak in (0, len(smooth) - 1):  # the window's edge: no fat peak inside it
        return None
    return float((edges[peak] + edges[peak + 1]) / 2)


def contrast_warnings(coarse: CT) -> list[str]:
    """A large blob at blood-pool-with-contrast HU in one slice, away from bone.

    In-plane blobs, not 3D regions: marrow runs the whole spine and through the ribs in 3D, but
    a vertebral body's cross-section stays under 15 cm2, while enhanced heart chambers and the
    aorta at the heart's level exceed 25 cm2 (measured on the real samples: contrast 26-32 cm2,
    plain 9 cm2; phantoms at most 6 cm2).
    """
    hu = coarse.hu
    structure = _in_plane_structure()
    smooth = ndimage.uniform_filter(hu.astype(np.float32), size=(1, 3, 3))
    bone = ndimage.binary_dilation(hu > BONE_HU, structure, iterations=2)
    pool = (smooth >= CONTRAST_HU[0]) & (smooth <= CONTRAST_HU[1]) & ~bone
    labels, n = ndimage.label(pool, structure)
    if n == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    biggest = int(np.argmax(sizes)) + 1
    sx, sy, _ = coarse.geometry.spacing_xyz
    if sizes[biggest - 1] * sx * sy / 100.0 < CONTRAST_MIN_CM2:
        return []
    blood = float(np.median(hu[labels == biggest]))
    return [
        f"Contrast-enhanced scan (blood pool about {blood:.0f} HU): the models were trained "
        f"without contrast; {FEWER_FINDINGS} near the heart, hila and vessels"
    ]


# --- the lungs in the field of view ---------------------------------------------------------------


def lung_warnings(coarse: CT) -> list[str]:
    """One warning when the lungs are not wholly in the field: cut, only one, or none.

    Lung is :func:`lungcad.lungs.find_lungs` where it reads like parenchyma: pure air that a
    table or the body encloses (or the trachea) is not lung for these checks.
    """
    lung_like = _lung_like(coarse)
    lungs = find_lungs(coarse) & lung_like
    cut = _cut_ends(coarse, lungs)
    if _lung_at_edge(coarse, lung_like):
        cut.append("at the sides")
    if cut:
        return [
            f"Lungs cut by the field of view ({', '.join(cut)}): nodules outside it cannot "
            "be found, and findings at the cut are less reliable"
        ]
    ml = float(lungs.sum() * coarse.geometry.voxel_volume_mm3 / 1000.0)
    if ml < MIN_LUNG_ML:
        return ["No lungs found in the field of view: this does not look like a chest CT"]
    if not _two_lungs(lungs):
        return ["Only one lung in the field of view: nodules in the other lung cannot be found"]
    return []


def _lung_like(coarse: CT) -> np.ndarray:
    """Parenchyma-like HU after a 3x3 in-plane mean (noise and single vessels averaged out)."""
    smooth = ndimage.uniform_filter(coarse.hu.astype(np.float32), size=(1, 3, 3))
    return (smooth > PARENCHYMA_HU[0]) & (smooth < PARENCHYMA_HU[1])


def _cut_ends(coarse: CT, lungs: np.ndarray) -> list[str]:
    """'at the top' / 'at the bottom' where the first or last slice still holds much lung."""
    areas = lungs.sum(axis=(1, 2))
    if areas.max() == 0:
        return []
    # which end of the index axis is the head: the slice axis' LPS z component
    head_last = coarse.geometry.direction_matrix[2, 2] >= 0
    ends = {"at the top": -1 if head_last else 0, "at the bottom": 0 if head_last else -1}
    return [where for where, k in ends.items() if areas[k] >= CUT_AREA_FRACTION * areas.max()]


def _lung_at_edge(coarse: CT, lung_like: np.ndarray) -> bool:
    """A parenchyma-like region of at least :data:`CUT_EDGE_CM2` in a slice that touches the
    field's edge: lung the edge cuts. Air outside the body reads -1000, and thin lung-like rims
    (partial volume at the skin, a blanket) go with a one-voxel erosion."""
    structure = _in_plane_structure()
    core = ndimage.binary_erosion(lung_like, structure, border_value=1)  # keep edge pixels
    labels, n = ndimage.label(core, structure)
    if n == 0:
        return False
    touching = np.unique(_edges(labels))
    touching = touching[touching > 0]
    if touching.size == 0:
        return False
    sizes = ndimage.sum_labels(core, labels, touching)
    sx, sy, _ = coarse.geometry.spacing_xyz
    return bool(sizes.max() * sx * sy / 100.0 >= CUT_EDGE_CM2)


def _two_lungs(lungs: np.ndarray) -> bool:
    """Whether the slices of largest lung area show two separate lungs (two big components)."""
    areas = lungs.sum(axis=(1, 2))
    slices = np.flatnonzero(areas >= 0.5 * areas.max())
    two = 0
    for k in slices:
        labels, n = ndimage.label(lungs[k])
        if n < 2:
            continue
        sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1]
        two += sizes[1] >= 0.15 * areas[k]
    return two >= TWO_LUNG_SLICE_FRACTION * len(slices)
