"""DICOM Structured Report, TID 1500 "Measurement Report" (highdicom.sr), per finding and exam.

Per finding, a Volumetric ROI group (TID 1411) references its SEG segment and the source slice
through its centre, and holds, each with the algorithm (name, version, model SHA-256s):

- Diameter (SCT 81827009, mm: the equivalent-sphere diameter results.json calls diameter_mm),
  Volume (SCT 118565006, mm3) and Mean (SCT 373098007, HU);
- Certainty of Finding (DCM 111012) = p_nodule and Probability of cancer (DCM 111047) =
  p_malignant, unit 1 (a probability in [0, 1]);
- where the finding carries them (Lung-RADS measurements, computed on another branch): mean
  diameter (Diameter with derivation Mean), long and short axis (SCT 103339001 / 103340004) and
  the Lung-RADS category (a qualitative evaluation in the local scheme 99LUNGCAD).

Its centre is a Planar ROI group (TID 1410) with a 3D point (geometric purpose DCM 111010
"Center") on the source's Frame of Reference. The exam summary is a TID 1501 group: the number
of findings and of those above the malignancy threshold, and the highest p_malignant. Values are
rounded as results.json rounds them, so the two files agree digit for digit.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from lungcad.atomic import write_bytes_atomic
from lungcad.dicom_out.algorithm import MANUFACTURER, Algorithm
from lungcad.dicom_out.identity import DicomIdentity
from lungcad.dicom_out.seg import LUNG, NODULE_TYPE, SegmentationWritten
from lungcad.pipeline.findings import Finding
from lungcad.reports.common import ResultLike, check_writable

__all__ = ["SR_SERIES_NUMBER", "SRFinding", "sr_dataset", "write_sr"]

log = logging.getLogger(__name__)

SR_SERIES_NUMBER = 9702
LOCAL_SCHEME = "99LUNGCAD"
CT_CHEST = Code("24627-2", "LN", "CT Chest")
CERTAINTY_OF_FINDING = Code("111012", "DCM", "Certainty of Finding")
PROBABILITY_OF_CANCER = Code("111047", "DCM", "Probability of cancer")
DIAMETER = Code("81827009", "SCT", "Diameter")
VOLUME = Code("118565006", "SCT", "Volume")
MEAN = Code("373098007", "SCT", "Mean")
MAXIMUM = Code("56851009", "SCT", "Maximum")
LONG_AXIS = Code("103339001", "SCT", "Long axis")
SHORT_AXIS = Code("103340004", "SCT", "Short axis")
CENTER = Code("111010", "DCM", "Center")
FINDING_COUNT = Code("LC-001", LOCAL_SCHEME, "Number of findings")
SUSPICIOUS_COUNT = Code("LC-002", LOCAL_SCHEME, "Number of findings above the malignancy threshold")
LUNG_RADS = Code("LC-003", LOCAL_SCHEME, "Lung-RADS category")
MM = codes.UCUM.Millimeter
MM3 = codes.UCUM.CubicMillimeter
HU = codes.UCUM.HounsfieldUnit
UNITLESS = codes.UCUM.NoUnits


@dataclass(frozen=True)
class SRFinding:
    """What the SR reports of one finding; the Lung-RADS fields (the finding's
    ``measurements.axes`` and ``lung_rads.category``) are None where they were not computed."""

    number: int
    center_lps: tuple[float, float, float]
    center_index: int
    diameter_mm: float
    volume_mm3: float
    mean_hu: float
    p_nodule: float
    p_malignant: float
    mean_diameter_mm: float | None = None
    long_axis_mm: float | None = None
    short_axis_mm: float | None = None
    lung_rads: str | None = None

    @classmethod
    def of(cls, f: Finding, n_slices: int | None = None) -> SRFinding:
        """The finding's numbers rounded as results.json rounds them; ``center_index`` is the
        slice nearest its centre (within ``n_slices`` when given)."""

        measured = getattr(f, "measurements", None)  # Lung-RADS measurements, where computed
        axes = None if measured is None else measured.axes
        assessment = getattr(f, "lung_rads", None)

        def optional_mm(value: float | None) -> float | None:
            return None if value is None else round(float(value), 1)  # as results.json

        return cls(
            number=int(f.number),
            center_lps=tuple(round(float(v), 3) for v in f.center_lps),
            center_index=int(np.clip(np.rint(f.center_irc[0]), 0, (n_slices or 1 << 30) - 1)),
            diameter_mm=round(float(f.diameter_mm), 3),
            volume_mm3=round(float(f.volume_mm3), 3),
            mean_hu=round(float(f.mean_hu), 1),
            p_nodule=round(float(f.p_nodule), 4),
            p_malignant=round(float(f.p_malignant), 4),
            mean_diameter_mm=optional_mm(None if axes is None else axes.mean_diameter_mm),
            long_axis_mm=optional_mm(None if axes is None else axes.long_axis_mm),
            short_axis_mm=optional_mm(None if axes is None else axes.short_axis_mm),
            lung_rads=None if assessment is None else str(assessment.category.value),
        )


def _measurements(f: SRFinding, algorithm_id: hd.sr.AlgorithmIdentification) -> list:
    def m(name: Code, value: float, unit: Code, derivation: Code | None = None):
        return hd.sr.Measurement(
            name=name, value=value, unit=unit, derivation=derivation, algorithm_id=algorithm_id
        )

    out = [
        m(DIAMETER, f.diameter_mm, MM),
        m(VOLUME, f.volume_mm3, MM3),
        m(MEAN, f.mean_hu, HU),
        m(CERTAINTY_OF_FINDING, f.p_nodule, UNITLESS),
        m(PROBABILITY_OF_CANCER, f.p_malignant, UNITLESS),
    ]
    if f.mean_diameter_mm is not None:
        out.append(m(DIAMETER, f.mean_diameter_mm, MM, derivation=MEAN))
    if f.long_axis_mm is not None:
        out.append(m(LONG_AXIS, f.long_axis_mm, MM))
    if f.short_axis_mm is not None:
        out.append(m(SHORT_AXIS, f.short_axis_mm, MM))
    return out


def _finding_groups(
    f: SRFinding,
    identity: DicomIdentity,
    seg: SegmentationWritten,
    algorithm_id: hd.sr.AlgorithmIdentification,
) -> list:
    source = identity.slices[f.center_index]
    evaluations = []
    if f.lung_rads is not None:
        evaluations.append(
            hd.sr.QualitativeEvaluation(
                LUNG_RADS, Code(f.lung_rads, LOCAL_SCHEME, f"Lung-RADS {f.lung_rads}")
            )
        )
    volume = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=seg.tracking_uids[f.number], identifier=f"Nodule {f.number}"
        ),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.sop_class_uid,
            sop_instance_uid=seg.sop_instance_uid,
            segment_number=seg.segment_numbers[f.number],
            source_images=[
                hd.sr.SourceImageForSegmentation(source.sop_class_uid, source.sop_instance_uid)
            ],
        ),
        finding_type=NODULE_TYPE,
        finding_sites=[hd.sr.FindingSite(LUNG)],
        algorithm_id=algorithm_id,
        measurements=_measurements(f, algorithm_id),
        qualitative_evaluations=evaluations or None,
    )
    centre = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=hd.UID(), identifier=f"Nodule {f.number} centre"
        ),
        referenced_region=hd.sr.ImageRegion3D(
            graphic_type=hd.sr.GraphicTypeValues3D.POINT,
            graphic_data=np.asarray([f.center_lps], dtype=float),
            frame_of_reference_uid=identity.frame_of_reference_uid,
        ),
        finding_type=NODULE_TYPE,
        geometric_purpose=CENTER,
        algorithm_id=algorithm_id,
    )
    return [volume, centre]


def _summary_group(result: ResultLike, algorithm_id: hd.sr.AlgorithmIdentification):
    s = result.summary
    measurements = [
        hd.sr.Measurement(FINDING_COUNT, s.finding_count, UNITLESS, algorithm_id=algorithm_id),
        hd.sr.Measurement(
            SUSPICIOUS_COUNT, s.suspicious_count, UNITLESS, algorithm_id=algorithm_id
        ),
    ]
    if s.highest_malignancy is not None:
        measurements.append(
            hd.sr.Measurement(
                PROBABILITY_OF_CANCER,
                round(float(s.highest_malignancy), 4),
                UNITLESS,
                derivation=MAXIMUM,
                algorithm_id=algorithm_id,
            )
        )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="Exam summary"),
        algorithm_id=algorithm_id,
        measurements=measurements,
    )


def _seg_evidence(identity: DicomIdentity, seg: SegmentationWritten) -> Dataset:
    ds = Dataset()
    for keyword, value in identity.patient_study.as_elements().items():
        setattr(ds, keyword, value)
    ds.SOPClassUID = seg.sop_class_uid
    ds.SOPInstanceUID = seg.sop_instance_uid
    ds.SeriesInstanceUID = seg.series_instance_uid
    return ds


def sr_dataset(
    result: ResultLike,
    identity: DicomIdentity,
    algorithm: Algorithm,
    seg: SegmentationWritten | None,
) -> hd.sr.Comprehensive3DSR:
    """The report; ``seg`` is the SEG written for the findings (None only without findings)."""
    if not identity.complete:
        raise ValueError(f"the source series lacks {', '.join(identity.missing)}")
    if result.findings and seg is None:
        raise ValueError("findings need their SEG: the SR references its segments")
    algorithm_id = algorithm.sr_identification()
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=algorithm.name, manufacturer_name=MANUFACTURER
        ),
    )
    groups: list = []
    for f in result.findings:
        groups += _finding_groups(
            SRFinding.of(f, len(identity.slices)), identity, seg, algorithm_id
        )
    groups.append(_summary_group(result, algorithm_id))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=CT_CHEST,
        imaging_measurements=groups,
    )
    evidence = identity.source_datasets()
    if seg is not None:
        evidence.append(_seg_evidence(identity, seg))
    return hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description="LungNoduleCAD measurements (SR)",
    )


def write_sr(
    result: ResultLike,
    identity: DicomIdentity,
    algorithm: Algorithm,
    seg: SegmentationWritten | None,
    path: Path | str,
    *,
    overwrite: bool = False,
) -> Path:
    """Write the SR atomically; refuses an existing file unless ``overwrite``."""
    path = check_writable(Path(path), overwrite)
    sr = sr_dataset(result, identity, algorithm, seg)
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    write_bytes_atomic(path, buffer.getvalue())
    log.info("wrote %s (%d findings)", path, len(result.findings))
    return path
