"""What every training dataset shares: the cache, the series split, and per-epoch randomness."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from lungcad.luna16 import CandidateInfo, candidate_list, split_by_series
from lungcad.preprocess import CANONICAL_SPACING_XYZ
from lungcad_training.cache import SeriesCache

log = logging.getLogger(__name__)

DEFAULT_VAL_STRIDE = 10


class CachedSeriesDataset(Dataset):
    """Base class: series of one LUNA16-layout folder, read through a :class:`SeriesCache`.

    The split is :func:`lungcad.luna16.split_by_series` over the candidate list of the series that
    are on disk or already cached, so every dataset (and any evaluation using the same candidate
    list) puts the same series in validation, and a cached dataset keeps working after its
    ``.mhd`` files move away. ``set_epoch`` reseeds per-epoch randomness (call it before each
    epoch; with ``persistent_workers`` the workers would not see it).
    """

    def __init__(
        self,
        data_dir: str | Path,
        cache_dir: str | Path,
        *,
        val_stride: int = DEFAULT_VAL_STRIDE,
        is_validation: bool = False,
        spacing_xyz: tuple[float, float, float] = CANONICAL_SPACING_XYZ,
        seed: int = 0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.cache = SeriesCache(cache_dir, data_dir, spacing_xyz)
        self.val_stride = val_stride
        self.is_validation = is_validation
        self.seed = seed
        self.epoch = 0

    def split_candidates(self) -> list[CandidateInfo]:
        """This half's candidates, over the series available on disk or in the cache."""
        available = set(self.cache.series_paths()) | self.cache.cached_series()
        candidates = [
            c
            for c in candidate_list(self.data_dir, require_on_disk=False)
            if c.series_uid in available
        ]
        return split_by_series(candidates, self.val_stride, self.is_validation)

    @property
    def split_name(self) -> str:
        return "validation" if self.is_validation else "training"

    def epoch_rng(self, *extra: int) -> np.random.Generator:
        """A generator that depends only on (seed, epoch, extra): same in every worker and rank."""
        return np.random.default_rng([self.seed, self.epoch, *extra])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.on_epoch()

    def on_epoch(self) -> None:
        """Hook for subclasses that reshuffle per epoch."""
