"""The training range a model card states: what scans the models saw, measured on the data.

Detection compares each input with it (:mod:`lungcad.pipeline.input_checks`), so the numbers come
from the data, not from a wish: pixel size and slice spacing from the series' MetaIO headers, the
HU calibration and contrast of phantom sets from what the phantom generator drew for each series.
MetaIO headers carry no slice thickness; the phantoms draw each slice as a sample of its own
plane (no thicker slice profile), so thickness is taken equal to the slice spacing there.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from lungcad.atomic import write_text_atomic
from lungcad.luna16.candidates import find_series
from lungcad.models import TrainingRange, read_card
from lungcad.models.weights import to_json, weights_paths
from lungcad.phantom import PhantomSize, make_spec, series_uid_for
from lungcad.phantom.render import HU_AIR
from lungcad.phantom.spec import RealismVersion

log = logging.getLogger(__name__)

#: LUNA16 (LIDC-IDRI) holds both contrast-enhanced and plain scans from calibrated scanners; the
#: headers say nothing about either, so these are stated, not measured.
LUNA16_CONTRAST = "both"
STANDARD_HU = {"hu_air": (-1000.0, -1000.0), "hu_fat": (-100.0, -100.0), "hu_blood": (40.0, 40.0)}


def _span(values: Iterable[float]) -> tuple[float, float]:
    values = list(values)
    return (min(values), max(values))


def _header_spacings(paths: Sequence[Path]) -> list[tuple[float, float, float]]:
    """(x, y, z) spacing of each series from its header alone (no voxels read)."""
    spacings = []
    reader = sitk.ImageFileReader()
    for path in paths:
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        spacings.append(tuple(float(v) for v in reader.GetSpacing()))
    return spacings


def _geometry_part(spacings: Sequence[tuple[float, ...]], thickness: Sequence[float]) -> dict:
    return {
        "pixel_mm": _span(v for s in spacings for v in s[:2]),
        "slice_spacing_mm": _span(s[2] for s in spacings),
        "slice_thickness_mm": _span(thickness),
        "series": len(spacings),
    }


def _phantom_hu(
    seed: int, indices: Iterable[int], version: RealismVersion = RealismVersion.V1
) -> tuple[dict[str, Any], list, str]:
    """HU calibration ranges the generator drew for these cases, their specs, and whether they
    are contrast-enhanced ("none", "contrast-enhanced" or "both")."""
    specs = [make_spec(seed, i, version) for i in indices]
    anatomy = [s.anatomy for s in specs]
    # blood pool: plain cases draw heart and mediastinum at muscle HU and the lung vessels apart;
    # contrast-enhanced ones (version 2) draw all of it at their blood-pool HU
    blood = [a.muscle_hu for a in anatomy] + [a.vessel_hu for a in anatomy]
    blood += [s.blood_hu for s in specs if getattr(s, "blood_hu", None) is not None]
    hu = {
        "hu_air": (HU_AIR, HU_AIR),
        "hu_fat": _span(a.fat_hu for a in anatomy),
        "hu_blood": _span(blood),
    }
    enhanced = [getattr(s, "blood_hu", None) is not None for s in specs]
    contrast = (
        "both"
        if any(enhanced) and not all(enhanced)
        else ("contrast-enhanced" if all(enhanced) else "none")
    )
    return hu, specs, contrast


def _thickness(grid: Any) -> float:
    """A grid's slice thickness: its own when the generator draws one, else the spacing."""
    return float(getattr(grid, "slice_thickness_mm", grid.spacing_xyz[2]))


def phantom_range(seed: int, cases: int, size: PhantomSize | str) -> TrainingRange:
    """The range of the phantom set (seed, cases, size) from the generator's draws alone.

    Exact without rendering a voxel: the grid a case is written on is drawn before its pixels,
    and the headers store that grid's spacing.
    """
    size = PhantomSize(size)
    hu, specs, contrast = _phantom_hu(seed, range(cases))
    grids = [s.grid(size) for s in specs]
    return TrainingRange(
        **_geometry_part([g.spacing_xyz for g in grids], [_thickness(g) for g in grids]),
        contrast=contrast,
        **hu,
        source=f"lungcad phantom generator draws (seed {seed}, {cases} {size.value} cases)",
    )


def folder_range(data_dir: str | Path) -> TrainingRange:
    """The range of a LUNA16-layout folder: spacing from every series' header.

    A phantom set (``phantom.json`` beside it) adds its HU calibration from the generator's
    draws for the series present; LUNA16 gets :data:`STANDARD_HU` and :data:`LUNA16_CONTRAST`.
    """
    data_dir = Path(data_dir)
    series = find_series(data_dir)
    if not series:
        raise ValueError(f"{data_dir}: no subset*/*.mhd series to take a training range from")
    uids = sorted(series)
    spacings = _header_spacings([series[u] for u in uids])
    manifest = data_dir / "phantom.json"
    if not manifest.is_file():
        return TrainingRange(
            **_geometry_part(spacings, [s[2] for s in spacings]),
            contrast=LUNA16_CONTRAST,
            **STANDARD_HU,
            source=f"MetaIO headers of {len(uids)} series in {data_dir} (slice thickness taken "
            "as the spacing; contrast and HU calibration stated for LUNA16, not measured)",
        )
    info = json.loads(manifest.read_text(encoding="utf-8"))
    seed, cases = int(info["seed"]), int(info["cases"])
    version = RealismVersion(int(info.get("realism_version", 1)))
    index_of = {series_uid_for(seed, i, version): i for i in range(cases)}
    foreign = [u for u in uids if u not in index_of]
    if foreign:
        raise ValueError(f"{data_dir}: series {foreign[0]} is not a case of phantom seed {seed}")
    indices = [index_of[u] for u in uids]
    hu, specs, contrast = _phantom_hu(seed, indices, version)
    size = PhantomSize(info.get("size", "full"))
    thickness = [_thickness(spec.grid(size)) for spec in specs]
    return TrainingRange(
        **_geometry_part(spacings, thickness),
        contrast=contrast,
        **hu,
        source=f"MetaIO headers of {len(uids)} series in {data_dir}; HU and contrast from the "
        f"phantom generator's draws (seed {seed}, realism version {int(version)})",
    )


def range_for_data(data: dict[str, Any]) -> TrainingRange | None:
    """The range of a checkpoint's ``data`` record: from its folder, else from the phantom's
    seed when the folder is gone (exact, see :func:`phantom_range`), else None."""
    data_dir = data.get("data_dir")
    if data_dir and Path(data_dir).is_dir():
        try:
            return folder_range(data_dir)
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            log.warning("no training range from %s: %s", data_dir, exc)
            return None
    phantom = data.get("phantom")
    if phantom and {"seed", "cases", "size"} <= set(phantom):
        log.info("%s is gone; training range from the phantom generator's draws", data_dir)
        return phantom_range(int(phantom["seed"]), int(phantom["cases"]), phantom["size"])
    log.warning("no training range: the training data %s is not here", data_dir or "(unknown)")
    return None


def write_range(card: str | Path, found: TrainingRange) -> Path:
    """Put ``found`` into an existing model card, every other field as it was.

    The card's SHA-256 covers the tensors file only, so the weights still load.
    """
    _, card_path = weights_paths(card)
    updated = dataclasses.replace(read_card(card_path), training_range=found)
    return write_text_atomic(card_path, to_json(updated))
