"""Rasterise an analytic chest onto a scan grid: tissues, tubes, nodules, then blur and noise.

Works on the canonical grid (index axes increasing toward L, P, S) and flips the finished arrays
to the grid's stored orientation at the end. Edges are soft over about one voxel (partial
volume); scanner noise is added before an in-plane blur so that it comes out correlated like CT
noise. The slice-by-slice and slab-by-slab loops keep a full 512x512x400 case within a few
seconds on one core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungcad.phantom.anatomy import ChestAnatomy
from lungcad.phantom.grid import fine_grid, sub_slices
from lungcad.phantom.nodule_shape import nodule_body, nodule_reach_mm
from lungcad.phantom.shape import lung_membership
from lungcad.phantom.spec import DrawMode, NoduleSpec, ScanGrid, Tissue, TubeSet

HU_AIR = -1000.0
HU_BONE_CORTEX = 650.0
HU_BONE_MARROW = 230.0
HU_AIRWAY_WALL = 30.0
HU_TABLE = 120.0
HU_MIN, HU_MAX = -1024, 3071
HU_PLEURA = 40.0  # fissures: a sheet of this HU ...
FISSURE_MM = 0.5  # ... and this thickness, drawn with the same total density on any grid
HU_ATELECTASIS = -100.0
HU_MYOCARDIUM = 40.0
MYOCARDIUM_MM = 9.0  # heart wall and septum around the enhanced chambers
AORTA_WALL_MM = 2.0
RAISE, SET = DrawMode.RAISE, DrawMode.SET
PSF_SIGMA_MM = 0.45  # in-plane point spread (Gaussian SD) of the simulated scanner


@dataclass
class RenderedCase:
    """Arrays in the grid's stored orientation, (index, row, col)."""

    hu: np.ndarray  # int16
    nodule_labels: np.ndarray  # uint8, label k = k-th nodule (1-based)
    tissue: np.ndarray  # uint8 Tissue
    grid: ScanGrid


class _Canvas:
    """The canonical float32 volume, tissue map and voxel-centre coordinates being drawn on."""

    def __init__(
        self, grid: ScanGrid, vol: np.ndarray | None = None, tissue: np.ndarray | None = None
    ) -> None:
        self.grid = grid
        self.vol = np.full(grid.shape_irc, HU_AIR, dtype=np.float32) if vol is None else vol
        self.tissue = np.zeros(grid.shape_irc, dtype=np.uint8) if tissue is None else tissue
        self.xs = grid.axis_mm("x")
        self.ys = grid.axis_mm("y")
        self.zs = grid.axis_mm("z")
        self.soft = float(np.mean(grid.spacing_xyz[:2]))

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Canonical index slices (z, y, x) of the voxels whose centres lie in [lo, hi] mm."""
        out = []
        for axis, coords in ((2, self.zs), (1, self.ys), (0, self.xs)):
            a = int(np.searchsorted(coords, lo[axis], side="left"))
            b = int(np.searchsorted(coords, hi[axis], side="right"))
            if b <= a:
                return None
            out.append(slice(a, b))
        return tuple(out)

    def local_coords(self, box: tuple[slice, slice, slice], origin: np.ndarray):
        z = (self.zs[box[0]] - origin[2])[:, None, None]
        y = (self.ys[box[1]] - origin[1])[None, :, None]
        x = (self.xs[box[2]] - origin[0])[None, None, :]
        return x, y, z


def _tube_boxes(canvas: _Canvas, tubes: TubeSet, grow: float) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (z, y, x) start/stop voxel indices of every tube's bounding box, clipped."""
    r_max = np.maximum(tubes.r0, tubes.r1) + grow + canvas.soft
    lo = np.minimum(tubes.p0, tubes.p1) - r_max[:, None]
    hi = np.maximum(tubes.p0, tubes.p1) + r_max[:, None]
    origin = np.asarray(canvas.grid.canonical_origin_xyz)
    spacing = np.asarray(canvas.grid.spacing_xyz)
    shape_xyz = np.asarray(canvas.grid.shape_irc[::-1])
    start = np.clip(np.ceil((lo - origin) / spacing), 0, shape_xyz).astype(np.int64)
    stop = np.clip(np.floor((hi - origin) / spacing) + 1, 0, shape_xyz).astype(np.int64)
    return start[:, ::-1], stop[:, ::-1]


