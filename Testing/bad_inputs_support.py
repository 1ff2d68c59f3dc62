"""The bad-input corpus of issue 14, built from code, shared by the tests that feed it to readers,
to ``lungcad info`` and to whole batches (``lungcad detect``, the Slicer batch script).

:func:`build_corpus` writes every hostile or careless file next to one good CT; each
:class:`Case` says which typed error ``read_ct`` raises for it and what its message holds.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungcad.ct import CT, Geometry
from lungcad.ctio import write_ct
from lungcad.errors import (
    CTFileNotFoundError,
    CTFormatError,
    CTReadError,
    DicomGeometryError,
    NotCTError,
)
from lungcad.geometry import voxel_to_world, world_to_voxel_index

#: The series UID of :func:`good_crop_ct`.
GOOD_UID = "1.2.826.0.1.3680043.2.1125.8.99"
HUGE_DIMS = (2048, 2048, 512)  # 4 GiB of int16 declared by a few bytes
SERIES_UID = "1.2.826.0.1.3680043.2.1125.1.4242"
POSIX = os.name == "posix"


@dataclass(frozen=True)
class Case:
    """One bad input: what ``read_ct`` raises for it and a regex its message matches."""

    name: str
    path: Path
    error: type[Exception]
    match: str | None


def hu_block(shape: tuple[int, int, int] = (4, 8, 8)) -> np.ndarray:
    """Air around a soft-tissue block: HU a CT could hold."""
    hu = np.full(shape, -1000, dtype=np.int16)
    hu[:, 2:-2, 2:-2] = 40
    return hu


def image_of(arr: np.ndarray, spacing: tuple[float, ...] | None = None, **kw: bool) -> sitk.Image:
    image = sitk.GetImageFromArray(arr, **kw)
    if spacing is not None:
        image.SetSpacing(spacing)
    return image


def metaio_header(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 8 8 4\nElementType = MET_SHORT\n" + body
    )
    return path


def write_series(
    folder: Path,
    positions_z: list[float],
    *,
    modality: str = "CT",
    shift_y_per_slice: float = 0.0,
    names: str = "{k:03d}.dcm",
) -> Path:
    """A DICOM series with the given slice positions (mm along z), HU stored with intercept."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetImageIO("GDCMImageIO")  # whatever the names end with
    sop_class = "1.2.840.10008.5.1.4.1.1.2" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4"
    for k, z in enumerate(positions_z):
        image = sitk.GetImageFromArray(hu_block((1, 8, 8))[0])  # the writer applies the intercept
        image.SetSpacing((0.7, 0.7))
        tags = {
            "0008|0060": modality,
            "0008|0016": sop_class,
            "0008|0018": f"{SERIES_UID}.{k + 1}",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.77",
            "0020|000e": SERIES_UID,
            "0020|0013": str(k + 1),
            "0020|0032": f"-10.0\\{-20.0 + k * shift_y_per_slice:.4f}\\{z:.4f}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0028|1052": "-1024",
            "0028|1053": "1",
        }
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / names.format(k=k)))
        writer.Execute(image)
    return folder


def strip_preambles(folder: Path) -> Path:
    """Make ``folder``'s DICOM files raw, as some archives keep them: the 128-byte preamble and
    the 'DICM' marker removed (the file meta group stays)."""
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        assert data[128:132] == b"DICM", path
        path.write_bytes(data[132:])
    return folder


