"""A thick-slice copy of a LUNA16-layout set: every series averaged over slabs of a given thickness.

Why: the cascade must be judged on thick-slice scans (5 mm is common in clinical chest CT) that it
never trained on. Averaging a thin-slice set over slabs (:func:`lungcad.realism.average_slabs`, a
boxcar slice-sensitivity profile) gives such a set with the same nodules, so its figures compare
directly with the thin-slice set's. The truth files are world coordinates and carry over as they
are; label maps (``<uid>_nodules.nrrd``) are resampled onto the thick grid by nearest neighbour.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk
from tqdm import tqdm

from lungcad.atomic import write_text_atomic
from lungcad.ct import CT
from lungcad.ctio import ct_to_sitk, read_ct, write_ct, write_label_map
from lungcad.errors import LungCADError
from lungcad.luna16.candidates import find_series
from lungcad.realism import average_slabs

log = logging.getLogger(__name__)

LABEL_SUFFIX = "_nodules.nrrd"
MANIFEST = "phantom.json"


class ThickenError(LungCADError, ValueError):
    """The source or target of a thick-slice copy is unusable; the message says why."""


@dataclass(frozen=True)
class ThickenedSeries:
    """One series written: where, and its slice count before and after."""

    uid: str
    path: Path
    slices_in: int
    slices_out: int


def thicken_dataset(
    src: str | Path,
    dst: str | Path,
    slab_mm: float,
    overwrite: bool = False,
    progress: bool = True,
) -> list[ThickenedSeries]:
    """Write ``dst``: ``src`` with every ``subset*/<uid>.mhd`` averaged over ``slab_mm`` slabs.

    Top-level truth files (``*.csv``) are copied; ``phantom.json`` is copied with a ``derived``
    note. A series whose slices are already at least ``slab_mm`` thick is refused, as is a target
    inside the source or one that already holds series (unless ``overwrite``).
    """
    src, dst = Path(src), Path(dst)
    if slab_mm <= 0:
        raise ThickenError(f"slab thickness must be positive, got {slab_mm} mm")
    if not src.is_dir():
        raise ThickenError(f"{src} is not a folder")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise ThickenError(f"{dst} lies inside the source set {src}; choose another folder")
    series = find_series(src)
    if not series:
        raise ThickenError(f"{src} holds no subset*/<seriesuid>.mhd files (LUNA16 layout)")
    existing = sorted(dst.glob("subset*/*.mhd"))
    if existing and not overwrite:
        raise ThickenError(
            f"{dst} already holds series ({existing[0].name}, ...); "
            "choose another folder or pass --overwrite"
        )
    written: list[ThickenedSeries] = []
    for uid, path in tqdm(sorted(series.items()), desc="thicken", disable=not progress):
        ct = read_ct(path)
        dz = ct.geometry.spacing_irc[0]
        if dz >= slab_mm:
            raise ThickenError(
                f"{path.name}: its slices are {dz:g} mm apart, "
                f"not thinner than {slab_mm:g} mm slabs"
            )
        thick = average_slabs(ct, slab_mm)
        target = dst / path.parent.name / path.name
        write_ct(thick, target, overwrite=overwrite)
        labels = path.with_name(uid + LABEL_SUFFIX)
        if labels.exists():
            _resample_labels(labels, thick, target.with_name(uid + LABEL_SUFFIX), overwrite)
        written.append(ThickenedSeries(uid, target, ct.shape[0], thick.shape[0]))
    for csv_path in sorted(src.glob("*.csv")):
        shutil.copyfile(csv_path, dst / csv_path.name)
    manifest = src / MANIFEST
    if manifest.exists():
        data = json.loads(manifest.read_text(encoding="utf-8"))
        data["derived"] = f"every series of {src} averaged over {slab_mm:g} mm slabs"
        write_text_atomic(dst / MANIFEST, json.dumps(data, indent=2) + "\n")
    log.info("wrote %d series averaged over %g mm slabs to %s", len(written), slab_mm, dst)
    return written


def _resample_labels(path: Path, thick: CT, target: Path, overwrite: bool) -> None:
    """Nearest-neighbour resampling of a label map onto the thick series' grid."""
    labels = sitk.ReadImage(str(path))
    resampled = sitk.Resample(labels, ct_to_sitk(thick), sitk.Transform(), sitk.sitkNearestNeighbor)
    write_label_map(sitk.GetArrayFromImage(resampled), thick.geometry, target, overwrite)