def _tube_occupancies(canvas: _Canvas, tubes: TubeSet, idx: np.ndarray, start: np.ndarray, dims):
    """Partial-volume occupancy (0..1) of a batch of tapered capsules, (n, dz, dy, dx)."""
    origin = canvas.grid.canonical_origin_xyz
    spacing = canvas.grid.spacing_xyz
    p0 = tubes.p0[idx].astype(np.float32)
    ab = (tubes.p1[idx] - tubes.p0[idx]).astype(np.float32)
    coords = []
    for axis_zyx, axis_xyz in ((0, 2), (1, 1), (2, 0)):
        steps = start[idx, axis_zyx][:, None] + np.arange(dims[axis_zyx])[None, :]
        values = (origin[axis_xyz] + steps * spacing[axis_xyz]).astype(np.float32)
        coords.append(values - p0[:, axis_xyz][:, None])
    z = coords[0][:, :, None, None]
    y = coords[1][:, None, :, None]
    x = coords[2][:, None, None, :]
    abx, aby, abz = (ab[:, k][:, None, None, None] for k in range(3))
    length2 = np.maximum((ab * ab).sum(1), 1e-6)[:, None, None, None]
    t = (x * abx + y * aby + z * abz) / length2
    np.clip(t, 0.0, 1.0, out=t)
    dx = x - t * abx
    dy = y - t * aby
    dz = z - t * abz
    dist = np.sqrt(dx * dx + dy * dy + dz * dz)
    r0 = tubes.r0[idx].astype(np.float32)[:, None, None, None]
    r1 = tubes.r1[idx].astype(np.float32)[:, None, None, None]
    radius = r0 + t * (r1 - r0)
    occ = (radius - dist) / canvas.soft + 0.5
    np.clip(occ, 0.0, 1.0, out=occ)
    # where a tube is thinner than a voxel it only partly fills the voxels it crosses
    occ *= np.minimum(1.0, 2.0 * radius / canvas.soft)
    return occ


def _draw_tubes(
    canvas: _Canvas,
    tubes: TubeSet,
    hu: float,
    tissue: Tissue,
    *,
    mode: DrawMode,
    grow: float = 0.0,
    only_in: tuple[Tissue, ...] | None = None,
    batch_voxels: int = 3_000_000,
) -> None:
    """Draw ``tubes`` at ``hu``, raising darker voxels or setting them (:class:`DrawMode`).

    Occupancies are computed for batches of similar-sized tubes at once (thousands of small
    vessels would otherwise cost one Python round trip each), then applied tube by tube in order.
    """
    if len(tubes) == 0:
        return
    if grow:
        tubes = TubeSet(
            tubes.p0, tubes.p1, tubes.r0 + grow, tubes.r1 + grow, tubes.tree, tubes.is_leaf
        )
    start, stop = _tube_boxes(canvas, tubes, 0.0)
    sizes = stop - start
    keep = np.flatnonzero(np.all(sizes > 0, axis=1))
    order = keep[np.argsort(np.prod(sizes[keep], axis=1), kind="stable")]
    pos = 0
    while pos < len(order):
        dims = sizes[order[pos]].copy()
        end = pos + 1
        while end < len(order):
            grown = np.maximum(dims, sizes[order[end]])
            if (end + 1 - pos) * int(np.prod(grown)) > batch_voxels:
                break
            dims = grown
            end += 1
        batch = order[pos:end]  # same-HU blends commute, so order does not matter
        occs = _tube_occupancies(canvas, tubes, batch, start, dims)
        for j, i in enumerate(batch):
            lz, ly, lx = sizes[i]
            box = tuple(slice(a, a + n) for a, n in zip(start[i], sizes[i], strict=True))
            occ = occs[j, :lz, :ly, :lx]
            sub = canvas.vol[box]
            tis = canvas.tissue[box]
            if only_in is not None:
                allowed = tis == int(only_in[0])
                for extra in only_in[1:]:
                    allowed |= tis == int(extra)
                occ = occ * allowed
            if mode is RAISE:
                sub += occ * np.maximum(hu - sub, 0.0)
            else:
                sub += occ * (hu - sub)
            tis[occ >= 0.5] = int(tissue)
        pos = end


