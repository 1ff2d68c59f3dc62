"""DICOM Segmentation (binary, highdicom): one segment per finding, on the source slices.

Each finding is a segment labelled as in nodules.seg.nrrd (``Nodule 3 - malignancy 0.82``) with
the lung-nodule terminology Slicer's DICOM master list gives it there (category SCT 49755003
"Morphologically Altered Structure", type SCT 27925004 "Nodule", anatomic region SCT 39607008
"Lung"), its malignancy colour, a tracking ID ``Nodule <n>`` and a tracking UID the SR reuses,
and the algorithm (name, version, model SHA-256s). The SEG is a new series in the source's study,
on the source's Frame of Reference; its frames are the source slices a finding touches (frames
without any finding are left out), each referencing the slice it was cut from.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.sr.coding import Code

from lungcad.atomic import write_bytes_atomic
from lungcad.dicom_out.algorithm import MANUFACTURER, Algorithm
from lungcad.dicom_out.identity import DicomIdentity
from lungcad.pipeline.findings import Finding, malignancy_color
from lungcad.reports.common import ResultLike, check_writable
from lungcad.reports.segmentation import NODULE_TERMINOLOGY, segment_layers

__all__ = ["SEG_SERIES_NUMBER", "SegmentationWritten", "seg_dataset", "write_seg"]

log = logging.getLogger(__name__)

SEG_SERIES_NUMBER = 9701


def _terminology_code(position: int) -> Code:
    """One code of the .seg.nrrd's terminology entry (0 context, 1 category, 2 type, 5 region)."""
    scheme, value, meaning = NODULE_TERMINOLOGY.split("~")[position].split("^")
    return Code(value, scheme, meaning)


NODULE_CATEGORY = _terminology_code(1)  # SCT 49755003 Morphologically Altered Structure
NODULE_TYPE = _terminology_code(2)  # SCT 27925004 Nodule
LUNG = _terminology_code(5)  # SCT 39607008 Lung


@dataclass(frozen=True)
class SegmentationWritten:
    """What the SR needs to reference a written SEG: its UIDs and finding -> segment number."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    segment_numbers: dict[int, int]  # finding number -> segment number
    tracking_uids: dict[int, str]  # finding number -> tracking UID


def tracking_id(finding: Finding) -> str:
    return f"Nodule {finding.number}"


def _description(
    segment_number: int, finding: Finding, algorithm: Algorithm, tracking_uid: str
) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=segment_number,
        segment_label=finding.label(),
        segmented_property_category=NODULE_CATEGORY,
        segmented_property_type=NODULE_TYPE,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm.segmentation_identification(),
        tracking_uid=tracking_uid,
        tracking_id=tracking_id(finding),
        anatomic_regions=[LUNG],
        display_color=hd.color.CIELabColor.from_rgb(
            *(round(255 * c) for c in malignancy_color(finding.p_malignant))
        ),
    )


def _frames(
    findings: tuple[Finding, ...], shape_irc: tuple[int, int, int]
) -> tuple[list[int], np.ndarray]:
    """(CT indices that hold a finding, their masks on those planes).

    Masks that do not overlap (the usual case: findings are separate components) go into one
    label map (planes, rows, cols) holding each voxel's segment number, which highdicom splits
    plane by plane; overlapping ones need a (planes, rows, cols, segments) stack, one byte per
    voxel and segment.
    """
    planes = sorted({k for f in findings for k in range(*f.mask.slices[0].indices(shape_irc[0]))})
    where = {k: n for n, k in enumerate(planes)}
    overlap = segment_layers(findings, shape_irc) != [0] * len(findings)
    dtype = np.uint8 if len(findings) <= np.iinfo(np.uint8).max else np.uint16
    shape = (len(planes), shape_irc[1], shape_irc[2])
    frames = np.zeros((*shape, len(findings)) if overlap else shape, dtype=dtype)
    for s, f in enumerate(findings):
        k0 = f.mask.start_irc[0]
        rows, cols = f.mask.slices[1], f.mask.slices[2]
        for dk in range(f.mask.array.shape[0]):
            view = frames[where[k0 + dk], rows, cols]
            if overlap:
                view[..., s] |= f.mask.array[dk]
            else:
                view[f.mask.array[dk]] = s + 1
    return planes, frames


def seg_dataset(
    result: ResultLike, identity: DicomIdentity, algorithm: Algorithm
) -> tuple[hd.seg.Segmentation, dict[int, int], dict[int, str]]:
    """The SEG for ``result``'s findings (at least one), with finding -> segment number and
    finding -> tracking UID."""
    findings = result.findings
    if not findings:
        raise ValueError("a DICOM Segmentation needs at least one finding")
    if not identity.complete:
        raise ValueError(f"the source series lacks {', '.join(identity.missing)}")
    sources = identity.source_datasets()
    planes, frames = _frames(findings, tuple(result.geometry.shape_irc))
    positions = [
        hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT, identity.slices[k].position_lps)
        for k in planes
    ]
    tracking = {f.number: hd.UID() for f in findings}
    segment_numbers = {f.number: s + 1 for s, f in enumerate(findings)}
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[
            _description(segment_numbers[f.number], f, algorithm, tracking[f.number])
            for f in findings
        ],
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=algorithm.name,
        software_versions=algorithm.version,
        device_serial_number="none",
        plane_positions=positions,
        content_label="NODULES",
        content_description="Lung nodules found by LungNoduleCAD",
        series_description="LungNoduleCAD nodules (SEG)",
    )
    return seg, segment_numbers, tracking


def write_seg(
    result: ResultLike,
    identity: DicomIdentity,
    algorithm: Algorithm,
    path: Path | str,
    *,
    overwrite: bool = False,
) -> SegmentationWritten:
    """Write the SEG atomically; refuses an existing file unless ``overwrite``."""
    path = check_writable(Path(path), overwrite)
    seg, numbers, tracking = seg_dataset(result, identity, algorithm)
    write_bytes_atomic(path, _encode(seg))
    log.info("wrote %s (%d segments)", path, len(numbers))
    return SegmentationWritten(
        path=path,
        sop_class_uid=str(seg.SOPClassUID),
        sop_instance_uid=str(seg.SOPInstanceUID),
        series_instance_uid=str(seg.SeriesInstanceUID),
        segment_numbers=numbers,
        tracking_uids=tracking,
    )


def _encode(dataset: hd.SOPClass) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
