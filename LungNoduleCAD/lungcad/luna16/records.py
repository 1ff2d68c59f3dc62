"""LUNA16 csv files -> typed, frozen records, with errors that name the file, line and problem.

Training and evaluation both read these files; one strict reader means a shifted column or a
stray ``nan`` stops the run at load time instead of silently corrupting a label.
All coordinates are patient LPS millimetres, as in the LUNA16 files.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcad.errors import LungCADError

logger = logging.getLogger(__name__)

XYZ = tuple[float, float, float]

ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
XYZ_COLUMNS = ("coordX", "coordY", "coordZ")
CANDIDATE_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "class")
MALIGNANCY_COLUMNS = (
    *ANNOTATION_COLUMNS,
    "mal_bool",
    "mal_details",
    "bboxLowX",
    "bboxLowY",
    "bboxLowZ",
    "bboxHighX",
    "bboxHighY",
    "bboxHighZ",
)


@contextlib.contextmanager
def bulk_build() -> Iterator[None]:
    """Pause the cyclic garbage collector while building hundreds of thousands of records.

    The records hold no reference cycles, but each allocation burst triggers full collections
    that rescan every object built so far; pausing halves the time to load candidates.csv.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class DatasetError(LungCADError, ValueError):
    """A dataset file is missing or malformed; the message names the file, line and problem."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.problem = problem
        self.line = line
        where = f"{self.path}, line {line}" if line is not None else f"{self.path}"
        super().__init__(f"{where}: {problem}")


class DatasetFileNotFoundError(DatasetError, FileNotFoundError):
    """A dataset file or folder does not exist."""


@dataclass(frozen=True, slots=True)
class Annotation:
    """One ``annotations.csv`` (or ``annotations_excluded.csv``) row: a marked nodule."""

    series_uid: str
    center_xyz: XYZ
    diameter_mm: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """One ``candidates.csv`` row: a point to classify; ``is_nodule`` is the file's class."""

    series_uid: str
    center_xyz: XYZ
    is_nodule: bool


@dataclass(frozen=True, slots=True)
class MalignancyAnnotation:
    """One ``annotations_with_malignancy.csv`` row (LIDC readers' ratings joined to LUNA16).

    ``mal_details`` holds the readers' 1-5 malignancy ratings; ``mal_bool`` the file's verdict.
    """

    series_uid: str
    center_xyz: XYZ
    diameter_mm: float
    mal_bool: bool
    mal_details: tuple[int, ...]
    bbox_low_xyz: XYZ
    bbox_high_xyz: XYZ


