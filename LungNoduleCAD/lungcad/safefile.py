"""Read a whole file only if it is a regular file of bounded size.

``Path.read_bytes()`` on a symlink to ``/dev/zero`` never ends, and on a FIFO it blocks until
someone writes. Weights, model cards and saved results are read through :func:`read_bounded`
instead: the file is opened without blocking (``O_NONBLOCK`` where the platform has it), its
type and size are taken from the open descriptor (so a swap after a check changes nothing), and
at most ``max_bytes`` + 1 bytes are ever read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnsafeFileError(ValueError):
    """The path is not a regular file, or is larger than allowed; the message says which."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


def read_bounded(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of regular file ``path`` if it holds at most ``max_bytes``.

    Raises FileNotFoundError when it does not exist, UnsafeFileError when it is a device, pipe,
    folder or socket, or larger than ``max_bytes``, and OSError for other failures.
    """
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise UnsafeFileError("is a folder, not a file") from None
    with os.fdopen(fd, "rb", buffering=0) as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"is {_kind(info.st_mode)}, not a regular file; refused")
        if info.st_size > max_bytes:
            raise UnsafeFileError(
                f"is {_mib(info.st_size)}, more than the {_mib(max_bytes)} allowed; refused"
            )
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = fh.read(min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    if total > max_bytes:
        raise UnsafeFileError(f"grew past the {_mib(max_bytes)} allowed while read; refused")
    return b"".join(chunks)
