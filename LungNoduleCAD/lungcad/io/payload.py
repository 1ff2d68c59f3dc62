"""Check that a CT file's voxel data are all there, and only where they should be, before reading.

ITK trusts headers: a NIfTI whose gzip stream is complete but holds a third of the voxels, or a
compressed MetaIO file without ``CompressedDataSize``, read "successfully" with the missing
slices at 0 HU, which is plausible tissue and a wrong result. And a MetaIO ``ElementDataFile``
or NRRD ``data file`` may name any file on the machine (``../../etc/shadow``). So:

* data files named by a header must be plain file names in the header's own folder; the
  refusal says so without opening, sizing or even testing for the named file;
* uncompressed data must be at least as long as the header declares; compressed data are
  inflated as a stream (a megabyte at a time, never held) and counted up to that length;
* a compressed MetaIO file must say ``CompressedDataSize`` (without it ITK reads garbage).

``needed`` (payload bytes) always comes from ITK's own reading of the header, so these checks
and the reader agree on what the file declares.
"""

from __future__ import annotations

import bz2
import gzip
import logging
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

from lungcad.errors import CTFileNotFoundError, CTFormatError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
_HEADER_SCAN = 1 << 16  # text headers (MetaIO, NRRD) are read this far at most

# MetaIO element sizes in bytes (MetaIO's MET_ValueTypeSize; MET_LONG is 4 bytes there).
_MET_SIZES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_LONG": 4,
    "MET_ULONG": 4,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}


# --- shared helpers -------------------------------------------------------------------------------


def _is_plain_name(name: str) -> bool:
    """A bare file name (no folder part, no '..', no drive), on POSIX and Windows alike."""
    if not name or name in (".", ".."):
        return False
    return PurePosixPath(name).name == name and PureWindowsPath(name).name == name


def confined_data_path(header: Path, name: str, field: str) -> Path:
    """``name`` beside ``header``, or CTFormatError; the named file is never touched here."""
    if not _is_plain_name(name):
        raise CTFormatError(
            header,
            f"{field} {name!r} is not a file name in the header's folder; a CT's data must lie "
            "beside its header, so the header is refused (the file it names was not opened)",
        )
    return header.parent / name


def _data_file(header: Path, name: str, field: str) -> Path:
    data_path = confined_data_path(header, name, field)
    if not data_path.is_file():
        raise CTFileNotFoundError(
            data_path, f"data file does not exist (named by {field} in {header})"
        )
    return data_path


def _count(read: Callable[[int], bytes], limit: int) -> int:
    """Bytes ``read`` yields, counted up to ``limit`` a chunk at a time."""
    total = 0
    while total < limit:
        chunk = read(min(CHUNK, limit - total))
        if not chunk:
            break
        total += len(chunk)
    return total


def _inflated(fh: BinaryIO, kind: str, limit: int) -> int:
    """Bytes the compressed stream from ``fh``'s position inflates to, counted up to ``limit``.

    A damaged or cut stream raises OSError / EOFError / zlib.error; callers turn those into a
    message about the file.
    """
    if kind == "gzip":
        with gzip.GzipFile(fileobj=fh, mode="rb") as stream:
            return _count(stream.read, limit)
    if kind == "bzip2":
        with bz2.BZ2File(fh, mode="rb") as stream:
            return _count(stream.read, limit)
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip header, as MetaIO writes
    total = 0
    while total < limit and not inflater.eof:
        data = fh.read(CHUNK)
        if not data:
            break
        while data and total < limit:
            total += len(inflater.decompress(data, CHUNK))
            data = inflater.unconsumed_tail
    return total


def _check_compressed(data_path: Path, offset: int, kind: str, needed: int, header: Path) -> None:
    try:
        with data_path.open("rb") as fh:
            fh.seek(offset)
            got = _inflated(fh, kind, needed)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise CTFormatError(
            data_path, f"compressed voxel data are damaged or cut short ({exc})"
        ) from None
    if got < needed:
        raise CTFormatError(
            data_path,
            f"compressed voxel data hold {got} bytes when inflated, but the header "
            f"{header.name} declares {needed}: the file is incomplete (refused rather than "
            "read with missing slices)",
        )


