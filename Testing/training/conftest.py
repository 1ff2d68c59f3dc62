"""Training-tree fixtures: one canonical cache of the small phantom set, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungcad_training.cache import prefill_cache

CACHE_SPACING = (2.0, 2.0, 2.5)  # a coarse grid keeps the CPU runs short


@pytest.fixture(scope="session")
def cache_dir(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small set cached at ``CACHE_SPACING``; tests read it and never change its entries."""
    folder = tmp_path_factory.mktemp("training-cache")
    prefill_cache(small_dataset, folder, spacing_xyz=CACHE_SPACING, progress=False)
    return folder
