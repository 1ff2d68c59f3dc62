"""Synthetic chest CT phantoms in the LUNA16 layout, deterministic by seed.

Real CT with nodule labels cannot be downloaded here, so tests, the demo and the bundled
weights use these: a body with fat and muscle, lungs near -850 HU on a domed diaphragm,
branching vessel trees tapering from the hila, airways, ribs, spine, heart and aorta, scanner
noise and blur, and nodules of four types, three margins and three locations with a documented
malignancy rule (see :mod:`lungcad.phantom.nodules`).
"""

from lungcad.phantom.cases import PhantomCase, PhantomSpec, make_case, make_spec, series_uid_for
from lungcad.phantom.dataset import PhantomOutputExistsError, write_dataset
from lungcad.phantom.spec import (
    NoduleLocation,
    NoduleMargin,
    NoduleSpec,
    NoduleType,
    PhantomSize,
    RealismVersion,
    Tissue,
)

__all__ = [
    "NoduleLocation",
    "NoduleMargin",
    "NoduleSpec",
    "NoduleType",
    "PhantomCase",
    "PhantomOutputExistsError",
    "PhantomSize",
    "PhantomSpec",
    "RealismVersion",
    "Tissue",
    "make_case",
    "make_spec",
    "series_uid_for",
    "write_dataset",
]
