"""The one bridge between :class:`lungcad.ct.CT` / :class:`~lungcad.ct.Geometry` and SimpleITK.

Every SimpleITK image the engine builds from an array gets its origin, spacing and direction
from :func:`on_grid`, so no module can forget the direction matrix (a flipped or oblique scan
would then land in the wrong place).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import SimpleITK as sitk

from lungcad.budget import check_spacing
from lungcad.ct import CT, Geometry
from lungcad.errors import CTFormatError
from lungcad.io.header import check_shape
from lungcad.io.hu_rules import check_hu_values, to_int16_hu

IN_MEMORY = "<in-memory image>"
SERIES_UID_KEY = "SeriesInstanceUID"  # written into NRRD / MetaIO headers by write_ct


def on_grid(
    image: sitk.Image, geometry: Geometry, *, origin_xyz: Sequence[float] | None = None
) -> sitk.Image:
    """Give ``image`` the grid of ``geometry`` (its origin, or ``origin_xyz`` for a sub-box).

    Returns the same image, so that ``on_grid(sitk.GetImageFromArray(a), g)`` reads as one step.
    """
    origin = geometry.origin_xyz if origin_xyz is None else tuple(float(v) for v in origin_xyz)
    image.SetOrigin(origin)
    image.SetSpacing(geometry.spacing_xyz)
    image.SetDirection(geometry.direction)
    return image


def geometry_of(image: sitk.Image | sitk.ImageFileReader) -> Geometry:
    """The grid of an image, or of a file whose header a reader has read (no voxels needed).

    ValueError when the direction is not a rotation or the spacing not positive.
    """
    return Geometry.from_arrays(
        image.GetOrigin(), image.GetSpacing(), image.GetDirection(), image.GetSize()[::-1]
    )


def ct_to_sitk(ct: CT) -> sitk.Image:
    """The CT as an int16 SimpleITK image with the same origin, spacing and direction."""
    image = on_grid(sitk.GetImageFromArray(ct.hu), ct.geometry)
    if ct.series_uid:
        image.SetMetaData(SERIES_UID_KEY, ct.series_uid)
    return image


def ct_from_sitk(
    image: sitk.Image,
    source: str | Path | None = None,
    series_uid: str | None = None,
    *,
    metadata: dict[str, str] | None = None,
) -> CT:
    """Check that ``image`` can be a CT in Hounsfield units and convert it to :class:`CT`.

    The checks are listed in :mod:`lungcad.io`'s docstring; errors name ``source`` (or
    ``<in-memory image>``). ``source`` is stored as a :class:`~pathlib.Path` when given.
    """
    where: str | Path = source if source is not None else IN_MEMORY
    check_shape(
        where,
        image.GetDimension(),
        image.GetSize(),
        image.GetNumberOfComponentsPerPixel(),
        image.GetPixelID(),
    )
    check_spacing(where, image.GetSpacing())
    arr = sitk.GetArrayViewFromImage(image)
    check_hu_values(arr, where)
    hu = to_int16_hu(arr, where)
    try:
        geometry = geometry_of(image)
    except ValueError as exc:
        raise CTFormatError(where, f"unusable geometry: {exc}") from exc
    return CT(
        hu=hu,
        geometry=geometry,
        series_uid=series_uid or None,
        source=Path(source) if source is not None else None,
        metadata=dict(metadata or {}),
    )
