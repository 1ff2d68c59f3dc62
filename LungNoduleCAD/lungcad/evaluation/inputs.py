"""What an evaluation reads: the truth of a LUNA16-layout folder and the results to score.

Truth comes from ``annotations.csv`` (required), ``annotations_excluded.csv`` (optional; LUNA16's
"irrelevant findings", whose negative diameters mean "unknown" and become 10 mm as the official
script does), ``annotations_with_malignancy.csv`` (optional; benign/malignant rows) and the class-0
rows of ``candidates.csv`` (optional; the non-nodule row of the end-to-end table).

Results are either the folder ``lungcad detect --out`` writes (one sub-folder per case with
``candidates.csv`` listing every candidate and ``results.json`` with the thresholds) or a single
LUNA16 submission csv (``seriesuid,coordX,coordY,coordZ,probability``).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcad.errors import LungCADError
from lungcad.luna16 import (
    ANNOTATIONS_CSV,
    CANDIDATES_CSV,
    EXCLUDED_CSV,
    MALIGNANCY_CSV,
    Annotation,
    DatasetError,
    DatasetFileNotFoundError,
    MalignancyAnnotation,
    find_series,
    read_annotations,
    read_candidate_arrays,
    read_malignancy_annotations,
)
from lungcad.pipeline.findings import OUTSIDE_LUNG_STATUS, Thresholds
from lungcad.reports.results_json import ResultsFileError, read_results

logger = logging.getLogger(__name__)

SUBMISSION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "probability")
UNKNOWN_EXCLUDED_DIAMETER_MM = 10.0
"""LUNA16's evaluation script gives excluded findings with a negative diameter this size."""


class EvaluationError(LungCADError, ValueError):
    """The inputs of an evaluation do not fit together (no cases, unknown series, bad files)."""


@dataclass(frozen=True)
class Truth:
    """Everything the data folder says about the scans, grouped later per series.

    ``non_nodules`` is None when the folder has no ``candidates.csv``; ``malignancy`` is None
    without ``annotations_with_malignancy.csv``.
    """

    data_dir: Path
    series_paths: dict[str, Path]
    annotations: tuple[Annotation, ...]
    excluded: tuple[Annotation, ...]
    malignancy: tuple[MalignancyAnnotation, ...] | None
    non_nodules: tuple[tuple[str, tuple[float, float, float]], ...] | None

    @property
    def known_series(self) -> frozenset[str]:
        """Every series UID the folder mentions: scans on disk and rows of its csv files."""
        uids = set(self.series_paths)
        uids.update(a.series_uid for a in self.annotations)
        uids.update(a.series_uid for a in self.excluded)
        uids.update(m.series_uid for m in self.malignancy or ())
        uids.update(uid for uid, _ in self.non_nodules or ())
        return frozenset(uids)


@dataclass(frozen=True, eq=False)
class CaseResult:
    """The candidates one scan produced, as arrays (one entry per candidate).

    ``probability`` is the FROC score (the submission's probability column, = p_nodule for
    lungcad results). ``p_malignant``, ``finding`` (finding number, 0 when not kept),
    ``diameter_mm`` and ``thresholds`` are None for a plain submission csv; ``in_lung`` (False for
    a candidate outside the lung mask, never classified) is None where the csv has no status
    column (a submission, or results written before the lung mask). ``p_malignant`` is NaN where
    the csv cell is empty: the malignancy classifier never saw that candidate (outside the lung,
    or below its detection's nodule floor, so never a finding at the thresholds it was run at).
    """

    series_uid: str
    source: Path
    xyz: np.ndarray
    probability: np.ndarray
    p_nodule: np.ndarray
    p_malignant: np.ndarray | None = None
    finding: np.ndarray | None = None
    diameter_mm: np.ndarray | None = None
    thresholds: Thresholds | None = None
    in_lung: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.probability)

    @classmethod
    def empty(cls, series_uid: str, source: Path) -> CaseResult:
        """A scan with no candidates at all (every nodule in it is missed)."""
        zero = np.zeros(0, dtype=np.float64)
        return cls(series_uid, source, np.zeros((0, 3)), zero, zero)