def _base_slice(canvas: _Canvas, anatomy: ChestAnatomy):
    """The parts of an axial slice that do not change with z: body, fat, muscle, table, spine."""
    x = canvas.xs[None, :]
    y = canvas.ys[:, None]
    ax, ay = anatomy.body_ax, anatomy.body_ay
    shape = (len(canvas.ys), len(canvas.xs))
    vol = np.full(shape, HU_AIR, dtype=np.float32)
    tis = np.zeros(shape, dtype=np.uint8)
    # the back is flatter than the front
    body = (x / ax) ** 2 + (y / (ay * np.where(y > 0, 1.04, 1.0))) ** 2 < 1.0
    inner = (x / (ax - anatomy.fat_mm)) ** 2 + (y / (ay - anatomy.fat_mm)) ** 2 < 1.0
    table_top = anatomy.table_y + 0.0015 * x**2
    table = (y > table_top) & (y < table_top + 7.0) & (np.abs(x) < ax * 1.15) & ~body
    vol[body], tis[body] = anatomy.fat_hu, Tissue.FAT
    vol[inner], tis[inner] = anatomy.muscle_hu, Tissue.SOFT_TISSUE
    vol[table], tis[table] = HU_TABLE, Tissue.TABLE
    sy, sr = anatomy.spine_y, anatomy.spine_radius
    spine_r = np.sqrt(x**2 + (y - sy) ** 2)
    canal_r = np.sqrt(x**2 + (y - (sy + sr + 8.0)) ** 2)
    arch = ((canal_r > 8.0) & (canal_r < 14.0) & (y > sy + sr - 2)) | (
        (np.abs(x) < 4.0) & (y > sy + sr + 14) & (y < sy + sr + 36)
    )
    vertebra = spine_r < sr
    vol[vertebra] = HU_BONE_CORTEX
    vol[arch] = 420.0
    vol[canal_r < 8.0] = 15.0
    tis[vertebra | arch] = Tissue.BONE
    return vol, tis, spine_r < sr - 2.0


