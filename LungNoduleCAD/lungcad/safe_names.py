"""One rule for output names: case ids that are safe folder names, paths kept inside their root.

Case ids come from series UIDs, file stems and Slicer node names, all of which a DICOM header or
a careless file name controls. :func:`safe_case_id` keeps ``[A-Za-z0-9._-]``, removes separators,
``..``, control characters (NUL included) and leading dots, caps the length, and appends a short
hash of the original text whenever it changed anything, so two different inputs never collapse
onto one folder. :func:`confined_path` resolves a path (symlinks included) and refuses one that
leaves its root. :func:`is_dicom_uid` says whether a series UID may be written as one.
:func:`check_output_root` makes sure the output folder can take files before any work starts.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path

from lungcad.errors import LungCADError

__all__ = [
    "MAX_CASE_ID_CHARS",
    "MAX_UID_CHARS",
    "OutputRootError",
    "UnsafeOutputPathError",
    "check_output_root",
    "checked_series_uid",
    "confined_path",
    "is_dicom_uid",
    "printable",
    "safe_case_id",
]

#: Case ids stay far below NAME_MAX (255 bytes) so file names inside the folder fit as well.
MAX_CASE_ID_CHARS = 100
#: DICOM PS3.5 9.1: a UID is at most 64 characters, digits and dots.
MAX_UID_CHARS = 64
HASH_CHARS = 8
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")
_UNDERSCORES = re.compile(r"_{2,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: Names Windows refuses for files whatever their extension.
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{port}{i}" for port in ("COM", "LPT") for i in range(10)
}


class UnsafeOutputPathError(LungCADError, ValueError):
    """An output path would lie outside its output folder."""


class OutputRootError(LungCADError, OSError):
    """The output folder is a file, cannot be created, or does not take new files."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]


def safe_case_id(text: str, *, max_chars: int = MAX_CASE_ID_CHARS, fallback: str = "case") -> str:
    """``text`` as a folder name: unchanged when already safe, else cleaned plus ``-<hash>``.

    Safe means: only ASCII letters, digits, ``.``, ``_`` and ``-``; no ``..``; not starting with
    ``.`` or ``-``; not a Windows device name; at most ``max_chars`` characters. The hash (8 hex
    digits of the original's SHA-256) keeps distinct inputs apart after cleaning.
    """
    text = str(text)
    clean = _DOTS.sub("_", _UNSAFE.sub("_", text))
    clean = _UNDERSCORES.sub("_", clean).strip("._-")
    if clean.split(".")[0].upper() in _RESERVED:
        clean = f"_{clean}"
    if clean == text and 0 < len(clean) <= max_chars:
        return clean
    room = max_chars - HASH_CHARS - 1
    head = clean[:room].rstrip("._-") or fallback
    return f"{head}-{_digest(text)}"


def is_dicom_uid(text: str | None) -> bool:
    """True for digits in dot-separated parts, at most 64 characters (DICOM PS3.5 9.1).

    Leading zeros inside a part are tolerated: some scanners write them and the UID still names
    one series; anything else (letters, separators, NUL, spaces) is not a UID.
    """
    return isinstance(text, str) and len(text) <= MAX_UID_CHARS and _UID.fullmatch(text) is not None


def printable(text: str, max_chars: int = 200) -> str:
    """``text`` with control characters escaped (``\\x00``) and capped, for messages and csv cells.

    A NUL or newline from a header must neither cut a line short nor end a csv row.
    """
    escaped = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
    if len(escaped) > max_chars:
        return f"{escaped[:max_chars]}... ({len(text)} characters)"
    return escaped


def checked_series_uid(uid: str | None) -> tuple[str | None, str | None]:
    """(uid, None) for a valid DICOM UID or no UID; (None, warning) for anything else.

    An invalid UID is never written where a UID belongs (file names, the ``seriesuid`` column,
    ``input.series_uid``): the warning quotes it escaped, so results.json keeps a trace of it.
    """
    if uid is None or uid == "":
        return None, None
    if is_dicom_uid(uid):
        return uid, None
    return None, (
        f"series UID '{printable(uid, 80)}' is not a DICOM UID (digits and dots, at most "
        f"{MAX_UID_CHARS} characters): not used as one; the case id names the series instead"
    )


def confined_path(root: Path | str, *parts: str) -> Path:
    """``root / parts...`` resolved (symlinks followed); UnsafeOutputPathError if it leaves root.

    The root itself is not a valid result: every output lies strictly inside it.
    """
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if target == base or not target.is_relative_to(base):
        shown = printable("/".join(str(p) for p in parts), 120)
        raise UnsafeOutputPathError(f"'{shown}': would be written outside the output folder {base}")
    return target


def check_output_root(root: Path | str) -> Path:
    """Create ``root`` if needed and prove it takes a file; OutputRootError says what is wrong.

    Called before any model loads, so a read-only or mistyped output folder costs nothing.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise OutputRootError(f"{root}: exists and is not a folder (the output must be a folder)")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputRootError(
            f"{root}: cannot create the output folder ({exc.strerror or exc})"
        ) from None
    try:
        with tempfile.TemporaryFile(dir=root, prefix=".lungcad-write-test-"):
            pass
    except OSError as exc:
        raise OutputRootError(
            f"{root}: the output folder does not take new files ({exc.strerror or exc})"
        ) from None
    return root
