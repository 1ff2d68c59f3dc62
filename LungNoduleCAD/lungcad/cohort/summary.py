"""summary.csv: one row per case ever run into OUT, merged under a file lock.

Shards writing into one folder keep each other's rows; a summary that cannot be written is
reported by the runner, not raised.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lungcad.atomic import write_text_atomic
from lungcad.cohort_status import Outcome
from lungcad.safe_names import printable

try:  # POSIX; on Windows shards writing into one folder are not locked against each other
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = (
    "case_id", "input", "status", "findings", "highest_malignancy", "suspicious", "seconds",
    "error", "warnings", "rerun_reason",
)  # fmt: skip
#: How a case's warnings share one summary.csv cell.
WARNING_SEPARATOR = " | "
SUMMARY_FILE = "summary.csv"
#: How much of an error message goes into summary.csv (the whole traceback is in error.txt).
MAX_ERROR_CHARS = 500


def one_line(exc: BaseException) -> str:
    """An exception as one printable line of at most MAX_ERROR_CHARS (for a summary cell)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return printable(f"{type(exc).__name__}: {text}", MAX_ERROR_CHARS)


@dataclass(frozen=True)
class CaseStatus:
    """One row of summary.csv; ``status`` is ok, skipped (done before) or failed."""

    case_id: str
    input: str
    status: Outcome
    findings: int | None = None
    highest_malignancy: float | None = None
    suspicious: int | None = None
    seconds: float | None = None
    error: str = ""
    warnings: tuple[str, ...] = ()  # where the scan lies outside what the models know
    rerun_reason: str = ""  # why a case found done before was computed again

    def row(self) -> dict[str, str]:
        def fmt(value: float | int | None, spec: str) -> str:
            return "" if value is None else format(value, spec)

        return {
            "case_id": self.case_id,
            "input": self.input,
            "status": str(Outcome.OK if self.status == Outcome.SKIPPED else self.status),
            "findings": fmt(self.findings, "d"),
            "highest_malignancy": fmt(self.highest_malignancy, ".4f"),
            "suspicious": fmt(self.suspicious, "d"),
            "seconds": fmt(self.seconds, ".1f"),
            "error": self.error,
            "warnings": WARNING_SEPARATOR.join(self.warnings),
            "rerun_reason": self.rerun_reason,
        }


class CohortStatuses(list[CaseStatus]):
    """The statuses of a run, in case order; ``summary_error`` says why summary.csv could not
    be written (None when it was)."""

    summary_error: str | None = None


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    """An exclusive lock on OUT/.summary.lock while summary.csv is read, merged and replaced."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with (out_dir / ".summary.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_summary(path: Path) -> dict[str, dict[str, str]]:
    """summary.csv rows by case id (empty when there is no file yet)."""
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["case_id"]: row for row in csv.DictReader(fh)}


def write_summary(out_dir: Path, statuses: Sequence[CaseStatus]) -> Path:
    """Merge this run's rows into OUT/summary.csv (rows of other cases are kept)."""
    path = out_dir / SUMMARY_FILE
    with _locked(out_dir):
        rows = read_summary(path)
        for status in statuses:
            if status.status == Outcome.SKIPPED and status.case_id in rows:
                continue  # keep the row of the run that made it
            rows[status.case_id] = status.row()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, SUMMARY_COLUMNS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for row in sorted(rows.values(), key=lambda r: (r.get("input", ""), r["case_id"])):
            writer.writerow(row)
        write_text_atomic(path, buffer.getvalue())
    return path


def try_write_summary(out_dir: Path, statuses: Sequence[CaseStatus]) -> str | None:
    """write_summary, but a failure (read-only folder, full disk) is logged and returned."""
    try:
        write_summary(out_dir, statuses)
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        log.error("%s: summary not written: %s", out_dir / SUMMARY_FILE, one_line(exc))
        return one_line(exc)
    return None
