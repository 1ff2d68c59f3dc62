"""Fill the cache for every series of a dataset folder up front, in parallel processes."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from lungcad.preprocess import CANONICAL_SPACING_XYZ
from lungcad_training.cache.series import SeriesCache


def _ensure_one(
    cache_dir: str, data_dir: str, spacing_xyz: tuple[float, float, float], series_uid: str
) -> str:
    SeriesCache(cache_dir, data_dir, spacing_xyz).ensure(series_uid)
    return series_uid


def prefill_cache(
    data_dir: str | Path,
    cache_dir: str | Path,
    series_uids: Iterable[str] | None = None,
    spacing_xyz: tuple[float, float, float] = CANONICAL_SPACING_XYZ,
    workers: int = 1,
    progress: bool = True,
) -> SeriesCache:
    """Build every missing (or stale) entry of a dataset folder, with a progress bar.

    ``workers`` > 1 builds series in parallel processes (resampling already uses several threads,
    so 2-4 is plenty). Returns the cache, ready to read.
    """
    cache = SeriesCache(cache_dir, data_dir, spacing_xyz)
    uids = sorted(series_uids) if series_uids is not None else sorted(cache.series_paths())
    bar = tqdm(total=len(uids), desc="caching CTs", unit="series", disable=not progress)
    if workers <= 1:
        for uid in uids:
            cache.ensure(uid)
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(_ensure_one, str(cache_dir), str(data_dir), cache.spacing_xyz, uid)
                for uid in uids
            ]
            for future in as_completed(futures):
                future.result()
                bar.update()
    bar.close()
    return cache
