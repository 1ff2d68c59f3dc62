"""What the cascade reports: thresholds, one finding per kept nodule, and a per-patient summary.

These types are the contract between the engine's pipeline, its writers (results.json,
candidates.csv, seg.nrrd, mrk.json) and the Slicer module: they carry numbers only, no networks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from lungcad.lungrads import ExamAssessment, LungRadsMeasurements, NoduleAssessment, assess_exam
from lungcad.thresholds import Thresholds  # torch-free, for the command lines


class MalignancyBand(enum.Enum):
    """Coarse malignancy groups used where one colour per group is all a viewer can show."""

    BENIGN = "benign"
    INDETERMINATE = "indeterminate"
    SUSPICIOUS = "suspicious"

    @classmethod
    def of(
        cls, p_malignant: float, malignancy_threshold: float = Thresholds.malignancy
    ) -> MalignancyBand:
        """Suspicious at or above the threshold, benign below half of it, indeterminate between."""
        if p_malignant >= malignancy_threshold:
            return cls.SUSPICIOUS
        if p_malignant < 0.5 * malignancy_threshold:
            return cls.BENIGN
        return cls.INDETERMINATE


#: One colour per band (RGB in 0..1), shared by the overlay PNG, the markups file and Slicer.
BAND_COLORS_RGB: dict[MalignancyBand, tuple[float, float, float]] = {
    MalignancyBand.BENIGN: (0.20, 0.75, 0.30),
    MalignancyBand.INDETERMINATE: (1.00, 0.80, 0.10),
    MalignancyBand.SUSPICIOUS: (0.90, 0.15, 0.15),
}


def malignancy_color(p_malignant: float) -> tuple[float, float, float]:
    """A green -> yellow -> red ramp over [0, 1], for segment colours."""
    p = min(max(float(p_malignant), 0.0), 1.0)
    green, yellow, red = (0.20, 0.75, 0.30), (1.00, 0.80, 0.10), (0.90, 0.15, 0.15)
    low, high, t = (green, yellow, 2 * p) if p < 0.5 else (yellow, red, 2 * p - 1)
    return tuple(round(a + (b - a) * t, 4) for a, b in zip(low, high, strict=True))


@dataclass(frozen=True, eq=False)
class VoxelMask:
    """A boolean mask kept as its bounding box in the CT's own voxel grid (index, row, col)."""

    start_irc: tuple[int, int, int]
    array: np.ndarray

    def __post_init__(self) -> None:
        if self.array.ndim != 3 or self.array.dtype != np.bool_:
            raise ValueError(f"VoxelMask needs a 3D bool array, got {self.array.dtype}")

    @property
    def voxel_count(self) -> int:
        return int(self.array.sum())

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Where ``array`` sits inside the full volume."""
        return tuple(
            slice(start, start + size)
            for start, size in zip(self.start_irc, self.array.shape, strict=True)
        )

    def paste(self, shape_irc: tuple[int, int, int]) -> np.ndarray:
        """The mask as a full-size bool volume."""
        full = np.zeros(shape_irc, dtype=bool)
        full[self.slices] = self.array
        return full


#: Above this diameter (mm) a finding is a mass, not a nodule (Fleischner's and Lung-RADS' line).
MASS_DIAMETER_MM = 30.0


@dataclass(frozen=True, eq=False)
class Finding:
    """One reported nodule (or mass, above :data:`MASS_DIAMETER_MM`), numbered from 1 in the
    order the result lists them.

    ``diameter_mm`` is the equivalent-sphere diameter of the segment's volume (``volume_mm3``,
    counted on the models' canonical grid). ``measurements`` are what Lung-RADS and RECIST read
    from the segment on the CT's own grid, and ``lung_rads`` the category they give; both are
    None only for findings made outside the pipeline (tests, stand-ins).
    """

    number: int
    center_lps: tuple[float, float, float]
    center_irc: tuple[float, float, float]
    diameter_mm: float
    volume_mm3: float
    mean_hu: float
    p_nodule: float
    p_malignant: float
    mask: VoxelMask
    measurements: LungRadsMeasurements | None = None
    lung_rads: NoduleAssessment | None = None

    def band(self, malignancy_threshold: float = Thresholds.malignancy) -> MalignancyBand:
        return MalignancyBand.of(self.p_malignant, malignancy_threshold)

    @property
    def kind(self) -> str:
        """ "mass" above :data:`MASS_DIAMETER_MM`, else "nodule"."""
        return "mass" if self.diameter_mm > MASS_DIAMETER_MM else "nodule"

    def label(self) -> str:
        """A short name a viewer can show, e.g. ``Nodule 3 - malignancy 0.82``."""
        return f"{self.kind.capitalize()} {self.number} - malignancy {self.p_malignant:.2f}"

    def describe(self) -> str:
        text = (
            f"diameter {self.diameter_mm:.1f} mm, volume {self.volume_mm3:.0f} mm3, "
            f"mean {self.mean_hu:.0f} HU, p(nodule) {self.p_nodule:.2f}, "
            f"p(malignant) {self.p_malignant:.2f}"
        )
        if self.lung_rads is not None:
            text += f", Lung-RADS {self.lung_rads.category.value} ({self.lung_rads.reason})"
        return text


#: candidates.csv's status of a candidate whose centre lies outside the lung mask.
OUTSIDE_LUNG_STATUS = "outside lung"


@dataclass(frozen=True)
class CandidateScore:
    """Every candidate the grouping step produced, kept or not: what FROC and re-filtering need.

    ``max_probability`` is the highest segmentation probability inside the candidate's region;
    ``finding`` is the finding number it became under the result's thresholds, or None;
    ``in_lung`` is False for a candidate whose centre lies outside the lung mask (mediastinum,
    chest wall, below the diaphragm): it was never classified and is never a finding.
    ``p_malignant`` is None where the malignancy classifier did not run: outside the lung, and
    below the result's nodule floor (``DetectionResult.min_nodule_threshold``), where no
    threshold the result accepts makes it a finding.
    """

    center_lps: tuple[float, float, float]
    center_irc: tuple[float, float, float]
    diameter_mm: float
    volume_mm3: float
    mean_hu: float
    max_probability: float
    p_nodule: float
    p_malignant: float | None
    finding: int | None = None
    in_lung: bool = True

    @property
    def status(self) -> str:
        """What became of it: a finding, outside the lung, or below the nodule threshold."""
        if self.finding is not None:
            return "finding"
        return "below nodule threshold" if self.in_lung else OUTSIDE_LUNG_STATUS


@dataclass(frozen=True)
class PatientSummary:
    """The per-patient line a reader sees first.

    ``lung_rads`` is the exam's Lung-RADS category (decision support) from the findings above
    the thresholds: the highest of theirs, 1 when there is none; None when a finding has no
    category (findings made outside the pipeline).
    """

    finding_count: int
    suspicious_count: int
    highest_malignancy: float | None
    text: str
    lung_rads: ExamAssessment | None = None

    @classmethod
    def of(cls, findings: tuple[Finding, ...], thresholds: Thresholds) -> PatientSummary:
        exam = exam_lung_rads(findings)
        if not findings:
            return cls(0, 0, None, "No nodule found above the current thresholds.", exam)
        highest = max(f.p_malignant for f in findings)
        suspicious = sum(f.p_malignant >= thresholds.malignancy for f in findings)
        largest = max(findings, key=lambda f: f.diameter_mm)
        noun = "nodule" if len(findings) == 1 else "nodules"
        text = (
            f"{len(findings)} {noun} found (largest {largest.diameter_mm:.0f} mm); "
            f"{suspicious} above the malignancy threshold; highest malignancy {highest:.2f}."
        )
        return cls(len(findings), suspicious, highest, text, exam)


def exam_lung_rads(findings: tuple[Finding, ...]) -> ExamAssessment | None:
    """The exam's category from these findings; None when one of them has none."""
    if any(f.lung_rads is None for f in findings):
        return None
    return assess_exam([(f.number, f.lung_rads) for f in findings])