def _check_length(data_path: Path, available: int, needed: int, header: Path, what: str) -> None:
    if available < needed:
        raise CTFormatError(
            data_path,
            f"data file is truncated: it has {available} bytes, the header {header.name} needs "
            f"{needed} ({what})",
        )


# --- MetaIO ---------------------------------------------------------------------------------------


def _parse_metaio_header(path: Path) -> tuple[dict[str, str], int | None, list[str]]:
    """MetaIO ``Key = Value`` fields up to ElementDataFile, the byte offset after that line, and
    the lines after it (the file names of ``ElementDataFile = LIST``)."""
    with path.open("rb") as f:
        head = f.read(_HEADER_SCAN)
    fields: dict[str, str] = {}
    pos = 0
    lines = head.splitlines(keepends=True)
    for n, raw_line in enumerate(lines):
        pos += len(raw_line)
        line = raw_line.decode("latin-1").strip()
        if "=" not in line:
            continue
        key, _, value = line.partition("=")
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            rest = [r.decode("latin-1").strip() for r in lines[n + 1 :]]
            return fields, pos, [r for r in rest if r]
    return fields, None, []


def check_metaio(path: Path) -> None:
    """Refuse a MetaIO file whose data file is elsewhere, missing, or shorter than declared."""
    fields, data_offset, after = _parse_metaio_header(path)
    if data_offset is None:
        if path.suffix.lower() == ".mhd":
            raise CTFormatError(
                path, "not a MetaIO header: no 'ElementDataFile = ...' line was found"
            )
        return  # .mha that is not MetaIO: let SimpleITK say what it is
    try:
        dims = [int(v) for v in fields.get("dimsize", "").split()]
    except ValueError:
        dims = []
    if not dims or min(dims) < 1:
        raise CTFormatError(path, f"MetaIO header has no valid DimSize ({fields.get('dimsize')!r})")
    etype = fields.get("elementtype", "").upper()
    if etype not in _MET_SIZES:
        raise CTFormatError(
            path, f"MetaIO header has an unsupported ElementType {fields.get('elementtype')!r}"
        )
    try:
        channels = int(fields.get("elementnumberofchannels", "1"))
        header_size = int(fields.get("headersize", "0"))
    except ValueError as exc:
        raise CTFormatError(path, f"MetaIO header has a bad number: {exc}") from exc
    data_name = fields["elementdatafile"]
    compressed = fields.get("compresseddata", "false").lower() == "true"
    needed = _prod(dims) * _MET_SIZES[etype] * channels

    tokens = data_name.split()
    if data_name.upper() == "LOCAL":
        data_path, offset = path, data_offset
    elif tokens and tokens[0].upper() == "LIST":
        for name in after:  # one file per slice: each must be beside the header
            confined_data_path(path, name, "ElementDataFile LIST entry")
        log.debug("%s: data in several files; their lengths are not checked here", path)
        return
    elif len(tokens) > 1:  # a numbered pattern: 'slice%03d.raw 1 96 1'
        confined_data_path(path, tokens[0], "ElementDataFile pattern")
        log.debug("%s: data in numbered files; their lengths are not checked here", path)
        return
    else:
        data_path, offset = _data_file(path, data_name, "ElementDataFile"), 0
    available = data_path.stat().st_size - offset

    if compressed:
        declared = fields.get("compresseddatasize", "")
        if not declared.isdigit():
            raise CTFormatError(
                path,
                "MetaIO header says CompressedData = True but gives no CompressedDataSize; "
                "without it the reader fills what it cannot find with zeros, so the file is "
                "refused",
            )
        if available < int(declared):
            raise CTFormatError(
                data_path,
                f"compressed data file is truncated: it has {available} bytes, the header "
                f"{path.name} needs {int(declared)} (CompressedDataSize)",
            )
        _check_compressed(data_path, offset, "zlib", needed, path)
        return
    what = f"DimSize {' '.join(map(str, dims))}, {etype}" + (
        f", {channels} channels" if channels != 1 else ""
    )
    _check_length(data_path, available, needed + max(header_size, 0), path, what)


def _prod(values: list[int]) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


# --- NIfTI ----------------------------------------------------------------------------------------