def build_corpus(root: Path) -> tuple[list[Case], Path]:
    """Every bad file of issue 14 and the classics, plus one good CT (returned second)."""
    bad = root / "bad"
    bad.mkdir()
    cases: list[Case] = []

    def add(name: str, path: Path, error: type[Exception], match: str | None) -> None:
        cases.append(Case(name, path, error, match))

    grid = Geometry.from_arrays((0, 0, 0), (0.7, 0.7, 2.5), np.eye(3), (6, 16, 16))
    good = write_ct(CT(hu_block((6, 16, 16)), grid), root / "good" / "good.nrrd")

    # --- the classics
    (bad / "empty.nrrd").write_bytes(b"")
    add("empty", bad / "empty.nrrd", CTFormatError, None)
    (bad / "random.nii.gz").write_bytes(np.random.default_rng(0).bytes(4096))
    add("random bytes", bad / "random.nii.gz", CTFormatError, None)
    hu_block().tofile(bad / "short.raw")
    (bad / "short.raw").write_bytes((bad / "short.raw").read_bytes()[:100])
    add(
        "truncated raw",
        metaio_header(bad, "truncated.mhd", "ElementDataFile = short.raw\n"),
        CTFormatError,
        "truncated",
    )
    sitk.WriteImage(image_of(hu_block()[0]), str(bad / "flat.nrrd"))
    add("2D", bad / "flat.nrrd", NotCTError, "2D image")
    sitk.WriteImage(sitk.JoinSeries([image_of(hu_block())] * 2), str(bad / "four_d.nii"))
    add("4D", bad / "four_d.nii", NotCTError, "4D image")
    rgb = np.zeros((4, 8, 8, 3), np.uint8)
    sitk.WriteImage(image_of(rgb, isVector=True), str(bad / "rgb.nrrd"))
    add("RGB", bad / "rgb.nrrd", NotCTError, "3 components")
    nan = hu_block().astype(np.float32)
    nan[1, 2, 3] = np.nan
    sitk.WriteImage(image_of(nan), str(bad / "nan.nrrd"))
    add("NaN", bad / "nan.nrrd", NotCTError, "NaN")
    hu_block().tofile(bad / "d.raw")
    add(
        "zero spacing",
        metaio_header(
            bad, "zero_spacing.mhd", "ElementSpacing = 0 0.7 2.5\nElementDataFile = d.raw\n"
        ),
        NotCTError,
        "spacing 0 x 0.7 x 2.5 mm lies outside",
    )
    add(
        "non-orthogonal direction",
        metaio_header(
            bad, "skewed.mhd", "TransformMatrix = 1 0 0 0.5 1 0 0 0 1\nElementDataFile = d.raw\n"
        ),
        CTFormatError,
        "not orthonormal",
    )
    if POSIX:
        (bad / "loop_a.nrrd").symlink_to("loop_b.nrrd")
        (bad / "loop_b.nrrd").symlink_to("loop_a.nrrd")
        add("symlink loop", bad / "loop_a.nrrd", CTFileNotFoundError, "loops")
        (bad / "zero.nrrd").symlink_to("/dev/zero")
        add("link to /dev/zero", bad / "zero.nrrd", CTFormatError, "not a regular file")
        os.mkfifo(bad / "fifo.nii")
        add("FIFO", bad / "fifo.nii", CTFormatError, "not a regular file")

    # --- memory from a few bytes: headers declaring 2048x2048x512
    nx, ny, nz = HUGE_DIMS
    header = (
        f"NRRD0004\ntype: short\ndimension: 3\nsizes: {nx} {ny} {nz}\nencoding: gzip\n"
        "endian: little\nspacings: 0.7 0.7 1\n\n"
    ).encode()
    (bad / "huge.nrrd").write_bytes(header + gzip.compress(b"\0" * 64))
    add("huge NRRD", bad / "huge.nrrd", CTReadError, None)
    nifti = nifti_header(HUGE_DIMS)
    (bad / "huge.nii.gz").write_bytes(gzip.compress(nifti))
    add("huge NIfTI", bad / "huge.nii.gz", CTReadError, None)

    # --- silently wrong before: payloads shorter than declared
    full = hu_block((96, 16, 16))
    sitk.WriteImage(image_of(full, (0.7, 0.7, 2.5)), str(root / "whole.nii"))
    raw = (root / "whole.nii").read_bytes()
    (root / "whole.nii").unlink()
    (bad / "third.nii.gz").write_bytes(gzip.compress(raw[: 352 + full[:32].nbytes]))
    add("NIfTI with a third of its voxels", bad / "third.nii.gz", CTFormatError, "incomplete")
    (bad / "packed.zraw").write_bytes(zlib.compress(full[:32].tobytes()))
    (bad / "nosize.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 16 16 96\nElementType = MET_SHORT\n"
        "CompressedData = True\nElementDataFile = packed.zraw\n"
    )
    add("compressed .mhd without size", bad / "nosize.mhd", CTFormatError, "CompressedDataSize")
    size = len((bad / "packed.zraw").read_bytes())
    (bad / "sized.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 16 16 96\nElementType = MET_SHORT\n"
        f"CompressedData = True\nCompressedDataSize = {size}\nElementDataFile = packed.zraw\n"
    )
    add("compressed .mhd, a third inflated", bad / "sized.mhd", CTFormatError, "incomplete")

    # --- data files elsewhere: refused without a word about the other file
    secret = root / "secret"
    secret.mkdir()
    (secret / "secret.raw").write_bytes(b"s" * 12345)
    add(
        "ElementDataFile ../",
        metaio_header(bad, "traversal.mhd", "ElementDataFile = ../secret/secret.raw\n"),
        CTFormatError,
        "not a file name in the header's folder",
    )
    add(
        "ElementDataFile absolute",
        metaio_header(bad, "absolute.mhd", f"ElementDataFile = {secret / 'secret.raw'}\n"),
        CTFormatError,
        "not a file name in the header's folder",
    )
    (bad / "detached.nhdr").write_text(
        "NRRD0004\ntype: short\ndimension: 3\nsizes: 8 8 4\nencoding: raw\nendian: little\n"
        "data file: ../secret/secret.raw\n\n"
    )
    add("NRRD data file ../", bad / "detached.nhdr", CTFormatError, "not a file name")

    # --- mislabelled spacing: 32x32x4 voxels of 40 mm
    hu_block((4, 32, 32)).tofile(bad / "coarse.raw")
    (bad / "coarse.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 32 32 4\nElementType = MET_SHORT\n"
        "ElementSpacing = 40 40 40\nElementDataFile = coarse.raw\n"
    )
    add("40 mm voxels", bad / "coarse.mhd", NotCTError, "40 x 40 x 40 mm lies outside")

    # --- DICOM series that are not one honest CT stack
    add("MR series", write_series(bad / "mr", [0, 2, 4], modality="MR"), NotCTError, "'MR'")
    add(
        "missing slice",
        write_series(bad / "gap", [0, 2.92, 5.84, 11.68, 14.6]),
        DicomGeometryError,
        r"5\.84 mm between 5\.84 and 11\.68",
    )
    add(
        "duplicated slice",
        write_series(bad / "dupe", [0, 2, 2, 4]),
        DicomGeometryError,
        "duplicated slice position",
    )
    add(
        "sheared stack",
        write_series(bad / "tilt", [0, 2, 4, 6], shift_y_per_slice=1.0),
        DicomGeometryError,
        "gantry tilt",
    )
    return cases, good


