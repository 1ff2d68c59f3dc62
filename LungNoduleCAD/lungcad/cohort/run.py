"""Run a detector over a cohort's cases: resume, record failures, merge summary.csv.

Each case is written to OUT/<case_id>/ (see :mod:`lungcad.reports.case`), and every case folder
is checked to lie inside OUT. Resume: a case whose results.json loads and whose fingerprint
(:mod:`lungcad.fingerprint`) matches this run is skipped unless ``overwrite``; one that no longer
matches is rerun, with the reason logged and recorded. A case that fails leaves
OUT/<case_id>/error.txt when its folder can be written, and always a ``failed`` row; the run
goes on.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from lungcad.atomic import write_text_atomic
from lungcad.cohort.case_ids import CaseInput
from lungcad.cohort.summary import (
    CaseStatus,
    CohortStatuses,
    one_line,
    try_write_summary,
)
from lungcad.cohort_status import Outcome
from lungcad.ct import CT
from lungcad.errors import LungCADError
from lungcad.fingerprint import RunSettings, rerun_reason, run_fingerprint
from lungcad.io import read_ct
from lungcad.reports import (
    ExtraWriter,
    ResultLike,
    ResultsFileError,
    read_results,
    write_case_outputs,
)
from lungcad.safe_names import check_output_root, confined_path

log = logging.getLogger(__name__)

ERROR_FILE = "error.txt"

Detector = Callable[[CT], ResultLike]


def _done(folder: Path) -> dict | None:
    """results.json of a finished case, or None."""
    try:
        return read_results(folder / "results.json")
    except ResultsFileError:
        return None


def _settings_of(detector: Detector) -> RunSettings | None:
    """The detector's run settings when it can tell them (the cascade can; test stand-ins may
    not, and then resume compares the input alone)."""
    settings = getattr(detector, "settings", None)
    return settings() if callable(settings) else None


def _case_folder(out_dir: Path, case: CaseInput) -> Path:
    return confined_path(out_dir, case.case_id)


def _resume_state(
    case: CaseInput, out_dir: Path, settings: RunSettings | None
) -> tuple[dict | None, str]:
    """(results.json of a case done with these settings, "") or (None, why it runs again; ""
    when it was never finished)."""
    try:
        doc = _done(_case_folder(out_dir, case))
    except LungCADError:
        return None, ""
    if doc is None:
        return None, ""
    reason = rerun_reason(doc.get("fingerprint"), run_fingerprint(case.path, settings))
    return (None, reason) if reason else (doc, "")


def _record_failure(folder: Path | None, case: CaseInput, exc: BaseException) -> str:
    """Write error.txt into the case folder if it can be; returns the summary's error text.

    The folder may be what failed (a name too long, a read-only output, a file in the way): then
    the summary row alone records the failure, and says that error.txt is missing.
    """
    error = one_line(exc)
    if folder is None:
        return error
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(
            folder / ERROR_FILE, f"{error}\ninput: {case.path}\n\n{traceback.format_exc()}"
        )
    except OSError as write_exc:
        log.warning("%s: error.txt not written: %s", case.case_id, one_line(write_exc))
        return f"{error} (error.txt not written: {one_line(write_exc)})"
    return error


def _run_case(
    case: CaseInput,
    out_dir: Path,
    detector: Detector,
    reader: Callable[[Path], CT],
    settings: RunSettings | None = None,
    reason: str = "",
    extra_writer: ExtraWriter | None = None,
) -> CaseStatus:
    started = time.perf_counter()
    folder: Path | None = None
    try:
        folder = _case_folder(out_dir, case)
        if reason:  # stale results must not pass for this run's if the case fails now
            (folder / "results.json").unlink(missing_ok=True)
        fingerprint = run_fingerprint(case.path, settings)  # before the read: what was read
        ct = reader(case.path)
        result = detector(ct)
        # an unfinished folder (no valid results.json) holds nothing worth keeping
        outputs = write_case_outputs(
            result,
            ct,
            folder,
            case_id=case.case_id,
            source=case.path,
            overwrite=True,
            fingerprint=fingerprint,
            rerun_reason=reason or None,
            extra_writer=extra_writer,
        )
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # MemoryError too: one case must not end the cohort
        seconds = time.perf_counter() - started
        log.warning("%s failed: %s", case.case_id, one_line(exc))
        error = _record_failure(folder, case, exc)
        return CaseStatus(
            case.case_id,
            str(case.path),
            Outcome.FAILED,
            seconds=seconds,
            error=error,
            rerun_reason=reason,
        )
    with contextlib.suppress(OSError):
        (folder / ERROR_FILE).unlink(missing_ok=True)
    s = result.summary
    return CaseStatus(
        case.case_id,
        str(case.path),
        Outcome.OK,
        findings=s.finding_count,
        highest_malignancy=s.highest_malignancy,
        suspicious=s.suspicious_count,
        seconds=time.perf_counter() - started,
        warnings=outputs.warnings,
        rerun_reason=reason,
    )


def _skipped(case: CaseInput, doc: dict) -> CaseStatus:
    s = doc["summary"]
    return CaseStatus(
        case.case_id,
        str(case.path),
        Outcome.SKIPPED,
        findings=s["finding_count"],
        highest_malignancy=s["highest_malignancy"],
        suspicious=s["suspicious_count"],
        seconds=doc["timings_s"].get("total"),
        warnings=tuple(doc.get("warnings", ())),
    )


def run_cohort(
    cases: Sequence[CaseInput],
    out_dir: Path | str,
    detector: Detector,
    *,
    overwrite: bool = False,
    progress: bool = True,
    reader: Callable[[Path], CT] = read_ct,
    settings: RunSettings | None = None,
    extra_writer: ExtraWriter | None = None,
) -> CohortStatuses:
    """Run ``detector`` on each case not yet done, write its outputs, and merge summary.csv.

    ``detector`` maps a CT to a DetectionResult (injectable, so tests need no network);
    ``reader`` reads a case's CT; ``settings`` (default: ``detector.settings()`` where it has
    one) is what resume compares besides the input; ``extra_writer`` adds the caller's own files
    to each case before its results.json (Slicer's storage nodes: LungNoduleCADLib.batch). OUT
    is checked first (OutputRootError).
    Returns one status per case, in order.
    """
    out_dir = check_output_root(out_dir)
    settings = settings if settings is not None else _settings_of(detector)
    statuses = CohortStatuses()
    bar = tqdm(cases, desc="detect", unit="case", disable=not progress)
    try:
        for case in bar:
            bar.set_postfix_str(case.case_id[-24:], refresh=False)
            doc, reason = (None, "") if overwrite else _resume_state(case, out_dir, settings)
            if doc is not None:
                log.info("%s: done before with the same input and settings, skipped", case.case_id)
                statuses.append(_skipped(case, doc))
                continue
            if reason:
                log.warning("%s: done before, rerun: %s", case.case_id, reason)
            statuses.append(
                _run_case(case, out_dir, detector, reader, settings, reason, extra_writer)
            )
            try_write_summary(out_dir, statuses[-1:])  # after every case: survives a kill
    finally:
        bar.close()
    statuses.summary_error = try_write_summary(out_dir, statuses)
    return statuses


def resume_plan(
    cases: Sequence[CaseInput],
    out_dir: Path | str,
    overwrite: bool,
    settings: RunSettings | None = None,
) -> tuple[list[CaseInput], dict[str, str]]:
    """(the cases a run would compute, case id -> why a case found done before runs again), in
    one pass over the stored results: all cases and no reasons with ``overwrite``, else those
    without results that match this run (see :mod:`lungcad.fingerprint`)."""
    if overwrite:
        return list(cases), {}
    todo, reasons = [], {}
    for case in cases:
        doc, reason = _resume_state(case, Path(out_dir), settings)
        if doc is None:
            todo.append(case)
        if reason:
            reasons[case.case_id] = reason
    return todo, reasons


def rerun_reasons(
    cases: Sequence[CaseInput], out_dir: Path | str, settings: RunSettings | None = None
) -> dict[str, str]:
    """case id -> why a case found done before will run again (its results no longer match)."""
    return resume_plan(cases, out_dir, False, settings)[1]


def pending(
    cases: Sequence[CaseInput],
    out_dir: Path | str,
    overwrite: bool,
    settings: RunSettings | None = None,
) -> list[CaseInput]:
    """The cases a run would compute (:func:`resume_plan`)."""
    return resume_plan(cases, out_dir, overwrite, settings)[0]
