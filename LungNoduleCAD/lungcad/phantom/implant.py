"""Synthetic nodules inserted into a real CT's lungs: known positives on real anatomy.

Real CT with nodule labels cannot be had here, and the phantoms' own anatomy is simpler than a
real chest. Inserting the phantoms' nodules (type, size, margin, lobes, spicules, malignancy;
:mod:`lungcad.phantom.nodules`) into real lungs gives scans whose every other structure is real:
vessels, fissures, pleura, mediastinum, noise and kernel. A set made from a scan that training
never saw measures sensitivity on real anatomy; one made from other scans gives training
positives with real surroundings.

How a nodule is drawn, so it looks as the host scanner would have imaged it:

- in world (LPS) coordinates onto the host's own voxels, whatever their direction and spacing;
  each voxel is the mean of a supersampled block (:data:`IN_PLANE_SAMPLES` per in-plane axis,
  enough along the slice axis for sub-millimetre steps), so a thick slice averages the nodule
  over its thickness as the scanner's slice profile does;
- over the host as the phantoms draw it: a voxel is raised toward the nodule's HU by its
  occupancy, never lowered (a vessel running through stays);
- blurred in plane by :data:`lungcad.phantom.render.PSF_SIGMA_MM`, the phantoms' point spread;
- with noise where the nodule replaces lung: the replaced share of the host's own noise is put
  back, at the host's noise level (:func:`lungcad.realism.noise_sd` in muscle, else fat), with the
  same in-plane blur.

Placement uses the classical lung mask (:func:`lungcad.lungs.parenchyma_mask`): *isolated*
nodules lie at least their radius plus :data:`ISOLATED_CLEARANCE_MM` inside it, clear of large
vessels; *juxta-pleural* ones are centred a little inside the lung's surface, so that they touch
the pleura (or the mediastinum). There is no *juxta-vascular* kind: real vessels are not known as
tubes, so a nodule cannot be put against one on purpose. Every nodule lies wholly within the
field of view.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungcad.ct import CT, Geometry
from lungcad.errors import LungCADError
from lungcad.geometry import voxel_to_world, world_to_voxel
from lungcad.lungs import LungMask, parenchyma_mask
from lungcad.phantom.nodule_shape import nodule_body, nodule_reach_mm
from lungcad.phantom.nodules import MIN_DIAMETER_MM, draw_nodule_kind, make_nodule_spec
from lungcad.phantom.render import PSF_SIGMA_MM
from lungcad.phantom.spec import NoduleLocation, NoduleSpec, TubeSet
from lungcad.realism import NOISE_CLASSES, noise_sd, sample_slices

log = logging.getLogger(__name__)

#: Isolated : juxta-pleural nodules (no juxta-vascular kind: see the module docstring).
IMPLANT_LOCATION_WEIGHTS = (0.6, 0.4)
#: An isolated nodule's surface stays this far (mm) inside the lung mask.
ISOLATED_CLEARANCE_MM = 3.0
#: A juxta-pleural nodule's centre lies this share of its radius inside the lung's surface.
PLEURAL_DEPTH_SHARE = (0.4, 0.85)
#: Nodules keep at least this gap (mm) between their surfaces.
NODULE_GAP_MM = 6.0
#: An isolated nodule is not put where more than this share of its ball is already dense (a
#: large vessel or a scar): the host's HU there is above :data:`DENSE_HU`.
MAX_DENSE_SHARE = 0.15
DENSE_HU = -500.0
#: Sub-samples per in-plane axis of a voxel; the slice axis gets enough for ~1/3 pixel steps.
IN_PLANE_SAMPLES = 3
MAX_SLICE_SAMPLES = 15
#: Host noise SD (HU) used when no homogeneous muscle or fat is found (a tight crop).
FALLBACK_NOISE_SD_HU = 20.0
#: Placement tries per nodule before it is made smaller (and, at the smallest size, left out).
PLACEMENT_TRIES = 200
#: Directions and radial step (mm) used to find how far a lobulated nodule reaches.
EXTENT_DIRECTIONS = 2000
EXTENT_STEP_MM = 0.25
#: Points per spicule-distance table.
TUBE_CHUNK = 65536


class ImplantError(LungCADError, ValueError):
    """The host scan has no room for nodules (no lung found, or lungs too small)."""


@dataclass(frozen=True, eq=False)
class ImplantedCT:
    """A host CT with nodules drawn in; ``labels`` marks nodule k's voxels with k (uint8)."""

    ct: CT
    nodules: tuple[NoduleSpec, ...]
    labels: np.ndarray
    noise_sd_hu: float