def _fast_columns(path: Path, width: int) -> list[Sequence[str]] | None:
    """The first ``width`` columns' text via numpy's C tokenizer, or None to use the csv module.

    About three times faster than ``csv.reader`` on the 550k-row candidates.csv. Any irregular
    row (short, whitespace-only) makes it give up, and the csv path then reports the exact line.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data" for header-only files
            data = np.loadtxt(
                path,
                dtype=object,
                delimiter=",",
                quotechar='"',
                comments=None,
                skiprows=1,
                usecols=range(width),
                ndmin=2,
                encoding="utf-8-sig",
            )
    except ValueError:
        return None
    return [data[:, i].tolist() for i in range(width)]


class _Table:
    """A csv file's named columns as text; line numbers are looked up only for errors.

    Columnar parsing (one ``float`` pass per column) keeps the 550k-row candidates.csv fast;
    a failure is then located row by row so the error can name its line.
    """

    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        self.path = path
        if not path.is_file():
            raise DatasetFileNotFoundError(path, "file not found")
        try:
            header, text = self._read(columns)
        except UnicodeDecodeError as exc:
            raise DatasetError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        self._rows_seen = len(text[0])
        self.text = {c: text[header.index(c)] for c in columns}

    def _read(self, columns: tuple[str, ...]) -> tuple[list[str], list[Sequence[str]]]:
        """(header, text of the first columns up to the last one needed)."""
        with self.path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if not header:
                raise DatasetError(self.path, "file is empty (expected a header row)", line=1)
            missing = [c for c in columns if c not in header]
            if missing:
                raise DatasetError(
                    self.path,
                    f"missing column(s) {', '.join(missing)} (header has {', '.join(header)})",
                    line=1,
                )
            width = max(header.index(c) for c in columns) + 1
            text = _fast_columns(self.path, width)
            if text is not None:
                return header, text
            rows = [r for r in reader if r and (len(r) > 1 or r[0].strip())]  # no blank lines
        if rows and min(map(len, rows)) < width:
            i = next(i for i, r in enumerate(rows) if len(r) < width)
            raise self.fail(i, f"expected {len(header)} fields, found {len(rows[i])}")
        return header, [[r[i] for r in rows] for i in range(width)]

    def __len__(self) -> int:
        return self._rows_seen

    def line_of(self, row: int) -> int:
        """File line number of data row ``row``: re-scans the file, as only errors need it."""
        with self.path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            next(reader, None)
            seen = -1
            for r in reader:
                if r and (len(r) > 1 or r[0].strip()):
                    seen += 1
                    if seen == row:
                        return reader.line_num
        raise IndexError(row)  # pragma: no cover - row always comes from this file

    def fail(self, row: int, problem: str) -> DatasetError:
        return DatasetError(self.path, problem, line=self.line_of(row))

    def uids(self, column: str = "seriesuid") -> list[str]:
        values = [t.strip() for t in self.text[column]]
        if not all(values):
            raise self.fail(values.index(""), f"empty {column}")
        return values

    def floats(self, column: str) -> np.ndarray:
        """A column as finite float64 values."""
        texts = self.text[column]
        try:
            values = np.array(list(map(float, texts)), dtype=np.float64)
        except ValueError:
            for i, t in enumerate(texts):
                try:
                    float(t)
                except ValueError:
                    raise self.fail(i, f"column {column}: {t!r} is not a number") from None
            raise  # unreachable: some text failed above
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            raise self.fail(i, f"column {column}: {texts[i]!r} is not a finite number")
        return values.reshape(len(texts))

    def xyz(self, columns: tuple[str, str, str]) -> np.ndarray:
        """Three columns as an (N, 3) array."""
        return np.stack([self.floats(c) for c in columns], axis=1).reshape(len(self), 3)

    def diameters(self, column: str = "diameter_mm", unknown: float | None = None) -> np.ndarray:
        """Positive diameters; with ``unknown``, a negative one (size unknown) becomes it."""
        values = self.floats(column)
        if unknown is not None:
            return np.where(values < 0, unknown, values)
        bad = np.flatnonzero(values <= 0)
        if bad.size:
            i = int(bad[0])
            raise self.fail(i, f"column {column}: {self.text[column][i]!r} is not positive")
        return values


def _tuples(xyz: np.ndarray) -> list[XYZ]:
    return [tuple(p) for p in xyz.tolist()]


def read_annotations(
    path: str | Path, unknown_diameter_mm: float | None = None
) -> list[Annotation]:
    """Read ``annotations.csv`` or ``annotations_excluded.csv`` (same columns).

    Diameters must be positive, except with ``unknown_diameter_mm``: LUNA16's excluded file holds
    -1 for findings without a size, which its evaluation script reads as 10 mm.
    """
    t = _Table(Path(path), ANNOTATION_COLUMNS)
    diameters = t.diameters(unknown=unknown_diameter_mm).tolist()
    out = [
        Annotation(u, c, d)
        for u, c, d in zip(t.uids(), _tuples(t.xyz(XYZ_COLUMNS)), diameters, strict=True)
    ]
    logger.debug("read %d annotations from %s", len(out), path)
    return out


def read_candidate_arrays(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``candidates.csv`` as (series UIDs, (N, 3) LPS centres, bool is_nodule) without objects.

    The 550k-row file is joined in arrays; building one record per row first would double the
    time of :func:`lungcad.luna16.candidate_list`.
    """
    t = _Table(Path(path), CANDIDATE_COLUMNS)
    uids, xyz = t.uids(), t.xyz(XYZ_COLUMNS)
    texts = t.text["class"]
    cls = t.floats("class")
    bad = np.flatnonzero((cls != 0) & (cls != 1))
    if bad.size:
        i = int(bad[0])
        raise t.fail(i, f"column class: {texts[i]!r} is neither 0 nor 1")
    logger.debug("read %d candidates from %s", len(uids), path)
    return uids, xyz, cls == 1


