"""The one error type the training tree raises on purpose: bad paths, data or options."""

from __future__ import annotations

from lungcad.errors import LungCADError


class TrainingError(LungCADError):
    """A run cannot start or go on; the message says what to change (the CLI prints one line)."""
