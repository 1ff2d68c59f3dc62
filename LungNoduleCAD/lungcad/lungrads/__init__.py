"""Lung-RADS: measurements of each finding's segment and the v2022 baseline category.

:mod:`~lungcad.lungrads.measure` reads long/short axis, mean diameter, solid component, volume
and RECIST longest diameter from a segment on its CT's own grid; :mod:`~lungcad.lungrads.category`
turns them, with a given or assumed nodule type and margin, into per-nodule and per-exam
categories (decision support).
"""

from lungcad.lungrads.category import (
    DECISION_SUPPORT,
    LUNG_RADS_VERSION,
    ExamAssessment,
    LungRadsCategory,
    NoduleAssessment,
    assess_exam,
    assess_nodule,
    categorize,
)
from lungcad.lungrads.measure import (
    SOLID_COMPONENT_HU,
    AxialAxes,
    LungRadsMeasurements,
    measure_segment,
    solid_part,
    tenths,
)

__all__ = [
    "DECISION_SUPPORT",
    "LUNG_RADS_VERSION",
    "SOLID_COMPONENT_HU",
    "AxialAxes",
    "ExamAssessment",
    "LungRadsCategory",
    "LungRadsMeasurements",
    "NoduleAssessment",
    "assess_exam",
    "assess_nodule",
    "categorize",
    "measure_segment",
    "solid_part",
    "tenths",
]
