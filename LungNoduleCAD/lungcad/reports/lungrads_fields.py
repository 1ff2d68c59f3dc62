"""How Lung-RADS measurements and categories are written: results.json objects, csv cells.

A finding made outside the pipeline (a stand-in without measurements) writes nulls / empty
cells, never made-up numbers.
"""

from __future__ import annotations

from typing import Any

from lungcad.lungrads import AxialAxes, ExamAssessment, LungRadsMeasurements, NoduleAssessment
from lungcad.pipeline.findings import Finding
from lungcad.reports.common import round_floats

__all__ = [
    "LUNG_RADS_COLUMNS",
    "exam_json",
    "lung_rads_cells",
    "lung_rads_json",
    "measurements_json",
]

#: candidates.csv's Lung-RADS columns (after the older ones; empty for non-findings).
LUNG_RADS_COLUMNS = (
    "mean_diameter_mm", "long_axis_mm", "short_axis_mm", "solid_mean_diameter_mm",
    "segment_volume_mm3", "recist_longest_mm", "nodule_type", "type_source", "lung_rads",
)  # fmt: skip


def _axes_json(axes: AxialAxes) -> dict[str, Any]:
    return {
        "long_axis_mm": axes.long_axis_mm,
        "short_axis_mm": axes.short_axis_mm,
        "mean_diameter_mm": axes.mean_diameter_mm,
        "axial_s_mm": round(axes.s_mm, 3),
        "long_axis_lps": [round_floats(p) for p in axes.long_axis_lps],
        "short_axis_lps": [round_floats(p) for p in axes.short_axis_lps],
    }


def measurements_json(m: LungRadsMeasurements | None) -> dict[str, Any] | None:
    """A finding's ``lung_rads_measurements`` object (mm to 0.1, volume to 1 mm3)."""
    if m is None:
        return None
    return {
        **_axes_json(m.axes),
        "solid_component": None if m.solid is None else _axes_json(m.solid),
        "solid_hu_threshold": m.solid_hu_threshold,
        "volume_mm3": m.volume_mm3,
        "recist_longest_mm": m.recist_longest_mm,
    }


def lung_rads_json(a: NoduleAssessment | None) -> dict[str, Any] | None:
    """A finding's ``lung_rads`` object: category, and the type and margin it was read with."""
    if a is None:
        return None
    return {
        "category": a.category.value,
        "type": a.nodule_type.value,
        "type_source": a.type_source.value,
        "margin": None if a.margin is None else a.margin.value,
        "margin_source": a.margin_source.value,
        "mean_diameter_mm": a.mean_diameter_mm,
        "solid_mean_diameter_mm": a.solid_mean_diameter_mm,
        "reason": a.reason,
    }


def exam_json(exam: ExamAssessment | None) -> dict[str, Any] | None:
    """The summary's ``lung_rads`` object: the exam's category and its management."""
    if exam is None:
        return None
    return {
        "category": exam.category.value,
        "descriptor": exam.category.descriptor,
        "management": exam.management,
        "finding_numbers": list(exam.finding_numbers),
        "assumed_type_count": exam.assumed_type_count,
        "version": exam.version,
        "decision_support": exam.note,
        "text": exam.text,
    }


def lung_rads_cells(f: Finding | None) -> tuple[str, ...]:
    """The :data:`LUNG_RADS_COLUMNS` cells of a candidate row (empty unless it is a finding)."""
    m, a = (None, None) if f is None else (f.measurements, f.lung_rads)
    sizes = (
        ("",) * 6
        if m is None
        else (
            f"{m.mean_diameter_mm:.1f}", f"{m.axes.long_axis_mm:.1f}",
            f"{m.axes.short_axis_mm:.1f}", f"{m.solid_mean_diameter_mm:.1f}",
            f"{m.volume_mm3:.0f}", f"{m.recist_longest_mm:.1f}",
        )
    )  # fmt: skip
    kind = ("",) * 3 if a is None else (a.nodule_type.value, a.type_source.value, a.category.value)
    return (*sizes, *kind)
