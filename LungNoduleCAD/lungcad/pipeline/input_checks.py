"""Say when a scan lies outside what the models know, in lines a radiologist reads at a glance.

The models were trained on a stated range of scans (each model card's ``training_range``: pixel
size, slice thickness and spacing, contrast, HU calibration). A scan outside it still runs, but
its findings deserve less trust, so :func:`check_input` returns plain-English warnings such as
"5.0 mm slices: the models were trained on 0.6-2.5 mm; expect more false findings". The models
need not share one range: when only some exclude the scan, the warning names them and says what it
costs for them (the detection models: findings; the malignancy model: its scores), e.g. "5.0 mm
slices: the malignancy model was trained on 0.6-2.5 mm (detection on 0.6-5.0 mm); its malignancy
scores are less reliable". It also warns when the lungs are not wholly in the field of view (none,
one, or cut), whatever the cards say.

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
#: What a scan outside the malignancy model's range costs: the findings stand, their scores less so.
SCORES_LESS_RELIABLE = "its malignancy scores are less reliable"
MALIGNANCY = "malignancy"
#: The models that find nodules, named together in warnings.
DETECTION = frozenset({"segmentation", "nodule"})


def check_input(ct: CT, cards: Mapping[str, ModelCard] | Iterable[ModelCard]) -> tuple[str, ...]:
    """Warnings for ``ct`` against the cards' training ranges, plus the lung coverage; () if none.

    Pixel size, slices and contrast are checked per model (a mapping's keys or each card's
    ``task`` name it), so a warning names only the models that do not know the scan. Cards
    without a training range (made before it existed) add no range checks; the HU calibration is
    checked against the combined range, or standard CT values, and the lungs are checked anyway.
    """
    pairs = cards.items() if isinstance(cards, Mapping) else ((c.task.value, c) for c in cards)
    grouped: dict[str, list[TrainingRange]] = {}
    for name, card in pairs:
        if card.training_range is not None:
            grouped.setdefault(str(name), []).append(card.training_range)
    named = {n: r for n, group in grouped.items() if (r := combined_range(group)) is not None}
    trained = combined_range(list(named.values()))
    coarse = coarse_ct(ct, CHECK_MM)
    warnings: list[str] = []
    if named:
        warnings += spacing_warnings(ct, named)
    warnings += calibration_warnings(coarse, trained)
    if any(r.contrast == "none" for r in named.values()):
        warnings += contrast_warnings(coarse, named)
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


def _group_name(names: Iterable[str]) -> str:
    """'detection' for the segmentation and nodule models together, else their names, in
    cascade order."""
    group = set(names)
    if group >= DETECTION:
        group = (group - DETECTION) | {"detection"}
    order = ["detection", "segmentation", "nodule", MALIGNANCY]
    return " and ".join(sorted(group, key=lambda n: (order.index(n) if n in order else 9, n)))


def _who(names: list[str], everyone: int) -> str:
    """Who was trained on a range: 'the models' when all were, else the named ones."""
    if len(names) == everyone:
        return "the models were"
    plural = len(names) > 1 or set(names) == DETECTION
    return f"the {_group_name(names)} {'models were' if plural else 'model was'}"


def _consequence(names: list[str], everyone: int, detection_text: str) -> str:
    """The malignancy model alone outside its range costs only its scores, not findings."""
    only_malignancy = len(names) < everyone and set(names) == {MALIGNANCY}
    return SCORES_LESS_RELIABLE if only_malignancy else detection_text


def _range_warning(
    subject: str,
    value: float,
    field: str,
    ranges: Mapping[str, TrainingRange],
    digits: int,
    everyone: int | None = None,
) -> str | None:
    """``subject``: who was trained on what (and what the others know), and what it costs.

    ``everyone`` counts all the models when ``ranges`` holds only those still to be checked.
    """
    sides = {name: _outside(value, getattr(r, field)) for name, r in ranges.items()}
    out = [name for name, side in sides.items() if side]
    if not out:
        return None

    def by_span(names: list[str]) -> dict[str, list[str]]:
        """The models of each distinct range (models sharing a range are named together)."""
        spans: dict[str, list[str]] = {}
        for name in names:
            lo, hi = getattr(ranges[name], field)
            spans.setdefault(f"{lo:.{digits}f}-{hi:.{digits}f} mm", []).append(name)
        return spans

    everyone = everyone or len(ranges)
    trained = " and ".join(
        f"{_who(names, everyone)} trained on {span}" for span, names in by_span(out).items()
    )
    others = by_span([name for name in ranges if name not in out])
    known = ", ".join(f"{_group_name(names)} on {span}" for span, names in others.items())
    cost = FEWER_FINDINGS if field != "pixel_mm" and max(sides.values()) > 0 else LESS_RELIABLE
    return (
        f"{subject}: {trained}{f' ({known})' if known else ''}; {_consequence(out, everyone, cost)}"
    )


def spacing_warnings(ct: CT, trained: TrainingRange | Mapping[str, TrainingRange]) -> list[str]:
    """Pixel size, slice spacing, slice thickness (when the file says) and uneven slices.

    ``trained`` maps model names to their ranges (a single range speaks for all the models).
    """
    ranges = {"models": trained} if isinstance(trained, TrainingRange) else dict(trained)
    slice_mm, *pixel = ct.geometry.spacing_irc
    pixel_mm = float(np.mean(pixel))
    warnings = [
        _range_warning(f"{pixel_mm:.2f} mm pixels", pixel_mm, "pixel_mm", ranges, 2),
        _range_warning(f"{slice_mm:.1f} mm slices", slice_mm, "slice_spacing_mm", ranges, 1),
    ]
    thickness = _metadata_mm(ct, "slice_thickness")
    # thick slices spaced closely: the spacing check did not see them for the models it passed
    spaced_ok = {n: r for n, r in ranges.items() if not _outside(slice_mm, r.slice_spacing_mm)}
    if thickness and spaced_ok:
        subject = f"{thickness[0]:.1f} mm slice thickness"
        field = "slice_thickness_mm"
        warnings.append(_range_warning(subject, thickness[0], field, spaced_ok, 1, len(ranges)))
    found = [w for w in warnings if w is not None]
    gaps = _metadata_mm(ct, "slice_gap_range_mm")
    if len(gaps) == 2 and gaps[1] > gaps[0] * (1 + SPACING_TOLERANCE) + 0.01:
        found.append(
            f"Uneven slice spacing ({gaps[0]:.1f}-{gaps[1]:.1f} mm; missing slices?): the models "
            f"expect evenly spaced slices; {LESS_RELIABLE} near the gaps"
        )
    return found


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


def contrast_warnings(coarse: CT, ranges: Mapping[str, TrainingRange] | None = None) -> list[str]:
    """A large blob at blood-pool-with-contrast HU in one slice, away from bone, named against
    the models trained without contrast (all of them when ``ranges`` is None).

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
    names = [
        n for n, r in (ranges or {"models": None}).items() if r is None or r.contrast == "none"
    ]
    everyone = len(ranges) if ranges else 1
    near = f"{FEWER_FINDINGS} near the heart, hila and vessels"
    return [
        f"Contrast-enhanced scan (blood pool about {blood:.0f} HU): {_who(names, everyone)} "
        f"trained without contrast; {_consequence(names, everyone, near)}"
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
