"""How one case of a cohort run ended, as summary.csv and the command lines spell it.

A ``StrEnum``, so the member is the very string written to summary.csv (``ok``, ``failed``;
``skipped`` is written as ``ok``, the row of the run that made the case) and a row read back from
an old file converts with ``Outcome(row["status"])``.
"""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    OK = "ok"
    SKIPPED = "skipped"  # done before with the same input and settings (resume)
    FAILED = "failed"
