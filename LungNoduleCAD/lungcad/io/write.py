"""Write CTs and label maps atomically, never replacing a file unless asked.

The temp names and the final rename come from :mod:`lungcad.atomic`, so a crash never leaves a
half-written file under the final name. MetaIO's .mhd/.raw pair needs two renames and a header
pointed at the final .raw name, which is why this is more than one ``atomic.replacing``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungcad.atomic import temp_sibling, write_bytes_atomic
from lungcad.ct import CT, Geometry
from lungcad.errors import CTWriteError
from lungcad.io.sitk_bridge import ct_to_sitk, on_grid

log = logging.getLogger(__name__)

_WRITE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mhd", ".mha")
_COMPRESSED_EXTENSIONS = (".nii.gz", ".nrrd")


def _split_extension(path: Path) -> tuple[str, str]:
    """(name without extension, extension) for the formats write_ct knows; ext '' if unknown."""
    lower = path.name.lower()
    for ext in _WRITE_EXTENSIONS:
        if lower.endswith(ext) and len(lower) > len(ext):
            return path.name[: -len(ext)], path.name[-len(ext) :]
    return path.name, ""


def write_ct(ct: CT, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``ct`` with its geometry to .nrrd, .nii, .nii.gz, .mhd (+ .raw) or .mha.

    The format follows the extension; .nrrd and .nii.gz are compressed, .mhd/.raw and .mha are
    not, so that LUNA16-style readers can memory-map the data. An existing target (for .mhd also
    its .raw) is never replaced unless ``overwrite`` is True. The parent folder is created.

    Robustness: the image is written under a hidden temporary name in the target folder and
    renamed into place, so a crash never leaves a half-written file under the final name. For
    .mhd the .mhd/.raw pair is written to a temporary stem; the .raw is renamed first, then the
    header, pointed at the final .raw name, is written atomically in place.
    Returns the path written (the .mhd for MetaIO pairs).
    """
    path = write_image(ct_to_sitk(ct), path, overwrite)
    log.info("wrote %s (%s)", path, ct.describe())
    return path


def write_label_map(
    labels: np.ndarray, geometry: Geometry, path: str | Path, overwrite: bool = False
) -> Path:
    """Write an integer label map (e.g. ground-truth nodules) on a CT's grid, like write_ct."""
    if labels.shape != tuple(geometry.shape_irc):
        raise CTWriteError(f"{path}: label map shape {labels.shape} != grid {geometry.shape_irc}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise CTWriteError(f"{path}: a label map holds integers, got {labels.dtype}")
    path = write_image(on_grid(sitk.GetImageFromArray(labels), geometry), path, overwrite)
    log.info("wrote label map %s", path)
    return path


def write_image(image: sitk.Image, path: str | Path, overwrite: bool) -> Path:
    """Write atomically (temporary name, then rename) without replacing what exists."""
    path = Path(path)
    stem, ext = _split_extension(path)
    if not ext:
        raise CTWriteError(f"{path}: unknown extension; write .nrrd, .nii, .nii.gz, .mhd or .mha")
    ext_l = ext.lower()
    targets = [path]
    if ext_l == ".mhd":
        targets.append(path.with_name(stem + ".raw"))
    _refuse_existing(targets, overwrite)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CTWriteError(f"{path}: cannot create the folder {path.parent}: {exc}") from exc

    tmp_stem = temp_sibling(path.with_name(stem)).name
    tmp_path = path.with_name(tmp_stem + ext)
    tmp_raw = path.with_name(tmp_stem + ".raw")
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(tmp_path))
    writer.SetUseCompression(ext_l in _COMPRESSED_EXTENSIONS)
    try:
        try:
            writer.Execute(image)
        except RuntimeError as exc:
            log.debug("SimpleITK could not write %s: %s", tmp_path, exc)
            raise CTWriteError(f"{path}: SimpleITK could not write it ({exc!s:.200})") from exc
        _refuse_existing(targets, overwrite)  # someone may have created it meanwhile
        if ext_l == ".mhd":
            new_header, n = re.subn(
                rb"(?m)^ElementDataFile\s*=.*$",
                b"ElementDataFile = " + targets[1].name.encode(),
                tmp_path.read_bytes(),
            )
            if n != 1:
                raise CTWriteError(f"{path}: unexpected MetaIO header written by SimpleITK")
            os.replace(tmp_raw, targets[1])
            write_bytes_atomic(path, new_header)
        else:
            os.replace(tmp_path, path)
    except OSError as exc:
        if isinstance(exc, CTWriteError):
            raise
        raise CTWriteError(f"{path}: could not write it: {exc}") from exc
    finally:
        for leftover in (tmp_path, tmp_raw):
            leftover.unlink(missing_ok=True)
    return path


def _refuse_existing(targets: list[Path], overwrite: bool) -> None:
    if overwrite:
        return
    for target in targets:
        if target.exists():
            raise CTWriteError(f"{target}: already exists; pass overwrite=True to replace it")
