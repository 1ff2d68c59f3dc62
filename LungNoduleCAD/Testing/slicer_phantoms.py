"""Small real CTs for the module tests, and detection that runs once per CT per session.

The CTs are 70 mm crops of a small synthetic chest phantom around its larger solid nodules, so the
real cascade with the bundled weights runs in seconds. Nothing here asserts detection quality:
tests check structure against whatever the weights find.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

MODULE_DIR = Path(__file__).resolve().parents[1]
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from lungcad.ct import CT, Geometry  # noqa: E402
from lungcad.geometry import voxel_to_world, world_to_voxel_index  # noqa: E402

#: Seed 4, case 3 holds solid nodules of 12-25 mm.
SEED, CASE = 4, 3
CROP_HALF_MM = 35.0


@lru_cache(maxsize=1)
def _phantom():
    from lungcad.phantom import PhantomSize, make_case

    return make_case(SEED, CASE, PhantomSize.SMALL)


def nodule_crop(rank: int = 0) -> CT:
    """The phantom cropped to a cube of 2 x CROP_HALF_MM around its ``rank``-th largest solid
    nodule (0 = largest), with the geometry of the crop (same spacing and direction)."""
    case = _phantom()
    ct = case.ct
    solid = sorted(
        (n for n in case.spec.nodules if n.kind.value == "solid"), key=lambda n: -n.diameter_mm
    )
    nodule = solid[rank]
    centre = world_to_voxel_index(nodule.center_xyz, ct.geometry)
    half = np.ceil(CROP_HALF_MM / np.asarray(ct.geometry.spacing_irc)).astype(int)
    low = np.maximum(centre - half, 0)
    high = np.minimum(centre + half, ct.shape)
    hu = ct.hu[low[0] : high[0], low[1] : high[1], low[2] : high[2]].copy()
    g = ct.geometry
    origin = voxel_to_world(low.astype(float), g)
    geometry = Geometry.from_arrays(origin, g.spacing_xyz, g.direction, hu.shape)
    return CT(hu=hu, geometry=geometry, series_uid=f"{case.spec.series_uid}.{rank + 1}")


def nodules_in(ct: CT) -> list[tuple[tuple[float, float, float], float]]:
    """(centre LPS mm, diameter mm) of the phantom's nodules whose centre lies in ``ct``'s grid
    (a crop of the phantom): the truth a LUNA16 annotations.csv would list for it."""
    inside = []
    for nodule in _phantom().spec.nodules:
        index = world_to_voxel_index(nodule.center_xyz, ct.geometry)
        if all(0 <= i < n for i, n in zip(index, ct.shape, strict=True)):
            inside.append((tuple(float(v) for v in nodule.center_xyz), float(nodule.diameter_mm)))
    return inside


def rotation_z(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def reoriented(ct: CT, direction: np.ndarray, suffix: str) -> CT:
    """The same voxels placed with another direction matrix (an oblique or flipped scan)."""
    g = ct.geometry
    geometry = Geometry.from_arrays(g.origin_xyz, g.spacing_xyz, direction, g.shape_irc)
    return CT(hu=ct.hu.copy(), geometry=geometry, series_uid=f"{ct.series_uid}.{suffix}")


def oblique_flipped(ct: CT) -> CT:
    """Rows flipped, slices flipped and the whole grid turned 30 degrees about the body axis."""
    return reoriented(ct, rotation_z(30.0) @ np.diag([1.0, -1.0, -1.0]), "oblique")


def _key(ct: CT) -> str:
    g = ct.geometry
    digest = hashlib.sha256(np.ascontiguousarray(ct.hu).tobytes())
    rounded = [round(v, 3) for v in (*g.origin_xyz, *g.spacing_xyz, *g.direction)]
    digest.update(repr((rounded, tuple(g.shape_irc))).encode())
    return digest.hexdigest()


_RESULTS: dict[str, object] = {}


class CachedRunner:
    """A Runner that runs the real in-process detection once per distinct CT in this session.

    ``calls`` counts requests, ``detections`` counts real network runs, so tests can show that
    threshold changes never run a network. A result carries the series UID of the CT asked
    about, as a real run would.
    """

    def __init__(self) -> None:
        from LungNoduleCADLib.logic import InProcessRunner

        self._runner = InProcessRunner()
        self.calls = 0
        self.detections = 0

    def __call__(self, ct, request, progress=None, cancel: threading.Event | None = None):
        self.calls += 1
        if cancel is not None and cancel.is_set():
            from lungcad.pipeline import DetectionCancelled

            raise DetectionCancelled("detection cancelled")
        key = _key(ct)
        if key not in _RESULTS:
            self.detections += 1
            _RESULTS[key] = self._runner(ct, request, progress, cancel)
        result = _RESULTS[key]
        if result.series_uid != ct.series_uid:  # the same voxels under another series' name
            result = dataclasses.replace(result, series_uid=ct.series_uid)
        return (
            result
            if result.thresholds == request.thresholds
            else result.refilter(request.thresholds)
        )
