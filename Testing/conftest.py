"""Shared fixtures: small phantom sets written once per test session (real files on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungcad.phantom import (
    PhantomCase,
    PhantomSize,
    PhantomSpec,
    make_case,
    make_spec,
    write_dataset,
)

# seed 4's first four cases hold identity, x/y-flipped and z-flipped orientations
DATASET_SEED = 4
DATASET_CASES = 4
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four small phantom cases in the LUNA16 layout over two subsets."""
    out = tmp_path_factory.mktemp("phantom") / "luna"
    write_dataset(
        out,
        cases=DATASET_CASES,
        seed=DATASET_SEED,
        size=PhantomSize.SMALL,
        subsets=2,
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def small_cases() -> list[PhantomCase]:
    """The same four cases as ``small_dataset``, in memory with their truth maps."""
    return [make_case(DATASET_SEED, i, PhantomSize.SMALL) for i in range(DATASET_CASES)]


@pytest.fixture(scope="session")
def twenty_specs() -> list[PhantomSpec]:
    """Twenty cases' anatomy, grids and nodules (no voxels) for population statistics."""
    return [make_spec(0, i) for i in range(20)]


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real CT samples not found at {REAL_DATA} (they live in ../shared/data/real)")
    return REAL_DATA


@pytest.fixture
def one_torch_thread():
    """Two busy cores shared with other jobs: one torch thread is both faster and steadier."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
