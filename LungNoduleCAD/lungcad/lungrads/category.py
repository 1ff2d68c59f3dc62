"""Lung-RADS v2022 categories at baseline screening, per nodule and per exam.

Decision support only: the category is read from automatic measurements of the findings above
the current thresholds and from a nodule type that is given or assumed (the engine has no type
classifier yet), so a radiologist confirms type, size and margin before it is reported.

Baseline rules (mean diameters to 0.1 mm, :mod:`lungcad.lungrads.measure`):

- 1: no nodule, or a nodule with benign calcification (type ``calcified``);
- 2: solid < 6 mm; part-solid < 6 mm total; ground-glass < 30 mm;
- 3: solid 6 to < 8 mm; part-solid >= 6 mm total with a solid part < 6 mm; ground-glass >= 30 mm;
- 4A: solid 8 to < 15 mm; part-solid >= 6 mm total with a solid part 6 to < 8 mm;
- 4B: solid >= 15 mm; part-solid >= 6 mm total with a solid part >= 8 mm;
- 4X: category 3, 4A or 4B with spiculation (an unknown margin counts as not spiculated).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from lungcad.characteristics import MarginSource, NoduleMargin, NoduleType, TypeSource
from lungcad.lungrads.measure import LungRadsMeasurements, tenths

LUNG_RADS_VERSION = "Lung-RADS v2022 (baseline screening)"

#: Size thresholds in tenths of a millimetre (compared with mean diameters rounded to 0.1 mm).
SOLID_3_TENTHS = 60  # solid >= 6 mm: category 3
SOLID_4A_TENTHS = 80  # solid >= 8 mm: 4A
SOLID_4B_TENTHS = 150  # solid >= 15 mm: 4B
PART_SOLID_TOTAL_TENTHS = 60  # part-solid >= 6 mm total: at least 3
PART_SOLID_4A_TENTHS = 60  # solid component >= 6 mm: 4A
PART_SOLID_4B_TENTHS = 80  # solid component >= 8 mm: 4B
GROUND_GLASS_3_TENTHS = 300  # ground-glass >= 30 mm: 3

DECISION_SUPPORT = (
    "Decision support, not a diagnosis: Lung-RADS read from automatic measurements of the "
    "findings above the current thresholds; a radiologist confirms type, size and margin."
)


class LungRadsCategory(enum.Enum):
    """The baseline categories this engine assigns (0 and S need information it does not have)."""

    C1 = "1"
    C2 = "2"
    C3 = "3"
    C4A = "4A"
    C4B = "4B"
    C4X = "4X"

    @property
    def rank(self) -> int:
        """Order of concern: the exam takes its highest-ranked nodule."""
        return list(LungRadsCategory).index(self)

    @property
    def descriptor(self) -> str:
        return _DESCRIPTORS[self]

    @property
    def management(self) -> str:
        """The v2022 baseline management recommendation, in short."""
        return _MANAGEMENT[self]


_DESCRIPTORS = {
    LungRadsCategory.C1: "Negative",
    LungRadsCategory.C2: "Benign appearance or behavior",
    LungRadsCategory.C3: "Probably benign",
    LungRadsCategory.C4A: "Suspicious",
    LungRadsCategory.C4B: "Very suspicious",
    LungRadsCategory.C4X: "Very suspicious",
}
_ANNUAL = "Continue annual screening with LDCT in 12 months."
_FURTHER = (
    "Diagnostic chest CT with or without contrast; PET/CT may be considered if there is a >= 8 mm "
    "solid nodule or solid component; tissue sampling; and/or referral for further clinical "
    "evaluation."
)
_MANAGEMENT = {
    LungRadsCategory.C1: _ANNUAL,
    LungRadsCategory.C2: _ANNUAL,
    LungRadsCategory.C3: "6-month LDCT.",
    LungRadsCategory.C4A: (
        "3-month LDCT; PET/CT may be considered if there is a >= 8 mm solid nodule or solid "
        "component."
    ),
    LungRadsCategory.C4B: _FURTHER,
    LungRadsCategory.C4X: _FURTHER,
}


def categorize(
    nodule_type: NoduleType,
    mean_diameter_mm: float,
    solid_mean_diameter_mm: float = 0.0,
    spiculated: bool = False,
) -> LungRadsCategory:
    """The baseline category of one nodule (see the module docstring for the rules)."""
    size = tenths(mean_diameter_mm)
    solid = tenths(solid_mean_diameter_mm)
    if nodule_type is NoduleType.CALCIFIED:
        return LungRadsCategory.C1
    if nodule_type is NoduleType.GROUND_GLASS:
        category = LungRadsCategory.C3 if size >= GROUND_GLASS_3_TENTHS else LungRadsCategory.C2
    elif nodule_type is NoduleType.PART_SOLID:
        if size < PART_SOLID_TOTAL_TENTHS:
            category = LungRadsCategory.C2
        elif solid >= PART_SOLID_4B_TENTHS:
            category = LungRadsCategory.C4B
        elif solid >= PART_SOLID_4A_TENTHS:
            category = LungRadsCategory.C4A
        else:
            category = LungRadsCategory.C3
    elif nodule_type is NoduleType.SOLID:
        if size >= SOLID_4B_TENTHS:
            category = LungRadsCategory.C4B
        elif size >= SOLID_4A_TENTHS:
            category = LungRadsCategory.C4A
        elif size >= SOLID_3_TENTHS:
            category = LungRadsCategory.C3
        else:
            category = LungRadsCategory.C2
    else:
        raise ValueError(f"no Lung-RADS rule for nodule type {nodule_type!r}")
    if spiculated and category.rank >= LungRadsCategory.C3.rank:
        return LungRadsCategory.C4X
    return category


@dataclass(frozen=True)
class NoduleAssessment:
    """One finding's category, the type and margin it was read with, and where they came from."""

    category: LungRadsCategory
    nodule_type: NoduleType
    type_source: TypeSource
    margin: NoduleMargin | None
    margin_source: MarginSource
    mean_diameter_mm: float
    solid_mean_diameter_mm: float | None  # part-solid only

    @property
    def reason(self) -> str:
        """Why, in a line: e.g. ``solid (assumed solid), mean diameter 7.2 mm``."""
        parts = [f"{self.nodule_type.value} ({self.type_source.value})"]
        parts.append(f"mean diameter {self.mean_diameter_mm:.1f} mm")
        if self.solid_mean_diameter_mm is not None:
            parts.append(f"solid component {self.solid_mean_diameter_mm:.1f} mm")
        if self.margin is NoduleMargin.SPICULATED:
            parts.append("spiculated")
        return ", ".join(parts)


