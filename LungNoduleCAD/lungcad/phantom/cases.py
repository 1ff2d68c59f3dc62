"""One synthetic case from (seed, case index): same seed, same anatomy, same bytes."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np

from lungcad.ct import CT, Geometry
from lungcad.phantom.anatomy import (
    ChestAnatomy,
    sample_anatomy,
    sample_atelectasis,
    sample_fissures,
)
from lungcad.phantom.grid import sample_full_grid, small_grid
from lungcad.phantom.nodules import sample_nodules
from lungcad.phantom.render import RenderedCase, render_case
from lungcad.phantom.spec import NoduleSpec, PhantomSize, RealismVersion, ScanGrid
from lungcad.phantom.trees import add_peripheral_vessels

# independent random streams per purpose, so that e.g. the small grid reuses the same anatomy;
# _REALISM holds the version-2 draws, so version 1 consumes exactly what it always did
_ANATOMY, _GRID, _NODULES, _NOISE, _CANDIDATES, _REALISM = range(6)
CONTRAST_SHARE = 0.3  # version 2: share of contrast-enhanced cases
BLOOD_HU = (150.0, 400.0)  # version 2: enhanced blood pool
NOISE_REFERENCE_MM = 1.25  # version 2: thicker slices average this slice's noise down


def series_uid_for(seed: int, index: int, version: RealismVersion = RealismVersion.V1) -> str:
    """A valid DICOM UID under the 2.25 (UUID-derived) root, stable for (seed, index, version).

    Version 1 keeps its old UIDs; other versions draw other images, so they get other UIDs.
    """
    tag = "" if version == RealismVersion.V1 else f"v{int(version)}:"
    digest = hashlib.sha256(f"lungcad-phantom:{tag}{seed}:{index}".encode()).digest()[:16]
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
    version: RealismVersion = RealismVersion.V1
    blood_hu: float | None = None  # contrast-enhanced blood pool; None: no contrast

    @property
    def contrast(self) -> bool:
        return self.blood_hu is not None

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


def make_spec(
    seed: int, index: int, version: RealismVersion | int = RealismVersion.V1
) -> PhantomSpec:
    """Draw a case's anatomy, grid, noise and nodules; ``version`` picks the generator's look."""
    version = RealismVersion(version)
    anatomy = sample_anatomy(case_rng(seed, index, _ANATOMY))
    blood_hu = None
    if version >= RealismVersion.V2:
        realism_rng = case_rng(seed, index, _REALISM)
        if realism_rng.random() < CONTRAST_SHARE:
            blood_hu = round(float(realism_rng.uniform(*BLOOD_HU)), 1)
        anatomy = dataclasses.replace(
            anatomy,
            vessels=add_peripheral_vessels(anatomy, anatomy.vessels, realism_rng),
            fissures=sample_fissures(anatomy, realism_rng),
            atelectasis=sample_atelectasis(anatomy, realism_rng),
        )
    grid_rng = case_rng(seed, index, _GRID)
    full_grid = sample_full_grid(anatomy, grid_rng, version)
    noise_hu = float(grid_rng.uniform(12, 35))
    if version >= RealismVersion.V2:
        noise_hu *= float(np.sqrt(min(1.0, NOISE_REFERENCE_MM / full_grid.slice_thickness_mm)))
    nodules = sample_nodules(anatomy, case_rng(seed, index, _NODULES), full_grid.z_range_mm)
    return PhantomSpec(
        seed,
        index,
        series_uid_for(seed, index, version),
        anatomy,
        nodules,
        full_grid,
        noise_hu,
        version=version,
        blood_hu=blood_hu,
    )


def render_spec(spec: PhantomSpec, size: PhantomSize) -> PhantomCase:
    """Voxels for a spec; small grids average over bigger voxels, so they get less noise."""
    grid = spec.grid(size)
    noise = spec.noise_hu * (0.5 if size is PhantomSize.SMALL else 1.0)
    rng = case_rng(spec.seed, spec.index, _NOISE)
    rendered = render_case(spec.anatomy, spec.nodules, grid, rng, noise, spec.blood_hu)
    return PhantomCase(spec, size, rendered)


def make_case(
    seed: int, index: int, size: PhantomSize, version: RealismVersion | int = RealismVersion.V1
) -> PhantomCase:
    return render_spec(make_spec(seed, index, version), size)
