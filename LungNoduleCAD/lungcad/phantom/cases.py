"""One synthetic case from (seed, case index): same seed, same anatomy, same bytes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from lungcad.ct import CT, Geometry
from lungcad.phantom.anatomy import ChestAnatomy, sample_anatomy
from lungcad.phantom.grid import sample_full_grid, small_grid
from lungcad.phantom.nodules import sample_nodules
from lungcad.phantom.render import RenderedCase, render_case
from lungcad.phantom.spec import NoduleSpec, PhantomSize, ScanGrid

# independent random streams per purpose, so that e.g. the small grid reuses the same anatomy
_ANATOMY, _GRID, _NODULES, _NOISE, _CANDIDATES = range(5)


def series_uid_for(seed: int, index: int) -> str:
    """A valid DICOM UID under the 2.25 (UUID-derived) root, stable for (seed, index)."""
    digest = hashlib.sha256(f"lungcad-phantom:{seed}:{index}".encode()).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


def case_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, stream])


@dataclass
class PhantomSpec:
    """Everything about a case except its voxels."""

    seed: int
    index: int
    series_uid: str
    anatomy: ChestAnatomy
    nodules: list[NoduleSpec]
    full_grid: ScanGrid
    noise_hu: float

    def grid(self, size: PhantomSize) -> ScanGrid:
        return self.full_grid if size is PhantomSize.FULL else small_grid(self.full_grid)


@dataclass
class PhantomCase:
    spec: PhantomSpec
    size: PhantomSize
    rendered: RenderedCase

    @property
    def ct(self) -> CT:
        g = self.rendered.grid
        geometry = Geometry.from_arrays(g.origin_xyz, g.spacing_xyz, g.direction, g.shape_irc)
        return CT(hu=self.rendered.hu, geometry=geometry, series_uid=self.spec.series_uid)


def make_spec(seed: int, index: int) -> PhantomSpec:
    anatomy = sample_anatomy(case_rng(seed, index, _ANATOMY))
    grid_rng = case_rng(seed, index, _GRID)
    full_grid = sample_full_grid(anatomy, grid_rng)
    noise_hu = float(grid_rng.uniform(12, 35))
    nodules = sample_nodules(anatomy, case_rng(seed, index, _NODULES), full_grid.z_range_mm)
    return PhantomSpec(
        seed, index, series_uid_for(seed, index), anatomy, nodules, full_grid, noise_hu
    )


def render_spec(spec: PhantomSpec, size: PhantomSize) -> PhantomCase:
    """Voxels for a spec; small grids average over bigger voxels, so they get less noise."""
    grid = spec.grid(size)
    noise = spec.noise_hu * (0.5 if size is PhantomSize.SMALL else 1.0)
    rng = case_rng(spec.seed, spec.index, _NOISE)
    return PhantomCase(spec, size, render_case(spec.anatomy, spec.nodules, grid, rng, noise))


def make_case(seed: int, index: int, size: PhantomSize) -> PhantomCase:
    return render_spec(make_spec(seed, index), size)
