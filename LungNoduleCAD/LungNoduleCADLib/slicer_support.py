"""Which 3D Slicer releases LungNoduleCAD supports, and the one message for the others.

Slicer 5.10 is the first release with Python 3.12 (5.6 and 5.8 ship Python 3.9). The engine uses
Python 3.10+ features (``zip(strict=True)``, ``dataclass(kw_only=True)``), and CI tests Python 3.11
and 3.12, so an older Slicer is refused before anything else of the extension is imported.

This file runs on those older Slicers to say so: it must stay importable on Python 3.9 (no 3.10+
syntax, no annotations evaluated at run time, standard library only). ``.ci/run`` imports it with
Python 3.9 and ``LungNoduleCAD/Testing/test_slicer_support.py`` parses it with the 3.9 grammar.
"""

from __future__ import annotations

#: The oldest supported Slicer release, (major, minor).
MIN_SLICER = (5, 10)
#: The Python that release ships, (major, minor): the oldest Python the extension runs on in Slicer.
MIN_PYTHON = (3, 12)

DOWNLOAD_URL = "https://download.slicer.org"


def unsupported_reason(
    slicer_version: tuple[int, ...], python_version: tuple[int, ...]
) -> str | None:
    """None where this Slicer and its Python run the extension, else one message for the user.

    ``slicer_version`` is (major, minor), e.g. ``(slicer.app.majorVersion,
    slicer.app.minorVersion)``; ``python_version`` is ``sys.version_info`` or (major, minor).
    Only the first two numbers of each count.
    """
    found_slicer = (int(slicer_version[0]), int(slicer_version[1]))
    found_python = (int(python_version[0]), int(python_version[1]))
    if found_slicer >= MIN_SLICER and found_python >= MIN_PYTHON:
        return None
    return (
        f"LungNoduleCAD needs 3D Slicer {_dotted(MIN_SLICER)} or later (Python "
        f"{_dotted(MIN_PYTHON)}); this is Slicer {_dotted(found_slicer)} with Python "
        f"{_dotted(found_python)}. Install the current Slicer release from {DOWNLOAD_URL}, then "
        "install LungNoduleCAD from its Extensions Manager."
    )


def _dotted(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"