def _draw_slices(canvas: _Canvas, anatomy: ChestAnatomy, blood_hu: float | None = None) -> None:
    """Body and spine from one precomputed slice; sternum, heart and lungs slice by slice.

    With contrast (``blood_hu``) the heart's chambers fill with enhanced blood inside a wall and
    septum of myocardium, as on a CTA.
    """
    base_vol, base_tis, marrow = _base_slice(canvas, anatomy)
    x = canvas.xs[None, :]
    y = canvas.ys[:, None]
    sternum_y = -(anatomy.cavity_ay + anatomy.wall_mm * 0.5)
    sternum = ((x / 14.0) ** 2 + ((y - sternum_y) / 6.0) ** 2) < 1.0
    lung_hu = anatomy.lung_hu + anatomy.lung_gradient_hu * np.clip(
        (y + anatomy.cavity_ay) / (2 * anatomy.cavity_ay), 0, 1
    )
    lung_hu = np.broadcast_to(lung_hu, base_vol.shape)
    hx, hy, hz = anatomy.heart_center
    hax, hay, haz = anatomy.heart_axes
    z_top_sternum = max(lung.z_apex for lung in anatomy.lungs) - 30
    z_bottom_sternum = hz - haz
    lung_boxes = [_lung_box(canvas, lung) for lung in anatomy.lungs]
    for k, z in enumerate(canvas.zs):
        vol = canvas.vol[k]
        tis = canvas.tissue[k]
        vol[...] = base_vol
        tis[...] = base_tis
        # intervertebral discs every ~25 mm
        vol[marrow] = 85.0 if (z % 25.0) < 5.0 else HU_BONE_MARROW
        if z_bottom_sternum < z < z_top_sternum:
            vol[sternum] = 300.0
            tis[sternum] = Tissue.BONE
        # heart with a rim of epicardial fat
        dzh = ((z - hz) / haz) ** 2
        if dzh < 1.0:
            heart_q = ((x - hx) / hax) ** 2 + ((y - hy) / hay) ** 2 + dzh
            rim = ((x - hx) / (hax + 4)) ** 2 + ((y - hy) / (hay + 4)) ** 2 + dzh
            vol[(rim < 1.0) & (heart_q >= 1.0)] = anatomy.fat_hu
            vol[heart_q < 1.0] = HU_MYOCARDIUM
            if blood_hu is not None:
                w = MYOCARDIUM_MM
                dzc = ((z - hz) / (haz - w)) ** 2
                if dzc < 1.0:
                    qc = ((x - hx) / (hax - w)) ** 2 + ((y - hy) / (hay - w)) ** 2 + dzc
                    septum = np.abs((x - hx) - 0.6 * (y - hy)) < w / 2
                    vol[(qc < 1.0) & ~septum] = blood_hu
        for lung, (rows, cols) in zip(anatomy.lungs, lung_boxes, strict=True):
            if z > lung.z_apex or z < lung.z_dome - lung.recess_mm:
                continue
            inside = lung_membership(anatomy, lung, x[:, cols], y[rows, :], np.float32(z))
            vol[rows, cols][inside] = lung_hu[rows, cols][inside]
            tis[rows, cols][inside] = Tissue.LUNG
            for fissure in anatomy.fissures:
                if fissure.side == lung.side:
                    _draw_fissure(canvas, fissure, vol[rows, cols], inside, x[:, cols], y[rows], z)


def _draw_fissure(canvas: _Canvas, fissure, vol: np.ndarray, inside, x, y, z: float) -> None:
    """Raise lung voxels near a fissure's plane toward pleura, conserving the sheet's density:
    weight 1 - distance / soft (a tent one voxel wide) times FISSURE_MM / soft."""
    nx, ny, nz = fissure.normal
    px, py, pz = fissure.point
    dist = np.abs(nx * (x - px) + ny * (y - py) + nz * (z - pz))
    weight = np.clip(1.0 - dist / canvas.soft, 0.0, 1.0) * min(1.0, FISSURE_MM / canvas.soft)
    weight = weight * inside
    if fissure.bound_normal is not None:
        bx, by, bz = fissure.bound_normal
        qx, qy, qz = fissure.bound_point
        weight = weight * ((bx * (x - qx) + by * (y - qy) + bz * (z - qz)) < 0)
    if weight.any():
        vol += weight * np.maximum(HU_PLEURA - vol, 0.0)


def _lung_box(canvas: _Canvas, lung) -> tuple[slice, slice]:
    """Rows and columns that can hold this lung (its widest cross-section plus a margin)."""
    x_lo, x_hi = lung.cx - 1.15 * lung.ax, lung.cx + 1.15 * lung.ax
    y_lo, y_hi = lung.cy - 1.05 * lung.ay, lung.cy + 1.05 * lung.ay
    rows = slice(int(np.searchsorted(canvas.ys, y_lo)), int(np.searchsorted(canvas.ys, y_hi)))
    cols = slice(int(np.searchsorted(canvas.xs, x_lo)), int(np.searchsorted(canvas.xs, x_hi)))
    return rows, cols


