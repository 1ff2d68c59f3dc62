"""Lung-RADS v2022 baseline categories: every size boundary just below, at and just above, for
every nodule type, with and without spiculation; per-exam category and management."""

from __future__ import annotations

import pytest

from lungcad.characteristics import MarginSource, NoduleMargin, NoduleType, TypeSource
from lungcad.lungrads.category import (
    DECISION_SUPPORT,
    LungRadsCategory,
    assess_exam,
    assess_nodule,
    categorize,
)
from lungcad.lungrads.measure import AxialAxes, LungRadsMeasurements

C = LungRadsCategory
SOLID, PART, GG, CALC = (
    NoduleType.SOLID,
    NoduleType.PART_SOLID,
    NoduleType.GROUND_GLASS,
    NoduleType.CALCIFIED,
)

#: (type, mean diameter, solid component mean diameter, category, category if spiculated)
BOUNDARIES = [
    # solid: 6, 8 and 15 mm
    (SOLID, 5.9, 0.0, C.C2, C.C2),
    (SOLID, 6.0, 0.0, C.C3, C.C4X),
    (SOLID, 6.1, 0.0, C.C3, C.C4X),
    (SOLID, 7.9, 0.0, C.C3, C.C4X),
    (SOLID, 8.0, 0.0, C.C4A, C.C4X),
    (SOLID, 8.1, 0.0, C.C4A, C.C4X),
    (SOLID, 14.9, 0.0, C.C4A, C.C4X),
    (SOLID, 15.0, 0.0, C.C4B, C.C4X),
    (SOLID, 15.1, 0.0, C.C4B, C.C4X),
    # part-solid: 6 mm total (the solid part as large as it can be below it)
    (PART, 5.9, 5.9, C.C2, C.C2),
    (PART, 6.0, 0.0, C.C3, C.C4X),
    (PART, 6.1, 0.0, C.C3, C.C4X),
    # part-solid: solid component 6 and 8 mm
    (PART, 20.0, 5.9, C.C3, C.C4X),
    (PART, 20.0, 6.0, C.C4A, C.C4X),
    (PART, 20.0, 6.1, C.C4A, C.C4X),
    (PART, 20.0, 7.9, C.C4A, C.C4X),
    (PART, 20.0, 8.0, C.C4B, C.C4X),
    (PART, 20.0, 8.1, C.C4B, C.C4X),
    # ground-glass: 30 mm (a solid reading does not count)
    (GG, 29.9, 20.0, C.C2, C.C2),
    (GG, 30.0, 0.0, C.C3, C.C4X),
    (GG, 30.1, 0.0, C.C3, C.C4X),
    # calcified: benign at every size boundary of the other types
    *((CALC, size, 0.0, C.C1, C.C1) for size in (5.9, 6.0, 7.9, 8.0, 14.9, 15.0, 29.9, 30.0)),
]


@pytest.mark.parametrize(("kind", "mean", "solid", "plain", "spiculated"), BOUNDARIES)
def test_category_at_each_boundary(kind, mean, solid, plain, spiculated):
    assert categorize(kind, mean, solid) is plain
    assert categorize(kind, mean, solid, spiculated=True) is spiculated


@pytest.mark.parametrize(("mean", "expected"), [(5.949, C.C2), (5.95, C.C3), (7.95, C.C4A)])
def test_sizes_are_compared_after_rounding_to_a_tenth(mean, expected):
    assert categorize(SOLID, mean) is expected


def test_a_solid_reading_does_not_change_a_solid_nodule():
    assert categorize(SOLID, 7.0, 7.0) is C.C3


def _measured(mean: float, solid: float | None) -> LungRadsMeasurements:
    ends = ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0))

    def axes(mm: float) -> AxialAxes:
        return AxialAxes(mm, mm, mm, 0.0, ends, ends)

    return LungRadsMeasurements(
        axes=axes(mean),
        solid=None if solid is None else axes(solid),
        volume_mm3=100.0,
        recist_longest_mm=mean,
    )


def test_unknown_type_is_assumed_solid_and_says_so():
    a = assess_nodule(_measured(6.5, 6.5))
    assert a.category is C.C3
    assert a.nodule_type is NoduleType.SOLID
    assert a.type_source is TypeSource.ASSUMED_SOLID
    assert a.type_source.value == "assumed solid"
    assert a.margin is None
    assert a.margin_source.value == "assumed not spiculated"
    assert a.solid_mean_diameter_mm is None
    assert a.reason == "solid (assumed solid), mean diameter 6.5 mm"


def test_given_part_solid_reads_the_solid_component():
    a = assess_nodule(_measured(12.0, 6.2), NoduleType.PART_SOLID, NoduleMargin.LOBULATED)
    assert a.category is C.C4A
    assert a.type_source is TypeSource.GIVEN
    assert a.margin_source is MarginSource.GIVEN
    assert a.solid_mean_diameter_mm == 6.2
    assert a.reason == "part-solid (given), mean diameter 12.0 mm, solid component 6.2 mm"


def test_part_solid_without_a_solid_voxel_has_a_zero_solid_component():
    a = assess_nodule(_measured(12.0, None), NoduleType.PART_SOLID)
    assert (a.category, a.solid_mean_diameter_mm) == (C.C3, 0.0)


def test_spiculated_margin_makes_4x():
    a = assess_nodule(_measured(9.0, None), margin=NoduleMargin.SPICULATED)
    assert a.category is C.C4X
    assert a.reason.endswith(", spiculated")


def test_exam_without_findings_is_category_1():
    exam = assess_exam([])
    assert exam.category is C.C1
    assert exam.finding_numbers == ()
    assert exam.management == "Continue annual screening with LDCT in 12 months."
    assert exam.text == (
        "Lung-RADS 1 (Negative): Continue annual screening with LDCT in 12 months. "
        + DECISION_SUPPORT
    )


def test_exam_takes_the_highest_nodule_category_and_its_management():
    findings = [
        (1, assess_nodule(_measured(5.0, None))),  # 2
        (2, assess_nodule(_measured(9.0, None))),  # 4A
        (3, assess_nodule(_measured(6.5, None))),  # 3
        (4, assess_nodule(_measured(10.0, None))),  # 4A
        (5, assess_nodule(_measured(40.0, None), NoduleType.GROUND_GLASS)),  # 3
    ]
    exam = assess_exam(findings)
    assert exam.category is C.C4A
    assert exam.finding_numbers == (2, 4)
    assert exam.assumed_type_count == 4
    assert exam.management == (
        "3-month LDCT; PET/CT may be considered if there is a >= 8 mm solid nodule or solid "
        "component."
    )
    assert exam.text.startswith("Lung-RADS 4A (Suspicious): 3-month LDCT; PET/CT may be considered")
    assert "Type assumed solid for 4 findings." in exam.text
    assert exam.text.endswith(DECISION_SUPPORT)


def test_4x_outranks_4b():
    exam = assess_exam(
        [
            (1, assess_nodule(_measured(20.0, None))),
            (2, assess_nodule(_measured(7.0, None), margin=NoduleMargin.SPICULATED)),
        ]
    )
    assert (exam.category, exam.finding_numbers) == (C.C4X, (2,))


def test_every_category_has_a_descriptor_and_management():
    assert [c.value for c in C] == ["1", "2", "3", "4A", "4B", "4X"]
    assert [c.rank for c in C] == [0, 1, 2, 3, 4, 5]
    assert C.C3.management == "6-month LDCT."
    assert C.C4B.management == C.C4X.management
    assert C.C4B.management.startswith("Diagnostic chest CT with or without contrast")
    assert all(c.descriptor for c in C)