def nifti_header(size_xyz: tuple[int, int, int]) -> bytes:
    """A 352-byte NIfTI-1 header for int16 voxels of ``size_xyz`` (no voxels)."""
    header = bytearray(352)
    header[0:4] = np.int32(348).tobytes()
    dims = np.array([3, *size_xyz, 1, 1, 1, 1], dtype="<i2")
    header[40:56] = dims.tobytes()
    header[70:72] = np.int16(4).tobytes()  # datatype: int16
    header[72:74] = np.int16(16).tobytes()  # bitpix
    header[76:108] = np.array([1, 0.7, 0.7, 1, 1, 1, 1, 1], dtype="<f4").tobytes()
    header[108:112] = np.float32(352).tobytes()  # vox_offset
    header[344:348] = b"n+1\0"
    return bytes(header)


def file_tree(root: Path) -> set[tuple[str, int]]:
    """Every path under ``root`` with its size (links not followed), to see nothing changed."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            out.add((str(p), p.lstat().st_size if not p.is_dir() else 0))
    return out


def good_crop_ct(path: Path) -> Path:
    """12 x 28 x 28 voxels of a small phantom around its largest nodule, written to ``path``:
    a real chest CT for the bundled weights that runs in seconds on a CPU."""
    from lungcad.phantom import PhantomSize, make_case

    case = make_case(2023, 0, PhantomSize.SMALL)
    nodule = max(case.spec.nodules, key=lambda n: n.diameter_mm)
    i, r, c = world_to_voxel_index(nodule.center_xyz, case.ct.geometry)
    lo = (max(i - 6, 0), max(r - 14, 0), max(c - 14, 0))
    hu = case.ct.hu[lo[0] : lo[0] + 12, lo[1] : lo[1] + 28, lo[2] : lo[2] + 28].copy()
    g = case.ct.geometry
    geometry = Geometry.from_arrays(voxel_to_world(lo, g), g.spacing_xyz, g.direction, hu.shape)
    return write_ct(CT(hu=hu, geometry=geometry, series_uid=GOOD_UID), path)