def _nodule_fields(canvas: _Canvas, nodule: NoduleSpec):
    """Occupancy and target HU of one nodule body (spicules are drawn as tubes)."""
    center = np.asarray(nodule.center_xyz)
    reach = nodule_reach_mm(nodule, canvas.soft)
    box = canvas.box(center - reach, center + reach)
    if box is None:
        return None, None, None
    x, y, z = canvas.local_coords(box, center)
    occ, target = nodule_body(nodule, x, y, z, canvas.soft)
    return box, occ, target


def _draw_nodules(canvas: _Canvas, nodules: list[NoduleSpec], labels: np.ndarray) -> None:
    lung_like = [int(Tissue.LUNG), int(Tissue.VESSEL), int(Tissue.NODULE)]
    for nodule in nodules:
        box, occ, target = _nodule_fields(canvas, nodule)
        if box is not None:
            sub = canvas.vol[box]
            sub += occ * np.maximum(target - sub, 0.0)
            tis = canvas.tissue[box]
            mask = (occ >= 0.5) & np.isin(tis, lung_like)
            labels[box][mask] = nodule.index
            tis[mask] = Tissue.NODULE
        if nodule.spicules:
            spicules = TubeSet.from_rows(
                [(np.array(a), np.array(b), rad, 0.3, True) for a, b, rad in nodule.spicules]
            )
            _draw_tubes(canvas, spicules, nodule.solid_hu, Tissue.NODULE, mode=RAISE)
        # the centre voxel always carries the label, even for a 3 mm nodule on a 3 mm grid
        c = _nearest_voxel(canvas, np.asarray(nodule.center_xyz))
        if c is not None:
            labels[c] = nodule.index
            canvas.tissue[c] = Tissue.NODULE


def _nearest_voxel(canvas: _Canvas, xyz: np.ndarray) -> tuple[int, int, int] | None:
    idx = []
    for coords, value in ((canvas.zs, xyz[2]), (canvas.ys, xyz[1]), (canvas.xs, xyz[0])):
        i = int(np.rint((value - coords[0]) / (coords[1] - coords[0]))) if len(coords) > 1 else 0
        if not 0 <= i < len(coords):
            return None
        idx.append(i)
    return tuple(idx)


def _finish(
    canvas: _Canvas, rng: np.random.Generator, noise_hu: float, slab: int = 8
) -> np.ndarray:
    """Scanner noise then in-plane blur (point spread), slab by slab, into int16 HU."""
    spacing = float(np.mean(canvas.grid.spacing_xyz[:2]))
    sigma_px = max(PSF_SIGMA_MM / spacing, 0.35) if spacing < 1.3 else 0.0
    # a 1D Gaussian of sigma s keeps sqrt(1 / (2 sqrt(pi) s)) of white noise per axis
    keep = (1.0 / (2.0 * np.sqrt(np.pi) * sigma_px)) if sigma_px > 0.5 else 1.0
    white = noise_hu / keep * np.sqrt(12.0)  # uniform noise of this width has that std
    out = np.empty(canvas.vol.shape, dtype=np.int16)
    for k0 in range(0, canvas.vol.shape[0], slab):
        block = canvas.vol[k0 : k0 + slab]
        noisy = rng.random(block.shape, dtype=np.float32)
        noisy -= 0.5
        noisy *= white
        noisy += block
        if sigma_px > 0:
            ndimage.gaussian_filter1d(noisy, sigma_px, axis=2, truncate=2.5, output=noisy)
            ndimage.gaussian_filter1d(noisy, sigma_px, axis=1, truncate=2.5, output=noisy)
        np.rint(noisy, out=noisy)
        np.clip(noisy, HU_MIN, HU_MAX, out=noisy)
        out[k0 : k0 + slab] = noisy
    return out


def _to_stored(array: np.ndarray, grid: ScanGrid) -> np.ndarray:
    sx, sy, sz = grid.axis_signs_xyz
    view = array[:: sz if sz < 0 else 1, :: sy if sy < 0 else 1, :: sx if sx < 0 else 1]
    return np.ascontiguousarray(view)


