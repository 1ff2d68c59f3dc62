"""Run the cascade over a cohort: find the CTs, split them into shards, resume, record failures.

Inputs are CT files (.mhd .mha .nrrd .nhdr .nii .nii.gz), folders (searched recursively: each CT
file is a case, and a folder that directly holds DICOM files is one case, whatever the files are
called: a .dcm suffix, the preamble's 'DICM', or a series GDCM finds in files without the
preamble), or .txt files listing such paths one per line (``#`` starts a comment; relative paths
are relative to the list). The case list is sorted by path, so every node of a cluster job
array builds the same list and ``--shard I/N`` (cases I, I+N, I+2N, ...) splits it without
overlap.

Each case is written to OUT/<case_id>/ (see :mod:`lungcad.reports.case`); the case id is the
series UID when the header has a valid one (or a LUNA16-style UID file name), else the file stem
made safe (:func:`lungcad.safe_names.safe_case_id`), made unique in path order, and every case
folder is checked to lie inside OUT. OUT is checked to take files before anything runs.

Resume: a case whose results.json loads and whose fingerprint (input files, thresholds, model
SHA-256s, options; :mod:`lungcad.fingerprint`) matches this run is skipped unless ``overwrite``;
one that no longer matches is rerun, with the reason logged and recorded (results.json
``rerun_reason``, summary.csv). A case that fails leaves OUT/<case_id>/error.txt when its folder
can be written, and always a ``failed`` row; the run goes on. OUT/summary.csv has one row per case
ever run into OUT, merged under a file lock so shards writing to one folder keep each other's rows;
a summary that cannot be written is reported, not raised.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import re
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import SimpleITK as sitk
from tqdm import tqdm

from lungcad.atomic import write_text_atomic
from lungcad.cohort_status import Outcome
from lungcad.ct import CT
from lungcad.ctio import DICOM_IO, dicom_series_ids, read_ct
from lungcad.errors import LungCADError
from lungcad.fingerprint import RunSettings, rerun_reason, run_fingerprint
from lungcad.models.weights import WeightsNotFoundError, read_card
from lungcad.pipeline import CascadeModels, Precision, Thresholds, detect
from lungcad.pipeline.models import BUNDLED_MODELS, CASCADE_TASKS
from lungcad.reports import (
    ExtraWriter,
    ResultLike,
    ResultsFileError,
    read_results,
    write_case_outputs,
)
from lungcad.safe_names import (
    check_output_root,
    confined_path,
    is_dicom_uid,
    printable,
    safe_case_id,
)

__all__ = [
    "SUMMARY_COLUMNS",
    "CascadeDetector",
    "CaseInput",
    "CaseStatus",
    "CohortInputError",
    "CohortStatuses",
    "RunSettings",
    "assign_case_ids",
    "collect_inputs",
    "parse_shard",
    "pending",
    "rerun_reasons",
    "resume_plan",
    "run_cohort",
    "select_shard",
]

try:  # POSIX; on Windows shards writing into one folder are not locked against each other
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

log = logging.getLogger(__name__)

CT_SUFFIXES = (".nii.gz", ".mhd", ".mha", ".nrrd", ".nhdr", ".nii")
#: Files with CT suffixes that are not CTs: Slicer segmentations and phantom truth label maps.
SKIPPED_SUFFIXES = (".seg.nrrd", ".seg.nhdr", "_nodules.nrrd")
#: How a DICOM file written without its preamble and 'DICM' marker begins: the tag of its first
#: element, group 0002 or 0008 little-endian, or 0008 big-endian (a retired transfer syntax).
RAW_DICOM_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x08")
SUMMARY_COLUMNS = (
    "case_id", "input", "status", "findings", "highest_malignancy", "suspicious", "seconds",
    "error", "warnings", "rerun_reason",
)  # fmt: skip
#: How a case's warnings share one summary.csv cell.
WARNING_SEPARATOR = " | "
SUMMARY_FILE = "summary.csv"
ERROR_FILE = "error.txt"
#: How much of an error message goes into summary.csv (the whole traceback is in error.txt).
MAX_ERROR_CHARS = 500

Detector = Callable[[CT], ResultLike]


class CohortInputError(LungCADError, ValueError):
    """The inputs name nothing to run, or something that does not exist, or a bad shard."""


@dataclass(frozen=True)
class CaseInput:
    """One case: the CT file or DICOM folder, and the folder name its outputs go to."""

    path: Path
    case_id: str


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


# --- finding the cases ---------------------------------------------------------------------------


def _is_ct_file(path: Path) -> bool:
    name = path.name.lower()
    if name.startswith(".") or name.endswith(SKIPPED_SUFFIXES):
        return False
    return name.endswith(CT_SUFFIXES)


def _is_dicom_file(path: Path) -> bool:
    """A .dcm file, or any other file (not a CT file) with the preamble's 'DICM' at byte 128.

    Scanners and PACS exports name files freely: no suffix, or the SOP instance UID
    (``CT.1.3.12.2...``), whose last dotted part pathlib takes for a suffix. So the preamble
    decides, not the name.
    """
    if path.name.startswith("."):
        return False
    if path.suffix.lower() == ".dcm":
        return True
    if _is_ct_file(path) or path.name.lower().endswith(SKIPPED_SUFFIXES):
        return False
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _may_be_raw_dicom(path: Path) -> bool:
    """A regular file (not a CT file) that starts like a DICOM file written without its
    preamble: with the tag of a group 0002 (file meta) or 0008 (identifying) element."""
    if path.name.startswith(".") or _is_ct_file(path) or not path.is_file():
        return False
    if path.name.lower().endswith(SKIPPED_SUFFIXES):
        return False
    try:
        with path.open("rb") as fh:
            return fh.read(2) in RAW_DICOM_STARTS
    except OSError:
        return False


def _holds_raw_dicom(folder: Path, files: Sequence[Path]) -> bool:
    """Whether GDCM finds a series in ``folder`` whose files lack the preamble.

    GDCM is asked only where a file starts like DICOM (:func:`_may_be_raw_dicom`), so that it
    does not parse every file of every folder searched (a LUNA16 subset's .raw voxels).
    """
    return any(_may_be_raw_dicom(p) for p in files) and bool(dicom_series_ids(folder))


def _walk_folder(folder: Path, exclude: Path | None) -> Iterator[Path]:
    """CT files under ``folder`` and the folders that directly hold DICOM files."""
    for sub in sorted([folder, *(p for p in folder.rglob("*") if p.is_dir())]):
        relative = sub.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if exclude is not None and (sub == exclude or exclude in sub.parents):
            continue
        files = sorted(p for p in sub.iterdir() if p.is_file())
        if any(_is_dicom_file(p) for p in files) or _holds_raw_dicom(sub, files):
            yield sub
        yield from (p for p in files if _is_ct_file(p))


def _read_list(list_file: Path) -> list[Path]:
    paths = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            path = Path(entry).expanduser()
            paths.append(path if path.is_absolute() else list_file.parent / path)
    return paths


def collect_inputs(inputs: Iterable[Path | str], exclude: Path | None = None) -> list[Path]:
    """Expand files, folders and .txt lists into a sorted list of CT files / DICOM folders.

    ``exclude`` (the output folder) is never searched. Raises CohortInputError naming an input
    that does not exist, or when nothing is found.
    """
    exclude = Path(exclude).resolve() if exclude is not None else None
    found: set[Path] = set()
    pending = [Path(p) for p in inputs]
    seen_lists: set[Path] = set()
    while pending:
        path = pending.pop()
        if not path.exists():
            raise CohortInputError(f"{path}: no such file or folder")
        if path.is_dir():
            found.update(p.resolve() for p in _walk_folder(path, exclude))
        elif path.suffix.lower() == ".txt":
            if path.resolve() not in seen_lists:
                seen_lists.add(path.resolve())
                pending.extend(_read_list(path))
        else:
            found.add(path.resolve())
    if not found:
        raise CohortInputError(
            "no CT found in the inputs (looked for "
            f"{', '.join(CT_SUFFIXES)} files and DICOM folders)"
        )
    return sorted(found, key=str)


def _header_uid(path: Path) -> str | None:
    """The series UID from a header, without reading the voxels (None if there is none).

    Only a regular file is opened: a FIFO would block here before the case could fail on its
    own (read_ct refuses it).
    """
    reader = sitk.ImageFileReader()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        dicoms = [p for p in files if _is_dicom_file(p)] or [
            p for p in files if _may_be_raw_dicom(p)
        ]
        if not dicoms:
            return None
        reader.SetImageIO(DICOM_IO)  # the one reader of a file without the preamble
        reader.SetFileName(str(dicoms[0]))
    elif path.is_file():
        reader.SetFileName(str(path))
    else:
        return None
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    for key in ("0020|000e", "SeriesInstanceUID"):
        if reader.HasMetaDataKey(key):
            uid = reader.GetMetaData(key).rstrip("\x00 ").strip()  # DICOM pads UIDs with NUL
            if is_dicom_uid(uid):
                return uid
    return None


def _stem(path: Path) -> str:
    name = path.name
    for suffix in CT_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def case_id_for(path: Path) -> str:
    """Series UID if the header (or a LUNA16-style .mhd name) gives a valid one, else the file
    stem made safe (a changed stem gets a short hash: see :func:`safe_case_id`)."""
    stem = _stem(path)
    if path.is_file() and path.suffix.lower() == ".mhd" and is_dicom_uid(stem):
        return stem
    return _header_uid(path) or safe_case_id(stem)


def assign_case_ids(paths: Sequence[Path]) -> list[CaseInput]:
    """Case ids for sorted paths; a clash gets -2, -3, ... in path order."""
    used: set[str] = set()
    cases = []
    for path in paths:
        base = case_id_for(path)
        case_id, n = base, 2
        while case_id in used:
            case_id, n = f"{base}-{n}", n + 1
        used.add(case_id)
        cases.append(CaseInput(path, case_id))
    return cases


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N; CohortInputError with the rule otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise CohortInputError(f"--shard takes I/N (e.g. 0/4), got {text!r}")
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 0 <= index < count:
        raise CohortInputError(
            f"--shard I/N needs N >= 1 and 0 <= I < N (I counts from 0), got {index}/{count}"
        )
    return index, count


def select_shard(cases: Sequence[CaseInput], index: int, count: int) -> list[CaseInput]:
    """Every ``count``-th case starting at ``index`` (0-based)."""
    return list(cases[index::count])


# --- running -------------------------------------------------------------------------------------


def _done(folder: Path) -> dict | None:
    """results.json of a finished case, or None."""
    try:
        return read_results(folder / "results.json")
    except ResultsFileError:
        return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return printable(f"{type(exc).__name__}: {text}", MAX_ERROR_CHARS)


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
    error = _one_line(exc)
    if folder is None:
        return error
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(
            folder / ERROR_FILE, f"{error}\ninput: {case.path}\n\n{traceback.format_exc()}"
        )
    except OSError as write_exc:
        log.warning("%s: error.txt not written: %s", case.case_id, _one_line(write_exc))
        return f"{error} (error.txt not written: {_one_line(write_exc)})"
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
        log.warning("%s failed: %s", case.case_id, _one_line(exc))
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


def _try_write_summary(out_dir: Path, statuses: Sequence[CaseStatus]) -> str | None:
    """write_summary, but a failure (read-only folder, full disk) is logged and returned."""
    try:
        write_summary(out_dir, statuses)
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        log.error("%s: summary not written: %s", out_dir / SUMMARY_FILE, _one_line(exc))
        return _one_line(exc)
    return None


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
            _try_write_summary(out_dir, statuses[-1:])  # after every case: survives a kill
    finally:
        bar.close()
    statuses.summary_error = _try_write_summary(out_dir, statuses)
    return statuses


class CascadeDetector:
    """The real detector: the cascade with weights loaded on first use.

    A run whose cases are all done never loads a network (:meth:`settings` reads the model
    cards only). ``models`` is a weights folder (None: the bundled weights), ``device`` auto, cpu
    or cuda, ``precision`` auto, float32 or bf16; ``mirror_nodule`` as
    :func:`lungcad.pipeline.detect`. Call :meth:`load` first to have a bad weights folder
    reported before any case runs.
    """

    def __init__(
        self,
        models: Path | None = None,
        device: str = "auto",
        thresholds: Thresholds | None = None,
        precision: Precision | str = Precision.AUTO,
        mirror_nodule: bool = True,
    ) -> None:
        self.models_dir = models
        self.device = device
        self.thresholds = thresholds if thresholds is not None else Thresholds()
        self.precision = Precision(precision)
        self.mirror_nodule = mirror_nodule
        self._models: CascadeModels | None = None

    def load(self) -> CascadeModels:
        if self._models is None:
            self._models = CascadeModels.load(self.models_dir, self.device, self.precision)
        return self._models

    def settings(self) -> RunSettings:
        """Thresholds, the weights' SHA-256s (from the cards the loader checks them against)
        and the mirror option: what makes a stored result this run's result."""
        if self._models is not None:
            shas = {task: card.sha256 for task, card in self._models.cards.items()}
        else:
            root = BUNDLED_MODELS if self.models_dir is None else Path(self.models_dir)
            if not root.is_dir():
                raise WeightsNotFoundError(root, "weights folder not found")
            shas = {t.value: read_card(root / f"{t.value}.json").sha256 for t in CASCADE_TASKS}
        options: dict[str, Any] = {"mirror_nodule": self.mirror_nodule}
        return RunSettings(self.thresholds, shas, options)

    def __call__(self, ct: CT) -> ResultLike:
        return detect(ct, self.load(), self.thresholds, mirror_nodule=self.mirror_nodule)


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