def implanted_series_uid(host_digest: str, seed: int, copy: int) -> str:
    """A valid DICOM UID under the 2.25 root, stable for (host content, seed, copy)."""
    digest = hashlib.sha256(f"lungcad-implant:{host_digest}:{seed}:{copy}".encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def host_noise_sd(ct: CT) -> float:
    """The host's noise SD (HU): median local SD in muscle, else fat, else the fallback."""
    pixel_mm = (ct.geometry.spacing_irc[1], ct.geometry.spacing_irc[2])
    slices = sample_slices(ct.shape[0])
    for name, low, high in NOISE_CLASSES:
        if name == "air":
            continue  # room air is often outside a crop, and scanners clip it
        sd, _ = noise_sd(ct.hu, pixel_mm, slices, low, high)
        if sd is not None:
            return sd
    log.warning(
        "no homogeneous fat or muscle found; noise SD %.0f HU assumed", FALLBACK_NOISE_SD_HU
    )
    return FALLBACK_NOISE_SD_HU


def implant_nodules(
    host: CT,
    count: int,
    rng: np.random.Generator,
    *,
    series_uid: str | None = None,
    lungs: LungMask | None = None,
    noise_sd_hu: float | None = None,
) -> ImplantedCT:
    """``host`` with up to ``count`` synthetic nodules drawn into its lungs (see the module doc).

    Raises :class:`ImplantError` when the host has no lung or no nodule fits. Fewer than ``count``
    are drawn (with a warning) when the lungs are crowded.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    lungs = parenchyma_mask(host) if lungs is None else lungs
    name = host.series_uid or str(host.source or "the host CT")
    if not lungs.mask.any():
        raise ImplantError(f"{name}: no lung found; nodules can only be implanted into lungs")
    noise = host_noise_sd(host) if noise_sd_hu is None else float(noise_sd_hu)
    depth = _depth_inside_mm(lungs)
    hu = host.hu.astype(np.float32)
    labels = np.zeros(host.shape, dtype=np.uint8)
    placed: list[NoduleSpec] = []
    for _ in range(count):
        kind, diameter, margin, location = draw_nodule_kind(rng, IMPLANT_LOCATION_WEIGHTS)
        center = None
        while center is None:
            center = _place(host, lungs, depth, location, diameter / 2, placed, rng)
            if center is not None or diameter <= MIN_DIAMETER_MM:
                break
            diameter = max(MIN_DIAMETER_MM, round(diameter * 0.8, 2))
        if center is None:
            continue
        nodule = make_nodule_spec(len(placed) + 1, center, diameter, kind, margin, location, rng)
        draw_nodule(hu, labels, host.geometry, nodule, noise, rng)
        placed.append(nodule)
    if not placed:
        raise ImplantError(
            f"{name}: no room for a nodule of {MIN_DIAMETER_MM:g} mm in its lungs "
            f"({lungs.volume_ml:.0f} ml found)"
        )
    if len(placed) < count:
        log.warning("%s: room for %d of %d nodules", name, len(placed), count)
    limits = np.iinfo(np.int16)  # the host's own range is kept (metal, contrast above 3071)
    out = np.clip(np.rint(hu), limits.min, limits.max).astype(np.int16)
    ct = CT(hu=out, geometry=host.geometry, series_uid=series_uid, metadata=dict(host.metadata))
    return ImplantedCT(ct, tuple(placed), labels, noise)


def _depth_inside_mm(lungs: LungMask) -> np.ndarray:
    """Each lung voxel's distance (mm) to the nearest non-lung voxel; the field's edge counts as
    non-lung, so a nodule is never placed across it."""
    padded = np.pad(lungs.mask, 1, constant_values=False)
    depth = ndimage.distance_transform_edt(padded, sampling=lungs.geometry.spacing_irc)
    return depth[1:-1, 1:-1, 1:-1].astype(np.float32)


def _place(
    host: CT,
    lungs: LungMask,
    depth: np.ndarray,
    location: NoduleLocation,
    radius: float,
    placed: list[NoduleSpec],
    rng: np.random.Generator,
) -> np.ndarray | None:
    """A centre (LPS mm) for a nodule of ``radius`` at ``location``, or None if none is found.

    Isolated: a lung voxel deep enough. Juxta-pleural: a lung voxel on the lung's surface, moved
    inward (along the depth's gradient) to :data:`PLEURAL_DEPTH_SHARE` of the radius below it.
    """
    spacing = np.asarray(lungs.geometry.spacing_irc, dtype=np.float64)
    if location is NoduleLocation.ISOLATED:
        flat = np.flatnonzero(depth >= radius + ISOLATED_CLEARANCE_MM)
        gradient = None
    else:
        flat = np.flatnonzero((depth > 0) & (depth <= 1.5 * spacing.max()))
        gradient = np.gradient(depth, *spacing)
    if len(flat) == 0:
        return None
    for _ in range(PLACEMENT_TRIES):
        voxel = np.unravel_index(int(rng.choice(flat)), depth.shape)
        irc = np.asarray(voxel, dtype=np.float64) + rng.uniform(-0.5, 0.5, 3)
        if gradient is not None:
            inward = np.array([g[voxel] for g in gradient])
            if np.linalg.norm(inward) < 1e-6:
                continue
            inward /= np.linalg.norm(inward)
            below_surface = rng.uniform(*PLEURAL_DEPTH_SHARE) * radius
            shift_mm = below_surface - (float(depth[voxel]) - 0.5 * float(spacing.min()))
            irc = irc + inward * shift_mm / spacing
            nearest = np.rint(irc).astype(int)
            if (
                np.any(nearest < 0)
                or np.any(nearest >= depth.shape)
                or not lungs.mask[tuple(nearest)]
            ):
                continue
        center = voxel_to_world(irc[None], lungs.geometry)[0]
        if not _inside_field(host.geometry, center, radius + 1.0):
            continue
        if any(
            np.linalg.norm(center - np.asarray(p.center_xyz)) < radius + p.radius_mm + NODULE_GAP_MM
            for p in placed
        ):
            continue
        if location is NoduleLocation.ISOLATED and _dense_share(host, center, radius) > (
            MAX_DENSE_SHARE
        ):
            continue
        return center
    return None


def _ball_corners_irc(geometry: Geometry, center: np.ndarray, reach_mm: float) -> np.ndarray:
    """The corners of the cube around a ball of ``reach_mm`` at ``center``, in voxel indices."""
    cube = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], dtype=float)
    return world_to_voxel(center[None] + reach_mm * cube, geometry)


def _box_voxels(box: list[tuple[int, int]]) -> np.ndarray:
    """Every voxel index of ``box`` as an (M, 3) float array, in C order."""
    grid = np.meshgrid(*[np.arange(a, b) for a, b in box], indexing="ij")
    return np.stack(grid, -1).reshape(-1, 3).astype(np.float64)


def _inside_field(geometry: Geometry, center: np.ndarray, reach_mm: float) -> bool:
    """Whether a ball of ``reach_mm`` around ``center`` lies wholly within the voxels' extent."""
    irc = _ball_corners_irc(geometry, center, reach_mm)
    return bool(np.all(irc >= 0.0) and np.all(irc <= np.asarray(geometry.shape_irc) - 1.0))


def _dense_share(host: CT, center: np.ndarray, radius: float) -> float:
    """The share of the host's voxels within ``radius`` of ``center`` that are denser than
    :data:`DENSE_HU`."""
    box = _voxel_box(host.geometry, center, radius)
    world = voxel_to_world(_box_voxels(box), host.geometry)
    inside = np.linalg.norm(world - center[None], axis=1) <= radius
    if not inside.any():
        return 0.0
    values = host.hu[tuple(slice(a, b) for a, b in box)].reshape(-1)[inside]
    return float(np.mean(values > DENSE_HU))


def _voxel_box(geometry: Geometry, center: np.ndarray, reach_mm: float) -> list[tuple[int, int]]:
    """Index ranges (start, stop) per axis of the voxels within ``reach_mm`` of ``center``."""
    irc = _ball_corners_irc(geometry, center, reach_mm)
    lo = np.maximum(np.floor(irc.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(irc.max(axis=0)).astype(int) + 1, geometry.shape_irc)
    return [(int(a), int(b)) for a, b in zip(lo, hi, strict=True)]


def _slice_samples(geometry: Geometry) -> int:
    """Sub-samples along the slice axis: steps of about a third of a pixel, odd, capped."""
    pixel = float(np.mean(geometry.spacing_irc[1:]))
    n = math.ceil(IN_PLANE_SAMPLES * geometry.spacing_irc[0] / pixel)
    n = min(max(n, IN_PLANE_SAMPLES), MAX_SLICE_SAMPLES)
    return n if n % 2 else n + 1


def _occupancy(
    geometry: Geometry, box: list[tuple[int, int]], nodule: NoduleSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Mean occupancy and mean HU (where occupied) of ``nodule`` over each voxel of ``box``."""
    n_slice = _slice_samples(geometry)
    offsets = [
        (a, b, c)
        for a in (np.arange(n_slice) + 0.5) / n_slice - 0.5
        for b in (np.arange(IN_PLANE_SAMPLES) + 0.5) / IN_PLANE_SAMPLES - 0.5
        for c in (np.arange(IN_PLANE_SAMPLES) + 0.5) / IN_PLANE_SAMPLES - 0.5
    ]
    irc = _box_voxels(box)
    center = np.asarray(nodule.center_xyz)
    soft = float(np.min(geometry.spacing_irc[1:])) / IN_PLANE_SAMPLES
    spicules = (
        TubeSet.from_rows(
            [(np.array(a), np.array(b), rad, 0.3, True) for a, b, rad in nodule.spicules]
        )
        if nodule.spicules
        else None
    )
    occupancy = np.zeros(len(irc), dtype=np.float64)
    weighted = np.zeros(len(irc), dtype=np.float64)
    for offset in offsets:
        local = voxel_to_world(irc + np.asarray(offset), geometry) - center[None]
        occ, target = nodule_body(nodule, local[:, 0], local[:, 1], local[:, 2], soft)
        if spicules is not None:
            tube = _tube_occupancy(spicules, local + center[None], soft)
            target = np.where(tube > occ, nodule.solid_hu, target)
            occ = np.maximum(occ, tube)
        occupancy += occ
        weighted += occ * target
    shape = tuple(b - a for a, b in box)
    mean_hu = np.divide(weighted, occupancy, out=np.zeros_like(weighted), where=occupancy > 0)
    return (occupancy / len(offsets)).reshape(shape), mean_hu.reshape(shape)


def _tube_occupancy(tubes: TubeSet, points: np.ndarray, soft: float) -> np.ndarray:
    """Occupancy (0-1, soft edge) of the union of ``tubes`` at ``points`` (M, 3), in chunks so
    the (M, tubes) distance table stays small."""
    out = np.empty(len(points), dtype=np.float64)
    for k in range(0, len(points), TUBE_CHUNK):
        nearest = tubes.distance_to(points[k : k + TUBE_CHUNK]).min(axis=1)
        out[k : k + TUBE_CHUNK] = np.clip(-nearest / soft + 0.5, 0.0, 1.0)
    return out


def _extent_mm(nodule: NoduleSpec, soft: float) -> float:
    """How far from its centre ``nodule`` reaches (mm): its body along many directions (lobes
    make it far from round), and its spicules' ends."""
    directions = _fibonacci_sphere(EXTENT_DIRECTIONS)
    upper = nodule_reach_mm(nodule, soft)
    radii = np.arange(0.0, upper + EXTENT_STEP_MM, EXTENT_STEP_MM)
    points = directions[:, None, :] * radii[None, :, None]
    occ, _ = nodule_body(nodule, points[..., 0], points[..., 1], points[..., 2], soft)
    reach = float(radii[np.flatnonzero(occ.max(axis=0) > 0)].max()) + EXTENT_STEP_MM
    for a, b, rad in nodule.spicules:
        for end in (a, b):
            far = np.linalg.norm(np.asarray(end) - np.asarray(nodule.center_xyz)) + rad + soft
            reach = max(reach, float(far))
    return reach


def _fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` nearly evenly spread unit vectors (n, 3)."""
    k = np.arange(n) + 0.5
    polar = np.arccos(1.0 - 2.0 * k / n)
    azimuth = np.pi * (1.0 + 5.0**0.5) * k
    return np.stack(
        [np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], -1
    )


def draw_nodule(
    hu: np.ndarray,
    labels: np.ndarray,
    geometry: Geometry,
    nodule: NoduleSpec,
    noise_sd_hu: float,
    rng: np.random.Generator,
) -> None:
    """Draw ``nodule`` into ``hu`` (float32, in place) and its label into ``labels``."""
    pixel = np.asarray(geometry.spacing_irc[1:])
    sigma_px = PSF_SIGMA_MM / pixel
    soft = float(np.min(pixel)) / IN_PLANE_SAMPLES
    reach = _extent_mm(nodule, soft) + 3.0 * PSF_SIGMA_MM + float(np.max(pixel))
    box = _voxel_box(geometry, np.asarray(nodule.center_xyz), reach)
    where = tuple(slice(a, b) for a, b in box)
    occupancy, target = _occupancy(geometry, box, nodule)
    host = hu[where]
    raised = occupancy * np.maximum(target - host, 0.0)
    blur = (0.0, *sigma_px)
    raised = ndimage.gaussian_filter(raised, blur, truncate=3.0)
    share = ndimage.gaussian_filter(occupancy, blur, truncate=3.0)
    noise = ndimage.gaussian_filter(rng.standard_normal(host.shape), blur, truncate=3.0)
    noise /= max(float(noise.std()), 1e-6)
    hu[where] = host + raised + noise * noise_sd_hu * share
    mine = labels[where]
    mine[(occupancy >= 0.5) & (mine == 0)] = nodule.index
    centre = np.rint(world_to_voxel(np.asarray(nodule.center_xyz)[None], geometry)[0]).astype(int)
    labels[tuple(centre)] = nodule.index
