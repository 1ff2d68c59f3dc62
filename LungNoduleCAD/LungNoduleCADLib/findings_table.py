"""The findings table's columns (with units for the view's header) and its Lung-RADS cells."""

from __future__ import annotations

from lungcad.characteristics import TypeSource
from lungcad.pipeline import Finding
from LungNoduleCADLib.review import FINDING_COLUMN

#: Findings table: (column name, VTK array class, unit); the view's header shows "name [unit]".
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("Finding", "vtkIntArray", ""),
    ("Name", "vtkStringArray", ""),
    ("Band", "vtkStringArray", ""),
    ("Malignancy", "vtkDoubleArray", "probability"),
    ("Nodule", "vtkDoubleArray", "probability"),
    ("Lung-RADS", "vtkStringArray", ""),
    ("Type", "vtkStringArray", ""),
    ("Mean diameter", "vtkDoubleArray", "mm"),
    ("Diameter", "vtkDoubleArray", "mm"),
    ("Volume", "vtkDoubleArray", "mm3"),
    ("Mean HU", "vtkDoubleArray", "HU"),
    ("R", "vtkDoubleArray", "mm"),
    ("A", "vtkDoubleArray", "mm"),
    ("S", "vtkDoubleArray", "mm"),
    ("Segment", "vtkStringArray", ""),
    ("Review", "vtkStringArray", ""),
)
assert TABLE_COLUMNS[FINDING_COLUMN][0] == "Finding"  # the panel reads numbers there


def lung_rads_cells(finding: Finding) -> tuple[str, str, float]:
    """The table's Lung-RADS, Type and Mean diameter cells: the category, the type it was read
    with ("solid (assumed)" where no classifier gave one, so the reader knows to check it) and
    Lung-RADS' mean diameter; empty / NaN for a finding made outside the pipeline."""
    a, m = finding.lung_rads, finding.measurements
    mean = float("nan") if m is None else m.axes.mean_diameter_mm
    if a is None:
        return "", "", mean
    kind = a.nodule_type.value
    if a.type_source is TypeSource.ASSUMED_SOLID:
        kind += " (assumed)"
    return a.category.value, kind, mean
