"""Find a cohort's cases: CT files, DICOM folders (whatever their files are called), .txt lists.

Folders are searched recursively; each CT file is a case, and a folder that directly holds DICOM
files is one case (a .dcm suffix, the preamble's 'DICM', or a series GDCM finds in files without
the preamble). Slicer segmentations and phantom truth maps are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from lungcad.errors import LungCADError
from lungcad.io import dicom_series_ids

CT_SUFFIXES = (".nii.gz", ".mhd", ".mha", ".nrrd", ".nhdr", ".nii")
#: Files with CT suffixes that are not CTs: Slicer segmentations and phantom truth label maps.
SKIPPED_SUFFIXES = (".seg.nrrd", ".seg.nhdr", "_nodules.nrrd")
#: How a DICOM file written without its preamble and 'DICM' marker begins: the tag of its first
#: element, group 0002 or 0008 little-endian, or 0008 big-endian (a retired transfer syntax).
RAW_DICOM_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x08")


class CohortInputError(LungCADError, ValueError):
    """The inputs name nothing to run, or something that does not exist, or a bad shard."""


def _is_ct_file(path: Path) -> bool:
    name = path.name.lower()
    if name.startswith(".") or name.endswith(SKIPPED_SUFFIXES):
        return False
    return name.endswith(CT_SUFFIXES)


def is_dicom_file(path: Path) -> bool:
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


def may_be_raw_dicom(path: Path) -> bool:
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

    GDCM is asked only where a file starts like DICOM (:func:`may_be_raw_dicom`), so that it
    does not parse every file of every folder searched (a LUNA16 subset's .raw voxels).
    """
    return any(may_be_raw_dicom(p) for p in files) and bool(dicom_series_ids(folder))


def _walk_folder(folder: Path, exclude: Path | None) -> Iterator[Path]:
    """CT files under ``folder`` and the folders that directly hold DICOM files."""
    for sub in sorted([folder, *(p for p in folder.rglob("*") if p.is_dir())]):
        relative = sub.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if exclude is not None and (sub == exclude or exclude in sub.parents):
            continue
        files = sorted(p for p in sub.iterdir() if p.is_file())
        if any(is_dicom_file(p) for p in files) or _holds_raw_dicom(sub, files):
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
