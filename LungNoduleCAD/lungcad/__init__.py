"""LungNoduleCAD engine: pure Python, no Slicer import.

The engine reads chest CT into one type (:class:`lungcad.ct.CT`), maps between patient LPS
millimetres and voxels (:mod:`lungcad.geometry`), makes synthetic chest phantoms in the LUNA16
layout (:mod:`lungcad.phantom`) and reads LUNA16-style datasets (:mod:`lungcad.luna16`).
"""

from lungcad.ct import CT, Geometry

__all__ = ["CT", "Geometry"]
__version__ = "0.1.0"