def assess_nodule(
    measurements: LungRadsMeasurements,
    nodule_type: NoduleType | None = None,
    margin: NoduleMargin | None = None,
) -> NoduleAssessment:
    """The category of one finding; an unknown type is assumed solid, an unknown margin not
    spiculated, and the assessment says so."""
    type_source = TypeSource.GIVEN if nodule_type is not None else TypeSource.ASSUMED_SOLID
    margin_source = (
        MarginSource.GIVEN if margin is not None else MarginSource.ASSUMED_NOT_SPICULATED
    )
    kind = nodule_type or NoduleType.SOLID
    solid = measurements.solid_mean_diameter_mm if kind is NoduleType.PART_SOLID else None
    return NoduleAssessment(
        category=categorize(
            kind,
            measurements.mean_diameter_mm,
            solid or 0.0,
            spiculated=margin is NoduleMargin.SPICULATED,
        ),
        nodule_type=kind,
        type_source=type_source,
        margin=margin,
        margin_source=margin_source,
        mean_diameter_mm=measurements.mean_diameter_mm,
        solid_mean_diameter_mm=solid,
    )


@dataclass(frozen=True)
class ExamAssessment:
    """The exam's category: its highest nodule category (1 when there is none)."""

    category: LungRadsCategory
    finding_numbers: tuple[int, ...]  # the findings of that category
    assumed_type_count: int  # findings whose type was assumed solid
    version: str = LUNG_RADS_VERSION
    note: str = DECISION_SUPPORT

    @property
    def management(self) -> str:
        return self.category.management

    @property
    def text(self) -> str:
        """One line for a summary, e.g. ``Lung-RADS 3 (Probably benign): 6-month LDCT. ...``."""
        line = f"Lung-RADS {self.category.value} ({self.category.descriptor}): {self.management}"
        if self.assumed_type_count:
            noun = "finding" if self.assumed_type_count == 1 else "findings"
            line += f" Type assumed solid for {self.assumed_type_count} {noun}."
        return f"{line} {self.note}"


def assess_exam(assessed: Sequence[tuple[int, NoduleAssessment]]) -> ExamAssessment:
    """The exam's category from its findings' ``(number, assessment)`` pairs."""
    if not assessed:
        return ExamAssessment(LungRadsCategory.C1, (), 0)
    top = max(a.category.rank for _, a in assessed)
    category = list(LungRadsCategory)[top]
    return ExamAssessment(
        category=category,
        finding_numbers=tuple(n for n, a in assessed if a.category is category),
        assumed_type_count=sum(a.type_source is TypeSource.ASSUMED_SOLID for _, a in assessed),
    )