def read_candidates(path: str | Path) -> list[Candidate]:
    """Read ``candidates.csv``; class 1 = nodule, 0 = not."""
    uids, xyz, is_nodule = read_candidate_arrays(path)
    with bulk_build():
        return [
            Candidate(u, c, n)
            for u, c, n in zip(uids, _tuples(xyz), is_nodule.tolist(), strict=True)
        ]


def _mal_bool(t: _Table, row: int, text: str) -> bool:
    value = {"true": True, "false": False}.get(text.strip().lower())
    if value is None:
        raise t.fail(row, f"column mal_bool: {text!r} is neither True nor False")
    return value


def _mal_details(t: _Table, row: int, text: str) -> tuple[int, ...]:
    """Parse reader ratings written like ``[3, 4, 4]`` (numpy's ``[3 4 4]`` is accepted too)."""
    inner = text.strip()
    if not (inner.startswith("[") and inner.endswith("]")):
        raise t.fail(row, f"column mal_details: {text!r} is not a list like [3, 4, 4]")
    ratings = []
    for token in (tok for tok in re.split(r"[,\s]+", inner[1:-1]) if tok):
        if not token.isdigit() or not 1 <= int(token) <= 5:
            raise t.fail(row, f"column mal_details: {token!r} is not a rating from 1 to 5")
        ratings.append(int(token))
    return tuple(ratings)


def read_malignancy_annotations(path: str | Path) -> list[MalignancyAnnotation]:
    """Read ``annotations_with_malignancy.csv`` (the "Deep Learning with PyTorch" layout).

    ``len_mal_details``, when present, is checked against the parsed ratings; a mismatch is logged
    (once per file) rather than fatal, since the ratings themselves are what gets used.
    """
    path = Path(path)
    has_len = _has_column(path, "len_mal_details")
    columns = (*MALIGNANCY_COLUMNS, "len_mal_details") if has_len else MALIGNANCY_COLUMNS
    t = _Table(path, columns)
    uids, centers, diameters = t.uids(), _tuples(t.xyz(XYZ_COLUMNS)), t.diameters().tolist()
    lows = _tuples(t.xyz(("bboxLowX", "bboxLowY", "bboxLowZ")))
    highs = _tuples(t.xyz(("bboxHighX", "bboxHighY", "bboxHighZ")))
    mal = [_mal_bool(t, i, s) for i, s in enumerate(t.text["mal_bool"])]
    details = [_mal_details(t, i, s) for i, s in enumerate(t.text["mal_details"])]
    out = [
        MalignancyAnnotation(*fields)
        for fields in zip(uids, centers, diameters, mal, details, lows, highs, strict=True)
    ]
    if has_len:
        counts = t.floats("len_mal_details")
        wrong = np.flatnonzero(counts != np.array([len(d) for d in details]))
        if wrong.size:
            logger.warning(
                "%s: len_mal_details disagrees with mal_details on %d line(s), first line %d",
                path,
                wrong.size,
                t.line_of(int(wrong[0])),
            )
    logger.debug("read %d malignancy annotations from %s", len(out), path)
    return out


def _has_column(path: Path, column: str) -> bool:
    """Whether the header names ``column`` (a missing file is reported by the reader proper)."""
    if not path.is_file():
        return False
    with path.open(newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    return column in (h.strip() for h in header)
