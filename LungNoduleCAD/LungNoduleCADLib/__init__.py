# Slicer names a scripted module's helper package <Module>Lib (like DICOMLib):
# ruff: noqa: N999
"""Slicer-side helpers for the LungNoduleCAD module.

Nothing here imports ``qt``, ``ctk`` or ``slicer.ScriptedLoadableModule`` at module level, so the
same code runs in the Slicer GUI, in ``Slicer --no-main-window`` batch mode and against the PyPI
``slicer-core`` package in plain-Python tests. The one exception is the panel (``widget.py``),
which imports ``qt`` when it is built and only draws :mod:`LungNoduleCADLib.controller`. The
engine (``lungcad``) never imports this package.
"""