def load_truth(data_dir: str | Path) -> Truth:
    """Read the truth files of a LUNA16-layout folder; ``annotations.csv`` must exist."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetFileNotFoundError(data_dir, "data folder not found")
    if not (data_dir / ANNOTATIONS_CSV).is_file():
        raise DatasetFileNotFoundError(
            data_dir / ANNOTATIONS_CSV,
            "file not found: the data folder must be in the LUNA16 layout "
            "(annotations.csv, candidates.csv, subset*/<seriesuid>.mhd)",
        )
    annotations = tuple(read_annotations(data_dir / ANNOTATIONS_CSV))
    excluded_path = data_dir / EXCLUDED_CSV
    excluded = tuple(read_excluded(excluded_path)) if excluded_path.is_file() else ()
    malignancy = None
    if (data_dir / MALIGNANCY_CSV).is_file():
        malignancy = tuple(read_malignancy_annotations(data_dir / MALIGNANCY_CSV))
    non_nodules = None
    if (data_dir / CANDIDATES_CSV).is_file():
        uids, xyz, is_nodule = read_candidate_arrays(data_dir / CANDIDATES_CSV)
        non_nodules = tuple(
            (u, tuple(p))
            for u, p, n in zip(uids, xyz.tolist(), is_nodule.tolist(), strict=True)
            if not n
        )
    return Truth(
        data_dir=data_dir,
        series_paths=find_series(data_dir),
        annotations=annotations,
        excluded=excluded,
        malignancy=malignancy,
        non_nodules=non_nodules,
    )


def read_excluded(path: str | Path) -> list[Annotation]:
    """Read ``annotations_excluded.csv``; a negative diameter (unknown size) becomes 10 mm."""
    return read_annotations(path, unknown_diameter_mm=UNKNOWN_EXCLUDED_DIAMETER_MM)


def _finite(path: Path, line: int, column: str, text: str | None, truth: bool = False) -> float:
    """A csv cell as a finite float; the error names file, line and column.

    ``truth`` picks DatasetError (a data-folder file) over EvaluationError (a results file).
    """
    problem = None
    try:
        value = float(text or "")
    except ValueError:
        problem = f"column {column}: {text!r} is not a number"
    else:
        if not math.isfinite(value):
            problem = f"column {column}: {text!r} is not a finite number"
    if problem is None:
        return value
    if truth:
        raise DatasetError(path, problem, line=line)
    raise EvaluationError(f"{path}, line {line}: {problem}")


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(header, [(line number, row)]) of a csv file, blank lines skipped."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        if not header:
            raise EvaluationError(f"{path}: file is empty (expected a header row)")
        reader.fieldnames = header
        rows = [
            (reader.line_num, row)
            for row in reader
            if any((v or "").strip() for k, v in row.items() if k is not None)
        ]
    missing = [c for c in SUBMISSION_COLUMNS if c not in header]
    if missing:
        raise EvaluationError(
            f"{path}: missing column(s) {', '.join(missing)} "
            f"(a results csv starts with {','.join(SUBMISSION_COLUMNS)})"
        )
    return header, rows


def _column(path: Path, rows: Sequence[tuple[int, dict[str, str]]], name: str) -> np.ndarray:
    values = [_finite(path, line, name, row.get(name)) for line, row in rows]
    return np.array(values, dtype=np.float64)


def _optional_column(
    path: Path, header: Sequence[str], rows: Sequence[tuple[int, dict[str, str]]], name: str
) -> np.ndarray | None:
    return _column(path, rows, name) if name in header else None


def _score_column(
    path: Path, header: Sequence[str], rows: Sequence[tuple[int, dict[str, str]]], name: str
) -> np.ndarray | None:
    """Like :func:`_optional_column`, but an empty cell (a score never computed) becomes NaN."""
    if name not in header:
        return None
    values = [
        math.nan if not (row.get(name) or "").strip() else _finite(path, line, name, row[name])
        for line, row in rows
    ]
    return np.array(values, dtype=np.float64)


def _finding_column(path: Path, rows: Sequence[tuple[int, dict[str, str]]]) -> np.ndarray:
    """Finding numbers; an empty cell (candidate not kept) becomes 0."""
    out = []
    for line, row in rows:
        text = (row.get("finding") or "").strip()
        if not text:
            out.append(0)
            continue
        try:
            out.append(int(float(text)))
        except ValueError:
            raise EvaluationError(
                f"{path}, line {line}: column finding: {text!r} is not a finding number"
            ) from None
    return np.array(out, dtype=np.int64)


def _case_from_rows(
    uid: str,
    source: Path,
    header: Sequence[str],
    rows: Sequence[tuple[int, dict[str, str]]],
    thresholds: Thresholds | None,
) -> CaseResult:
    xyz = np.stack([_column(source, rows, c) for c in ("coordX", "coordY", "coordZ")], axis=1)
    probability = _column(source, rows, "probability")
    p_nodule = _optional_column(source, header, rows, "p_nodule")
    return CaseResult(
        series_uid=uid,
        source=source,
        xyz=xyz,
        probability=probability,
        p_nodule=probability if p_nodule is None else p_nodule,
        p_malignant=_score_column(source, header, rows, "p_malignant"),
        finding=_finding_column(source, rows) if "finding" in header else None,
        diameter_mm=_optional_column(source, header, rows, "diameter_mm"),
        thresholds=thresholds,
        in_lung=_in_lung_column(rows) if "status" in header else None,
    )


def _in_lung_column(rows: Sequence[tuple[int, dict[str, str]]]) -> np.ndarray:
    """False where the status column says the candidate lies outside the lung."""
    statuses = [(row.get("status") or "") for _, row in rows]
    return np.array([s != OUTSIDE_LUNG_STATUS for s in statuses], dtype=bool)


def _group_rows(
    path: Path, rows: Sequence[tuple[int, dict[str, str]]]
) -> dict[str, list[tuple[int, dict[str, str]]]]:
    groups: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for line, row in rows:
        uid = (row.get("seriesuid") or "").strip()
        if not uid:
            raise EvaluationError(f"{path}, line {line}: empty seriesuid")
        groups.setdefault(uid, []).append((line, row))
    return groups


def read_submission(path: str | Path) -> list[CaseResult]:
    """A LUNA16 submission csv as one :class:`CaseResult` per series it lists."""
    path = Path(path)
    header, rows = _read_rows(path)
    return [
        _case_from_rows(uid, path, header, group, None)
        for uid, group in sorted(_group_rows(path, rows).items())
    ]


def _read_results_json(path: Path) -> tuple[str | None, Thresholds | None]:
    """(series UID, thresholds) from a case's results.json, checked by :func:`read_results`."""
    try:
        data = read_results(path)
    except ResultsFileError as exc:
        raise EvaluationError(str(exc)) from None
    uid = (data.get("input") or {}).get("series_uid")
    raw = data["thresholds"]
    thresholds = None
    if raw is not None:
        try:
            thresholds = Thresholds(
                segmentation=float(raw["segmentation"]),
                nodule=float(raw["nodule"]),
                malignancy=float(raw["malignancy"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EvaluationError(f"{path}: bad thresholds {raw!r} ({exc})") from None
    return (str(uid) if uid else None), thresholds


def read_case_folder(folder: str | Path) -> CaseResult:
    """One case folder written by ``lungcad detect``: candidates.csv and results.json.

    Without results.json (a hand-made folder read directly) the thresholds are unknown.
    """
    folder = Path(folder)
    cand_path = folder / "candidates.csv"
    json_path = folder / "results.json"
    if not cand_path.is_file():
        raise EvaluationError(
            f"{folder}: no candidates.csv (the evaluation needs every candidate of the case)"
        )
    json_uid, thresholds = _read_results_json(json_path) if json_path.is_file() else (None, None)
    header, rows = _read_rows(cand_path)
    groups = _group_rows(cand_path, rows)
    if len(groups) > 1:
        raise EvaluationError(
            f"{cand_path}: rows of {len(groups)} series in one case folder "
            f"({', '.join(sorted(groups)[:3])})"
        )
    csv_uid = next(iter(groups), None)
    if json_uid and csv_uid and json_uid != csv_uid:
        raise EvaluationError(
            f"{folder}: results.json names series {json_uid} but candidates.csv lists {csv_uid}"
        )
    uid = json_uid or csv_uid or folder.name
    return _case_from_rows(uid, cand_path, header, rows, thresholds)


def _is_case_folder(folder: Path) -> bool:
    return (folder / "results.json").is_file()


def _unfinished_reason(folder: Path) -> str | None:
    """Why a folder that looks like a detect case has no usable result, or None if it does not."""
    if (folder / "error.txt").is_file():
        return "failed (error.txt)"
    if (folder / "candidates.csv").is_file():
        return "unfinished (candidates.csv without results.json, which detect writes last)"
    return None


@dataclass(frozen=True)
class ResultSet:
    """The cases found under a results path, and the case folders left out (with why)."""

    cases: list[CaseResult]
    skipped: list[str]


def load_results(path: str | Path) -> ResultSet:
    """Every case under a results folder (or the series of a submission csv), sorted by UID.

    A case folder holds results.json (+ candidates.csv); a folder that itself holds results.json
    is one case. Failed (error.txt) and unfinished (no results.json) case folders are left out
    and listed in ``skipped``. Two cases of the same series are refused: the scan would count
    twice.
    """
    path = Path(path)
    if path.is_file():
        cases = read_submission(path)
        if not cases:
            raise EvaluationError(f"{path}: no candidate rows, so no series to evaluate")
        return ResultSet(cases, [])
    if not path.is_dir():
        raise EvaluationError(f"{path}: results folder or csv not found")
    folders = [path] if _is_case_folder(path) else sorted(p for p in path.iterdir() if p.is_dir())
    cases = [read_case_folder(p) for p in folders if _is_case_folder(p)]
    skipped = [
        f"{p.name}: {reason}, left out"
        for p in folders
        if not _is_case_folder(p) and (reason := _unfinished_reason(p)) is not None
    ]
    for line in skipped:
        logger.warning("%s", line)
    if not cases:
        raise EvaluationError(
            f"{path}: no case folders with results.json "
            "(expected the output of `lungcad detect --out`)"
            + (f"; {len(skipped)} failed or unfinished" if skipped else "")
        )
    seen: dict[str, Path] = {}
    for case in cases:
        if case.series_uid in seen:
            raise EvaluationError(
                f"series {case.series_uid} has two results: {seen[case.series_uid]} and "
                f"{case.source}"
            )
        seen[case.series_uid] = case.source
    return ResultSet(sorted(cases, key=lambda c: c.series_uid), skipped)


def select_cases(
    truth: Truth, cases: Iterable[CaseResult], all_series: bool = False
) -> list[CaseResult]:
    """The cases to evaluate, checked against the data folder.

    Every result must name a series the data folder knows. With ``all_series``, scans on disk
    without results are added as cases with zero candidates (the LUNA16 seriesuids.csv view).
    """
    cases = list(cases)
    known = truth.known_series
    unknown = [c for c in cases if c.series_uid not in known]
    if unknown:
        names = ", ".join(f"{c.series_uid} ({c.source})" for c in unknown[:3])
        raise EvaluationError(
            f"{len(unknown)} result series not in {truth.data_dir}: {names}"
            + (" ..." if len(unknown) > 3 else "")
        )
    if all_series:
        have = {c.series_uid for c in cases}
        cases += [
            CaseResult.empty(uid, path)
            for uid, path in sorted(truth.series_paths.items())
            if uid not in have
        ]
    return sorted(cases, key=lambda c: c.series_uid)
