"""This process's peak resident memory, on every platform the extension runs on.

One place for it, because ``resource`` is Unix-only: importing it at module level made
``lungcad.pipeline`` (and so Apply in Slicer) fail on Windows. The figure is only ever reported
(benchmarks, per-stage statistics), so where no source is available it is ``None``, never an error.
Sources, best first: ``resource.getrusage`` (Linux reports KiB, macOS bytes); psutil's
``peak_wset`` (Windows' peak working set); psutil's current ``rss`` (a floor of the peak).
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)

__all__ = ["peak_rss_bytes", "peak_rss_mb"]


def _from_resource() -> int | None:
    try:
        import resource  # Unix only: imported here so that this module imports on Windows
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _from_psutil() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    try:
        info = psutil.Process().memory_info()
    except (psutil.Error, OSError) as exc:  # a sandbox may hide the process table
        log.debug("psutil cannot read this process's memory: %s", exc)
        return None
    peak = getattr(info, "peak_wset", None)  # Windows only
    return int(peak if peak is not None else info.rss)


def peak_rss_bytes() -> int | None:
    """Peak resident set size of this process in bytes (current RSS where only that is known);
    ``None`` where neither ``resource`` nor psutil is available."""
    for source in (_from_resource, _from_psutil):
        value = source()
        if value is not None:
            return value
    return None


def peak_rss_mb() -> float | None:
    """:func:`peak_rss_bytes` in MiB, or ``None`` where unknown."""
    peak = peak_rss_bytes()
    return None if peak is None else peak / 1024.0**2
