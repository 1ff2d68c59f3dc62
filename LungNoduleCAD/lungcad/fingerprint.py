"""What a finished case was computed from, so that resume reuses only results that still match.

A run fingerprint (stored in results.json under ``fingerprint``) holds:

- ``input``: the files that make up the CT (the file; a detached header's data file; every file
  directly in a DICOM folder), their count, total bytes and newest mtime, and a SHA-256 over
  their names, sizes and mtimes plus the first 64 KiB of the main file (the header). Reading a
  whole cohort again would cost as much as the run; size, mtime and header catch a replaced,
  edited or re-exported CT. Only regular files are opened (a FIFO or device is never read);
- ``thresholds``, ``models`` (task -> weights SHA-256) and ``options`` (what changes scores:
  the nodule mirrors). Device and precision are left out, so a cohort may resume on other hardware.

:func:`rerun_reason` compares a recorded fingerprint with the one a run would write and says,
in words, why the case must run again (None when it matches).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lungcad.pipeline.findings import Thresholds

__all__ = ["HEADER_BYTES", "RunSettings", "input_fingerprint", "rerun_reason", "run_fingerprint"]

HEADER_BYTES = 64 * 1024
_DETACHED = (".mhd", ".nhdr")
_DATA_FILE = re.compile(r"^\s*(?:ElementDataFile\s*=|data ?file\s*:)\s*(\S.*?)\s*$", re.I | re.M)


@dataclass(frozen=True)
class RunSettings:
    """What a run applies to every case besides the CT: its part of the fingerprint."""

    thresholds: Thresholds
    models: Mapping[str, str] = field(default_factory=dict)  # task -> weights SHA-256
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        t = self.thresholds
        return {
            "thresholds": {
                "segmentation": float(t.segmentation),
                "nodule": float(t.nodule),
                "malignancy": float(t.malignancy),
            },
            "models": dict(self.models),
            "options": dict(self.options),
        }


def _regular(path: Path) -> os.stat_result | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def _head(path: Path) -> bytes:
    if _regular(path) is None:
        return b""
    try:
        with path.open("rb") as fh:
            return fh.read(HEADER_BYTES)
    except OSError:
        return b""


def _detached_data(header: Path, head: bytes) -> list[Path]:
    """The one data file a .mhd/.nhdr names beside it (LOCAL, LIST and patterns: none)."""
    match = _DATA_FILE.search(head.decode("latin-1"))
    if match is None:
        return []
    name = match.group(1)
    if name.upper() in ("LOCAL", "LIST") or "%" in name or " " in name:
        return []
    return [header.parent / name]


def _members(path: Path) -> tuple[Path, list[Path]]:
    """(main file, every file of the input) for a CT file or a DICOM folder."""
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if not p.name.startswith(".") and _regular(p) is not None
        )
        return (files[0] if files else path), files
    files = [path]
    if path.name.lower().endswith(_DETACHED):
        files += _detached_data(path, _head(path))
    return path, files


def input_fingerprint(path: Path | str) -> dict[str, Any]:
    """``{"files", "bytes", "mtime_ns", "sha256"}`` of a CT file or DICOM folder (see module)."""
    path = Path(path)
    main, files = _members(path)
    digest = hashlib.sha256()
    total, newest = 0, 0
    for member in files:
        info = _regular(member)
        size, mtime = (info.st_size, info.st_mtime_ns) if info else (-1, -1)
        total += max(size, 0)
        newest = max(newest, mtime)
        digest.update(f"{member.name}\t{size}\t{mtime}\n".encode("utf-8", "surrogateescape"))
    digest.update(_head(main))
    return {"files": len(files), "bytes": total, "mtime_ns": newest, "sha256": digest.hexdigest()}


def run_fingerprint(source: Path | str, settings: RunSettings | None) -> dict[str, Any]:
    """The fingerprint results.json records: the input's, plus the run settings when known."""
    doc: dict[str, Any] = {"input": input_fingerprint(source)}
    if settings is not None:
        doc.update(settings.to_dict())
    return doc


def _changed(kind: str, old: Mapping[str, Any], new: Mapping[str, Any], short: bool) -> list[str]:
    def show(value: Any) -> str:
        return str(value)[:12] if short and isinstance(value, str) else str(value)

    keys = sorted(set(old) | set(new))
    return [
        f"{kind} {key} {show(old.get(key, 'none'))} -> {show(new.get(key, 'none'))}"
        for key in keys
        if old.get(key) != new.get(key)
    ]


def rerun_reason(recorded: Any, expected: Mapping[str, Any]) -> str | None:
    """Why a case whose results.json holds ``recorded`` must run again; None when it matches.

    Only the parts in ``expected`` are compared (a run that does not know its models' SHA-256s
    compares the input alone).
    """
    if not isinstance(recorded, Mapping):
        return "its results.json records no fingerprint (written by an older lungcad)"
    reasons: list[str] = []
    old_input, new_input = recorded.get("input") or {}, expected["input"]
    if old_input != new_input:
        if (
            old_input.get("files") != new_input["files"]
            or old_input.get("bytes") != new_input["bytes"]
        ):
            reasons.append(
                f"the input changed ({old_input.get('files')} files, {old_input.get('bytes')} "
                f"bytes -> {new_input['files']} files, {new_input['bytes']} bytes)"
            )
        elif old_input.get("mtime_ns") != new_input["mtime_ns"]:
            reasons.append("the input was modified since (file times differ)")
        else:
            reasons.append("the input's header or file names differ")
    for part, short in (("thresholds", False), ("models", True), ("options", False)):
        if part in expected and recorded.get(part) != expected[part]:
            changes = _changed(part.rstrip("s"), recorded.get(part) or {}, expected[part], short)
            reasons.append(f"{part} changed ({'; '.join(changes)})")
    return "; ".join(reasons) or None
