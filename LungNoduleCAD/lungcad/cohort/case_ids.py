"""Case ids (the series UID, else the file stem made safe, made unique) and shards of a cohort.

The case list is sorted by path, so every node of a cluster job array builds the same list and
``--shard I/N`` (cases I, I+N, I+2N, ...) splits it without overlap.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from lungcad.cohort.inputs import CT_SUFFIXES, CohortInputError, is_dicom_file, may_be_raw_dicom
from lungcad.io import DICOM_IO
from lungcad.safe_names import is_dicom_uid, safe_case_id


@dataclass(frozen=True)
class CaseInput:
    """One case: the CT file or DICOM folder, and the folder name its outputs go to."""

    path: Path
    case_id: str


def _header_uid(path: Path) -> str | None:
    """The series UID from a header, without reading the voxels (None if there is none).

    Only a regular file is opened: a FIFO would block here before the case could fail on its
    own (read_ct refuses it).
    """
    reader = sitk.ImageFileReader()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        dicoms = [p for p in files if is_dicom_file(p)] or [p for p in files if may_be_raw_dicom(p)]
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
