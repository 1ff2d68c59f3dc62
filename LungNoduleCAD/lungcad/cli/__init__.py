"""The ``lungcad`` command line (:mod:`lungcad.cli.app`) and the options its commands share
(:mod:`lungcad.cli.options`).

``main`` is imported lazily so that importing :mod:`lungcad.cli.options` (training and the
Slicer batch do) does not build the whole command line.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The console entry point ``lungcad`` (``lungcad.cli:main``)."""
    from lungcad.cli.app import main as run

    return run(argv)