def _average_slices(
    fine: _Canvas, labels: np.ndarray, grid: ScanGrid, nodules: list[NoduleSpec]
) -> tuple[_Canvas, np.ndarray]:
    """Each slice of ``grid`` as the mean of its sub-slices (rectangular profile).

    A voxel carries a nodule's label where at least half of its sub-voxels do (the same
    half-occupancy rule as on a thin grid), and every nodule's centre voxel carries it; the
    tissue map takes the sub-slice at the slice's centre.
    """
    k = sub_slices(grid)
    nz, ny, nx = grid.shape_irc
    vol = fine.vol.reshape(nz, k, ny, nx).mean(axis=1, dtype=np.float32)
    thick = _Canvas(grid, vol, np.ascontiguousarray(fine.tissue[k // 2 :: k]))
    out = np.zeros(grid.shape_irc, dtype=np.uint8)
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        z0, z1 = box[0].start // k, -(-box[0].stop // k)
        mine = labels[z0 * k : z1 * k, box[1], box[2]] == label
        share = mine.reshape(z1 - z0, k, *mine.shape[1:]).mean(axis=1)
        out[z0:z1, box[1], box[2]][share >= 0.5] = label
    for nodule in nodules:
        c = _nearest_voxel(thick, np.asarray(nodule.center_xyz))
        if c is not None:
            out[c] = nodule.index
            thick.tissue[c] = Tissue.NODULE
    return thick, out


def render_case(
    anatomy: ChestAnatomy,
    nodules: list[NoduleSpec],
    grid: ScanGrid,
    rng: np.random.Generator,
    noise_hu: float,
    blood_hu: float | None = None,
) -> RenderedCase:
    """Draw the chest, its tubes and nodules on ``grid``; returns stored-orientation arrays.

    ``blood_hu``: contrast-enhanced blood in the heart's chambers, the aorta's lumen and the lung
    vessels (None: no contrast). A grid with a slice profile is drawn on sub-slices, then averaged.
    """
    drawn = fine_grid(grid)
    canvas = _Canvas(drawn)
    labels = np.zeros(drawn.shape_irc, dtype=np.uint8)
    _draw_slices(canvas, anatomy, blood_hu)
    _draw_tubes(canvas, anatomy.aorta, 40.0, Tissue.SOFT_TISSUE, mode=SET)
    if blood_hu is not None:
        _draw_tubes(
            canvas, anatomy.aorta, blood_hu, Tissue.SOFT_TISSUE, mode=SET, grow=-AORTA_WALL_MM
        )
    _draw_tubes(canvas, anatomy.ribs, HU_BONE_CORTEX, Tissue.BONE, mode=SET)
    _draw_tubes(canvas, anatomy.ribs, HU_BONE_MARROW, Tissue.BONE, mode=SET, grow=-1.4)
    lung_only = (Tissue.LUNG, Tissue.VESSEL)
    vessel_hu = anatomy.vessel_hu if blood_hu is None else blood_hu
    _draw_tubes(canvas, anatomy.vessels, vessel_hu, Tissue.VESSEL, mode=RAISE, only_in=lung_only)
    _draw_tubes(
        canvas, anatomy.atelectasis, HU_ATELECTASIS, Tissue.LUNG, mode=RAISE, only_in=lung_only
    )
    _draw_tubes(canvas, anatomy.airways, HU_AIRWAY_WALL, Tissue.AIRWAY, mode=RAISE, grow=1.2)
    _draw_tubes(canvas, anatomy.airways, HU_AIR, Tissue.AIRWAY, mode=SET)
    _draw_nodules(canvas, nodules, labels)
    if drawn is not grid:
        canvas, labels = _average_slices(canvas, labels, grid, nodules)
    hu = _finish(canvas, rng, noise_hu)
    return RenderedCase(
        hu=_to_stored(hu, grid),
        nodule_labels=_to_stored(labels, grid),
        tissue=_to_stored(canvas.tissue, grid),
        grid=grid,
    )