def _vox_offset(head: bytes) -> int | None:
    """Where the voxels start in a NIfTI-1 or -2 file (None if ``head`` is no NIfTI header)."""
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:
            return int(struct.unpack(endian + "f", head[108:112])[0])
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:
            return int(struct.unpack(endian + "q", head[168:176])[0])
    return None


def check_nifti(path: Path, needed: int) -> None:
    """A single-file NIfTI (.nii, .nii.gz) holds its header's voxel count after vox_offset."""
    name = path.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        return  # .hdr/.img pairs: ITK refuses a short .img itself
    compressed = name.endswith(".gz")
    try:
        with path.open("rb") as fh:
            stream: BinaryIO = gzip.GzipFile(fileobj=fh, mode="rb") if compressed else fh
            head = stream.read(544)
            offset = _vox_offset(head)
            if offset is None:
                return  # not NIfTI after all: ITK says what it is
            total = needed + max(offset, 352)
            if not compressed:
                _check_length(path, path.stat().st_size, total, path, "NIfTI voxels")
                return
            got = len(head) + _count(stream.read, total - len(head))
    except (OSError, EOFError, zlib.error) as exc:
        raise CTFormatError(path, f"compressed data are damaged or cut short ({exc})") from None
    if got < total:
        raise CTFormatError(
            path,
            f"the gzip stream holds {got} bytes when inflated, but the NIfTI header declares "
            f"{total} (voxels from byte {offset}): the file is incomplete (refused rather than "
            "read with missing slices)",
        )


# --- NRRD -----------------------------------------------------------------------------------------

_NRRD_FIELD = re.compile(r"^([^:#][^:]*):=?\s?(.*)$")


def _parse_nrrd_header(path: Path) -> tuple[dict[str, str], int]:
    """NRRD fields (lower-case names) and the byte offset of the attached data."""
    with path.open("rb") as fh:
        head = fh.read(_HEADER_SCAN)
    fields: dict[str, str] = {}
    pos = 0
    for raw_line in head.splitlines(keepends=True):
        pos += len(raw_line)
        line = raw_line.decode("latin-1").rstrip("\r\n")
        if not line.strip():
            break
        m = _NRRD_FIELD.match(line)
        if m and not line.startswith("NRRD"):
            fields[m.group(1).strip().lower()] = m.group(2).strip()
    return fields, pos


def check_nrrd(path: Path, needed: int, values: int) -> None:
    """A NRRD's (attached or detached) data are beside it and as long as ``sizes`` x ``type``.

    ``values`` is the number of values (voxels x components), for the text encodings.
    """
    fields, offset = _parse_nrrd_header(path)
    encoding = fields.get("encoding", "raw").lower()
    kind = {"gz": "gzip", "gzip": "gzip", "bz2": "bzip2", "bzip2": "bzip2"}.get(encoding, encoding)
    name = fields.get("data file", fields.get("datafile"))
    if name is not None:
        tokens = name.split()
        if (tokens and tokens[0].upper() == "LIST") or len(tokens) > 1:
            first = tokens[0] if tokens[0].upper() != "LIST" else ""
            if first:
                confined_data_path(path, first, "NRRD 'data file' pattern")
            else:  # the names follow the header's blank line
                with path.open("rb") as fh:
                    fh.seek(offset)
                    for line in fh.read(_HEADER_SCAN).decode("latin-1").splitlines():
                        if line.strip():
                            confined_data_path(path, line.strip(), "NRRD 'data file' entry")
            log.debug("%s: data in several files; their lengths are not checked here", path)
            return
        data_path, offset = _data_file(path, name, "NRRD 'data file'"), 0
    else:
        data_path = path
    try:
        skip = int(fields.get("byte skip", fields.get("byteskip", "0")))
    except ValueError:
        skip = 0
    available = data_path.stat().st_size - offset
    if kind == "raw":
        _check_length(data_path, available, needed + max(skip, 0), path, "NRRD raw voxels")
    elif kind in ("ascii", "text", "txt"):
        # one character and one separator per value, at the very least
        _check_length(data_path, available, 2 * values - 1, path, "NRRD text voxels")
    elif kind == "hex":
        _check_length(data_path, available, 2 * needed, path, "NRRD hex voxels")
    elif kind in ("gzip", "bzip2"):
        _check_compressed(data_path, offset, kind, needed + max(skip, 0), path)
