"""Shared by the reports and cohort tests: results built from a phantom's truth, no networks.

A :class:`TruthResult` holds one finding per true nodule of a phantom case (its ground-truth mask,
its true centre and size, made-up probabilities) plus one candidate that is not a nodule (below
the nodule floor, so without a malignancy score), so the writers can be checked against positions
and voxel counts known independently of any model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lungcad.ct import CT, Geometry
from lungcad.geometry import voxel_to_world
from lungcad.phantom import PhantomCase
from lungcad.pipeline.findings import (
    CandidateScore,
    Finding,
    PatientSummary,
    Thresholds,
    VoxelMask,
)
from lungcad.pipeline.precision import Precision

DEFAULT_THRESHOLDS = Thresholds()


def loaded_models_stub(precision: Precision = Precision.FLOAT32) -> SimpleNamespace:
    """What a stand-in detector's ``load()`` returns: the device, precision and versions that
    ``lungcad detect`` prints, and no network."""
    return SimpleNamespace(
        device="cpu", precision=precision, versions=lambda: {"segmentation": "fake"}
    )


@dataclass(frozen=True)
class TruthResult:
    """Stands in for DetectionResult where only its reported numbers matter."""

    geometry: Geometry
    series_uid: str | None
    thresholds: Thresholds
    findings: tuple[Finding, ...]
    candidates: tuple[CandidateScore, ...]
    summary: PatientSummary
    timings_s: dict[str, float] = field(default_factory=lambda: {"total": 1.25})
    model_versions: dict[str, str] = field(
        default_factory=lambda: {"segmentation": "seg-test", "nodule": "nod-test"}
    )
    min_segmentation_threshold: float = 0.1

    def save(self, path: Path) -> Path:
        np.savez(path, n_findings=np.array(len(self.findings)))
        return Path(path)


def finding_from_mask(
    number: int, mask: np.ndarray, ct: CT, p_nodule: float, p_malignant: float
) -> Finding:
    """A finding whose numbers are computed from its full-size bool mask on ``ct``'s grid."""
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    start = tuple(int(s.start) for s in box)
    center_irc = tuple(float(v) for v in np.argwhere(mask).mean(axis=0))
    volume = float(mask.sum() * ct.geometry.voxel_volume_mm3)
    return Finding(
        number=number,
        center_lps=tuple(float(v) for v in voxel_to_world(center_irc, ct.geometry)),
        center_irc=center_irc,
        diameter_mm=float((6.0 * volume / np.pi) ** (1 / 3)),
        volume_mm3=volume,
        mean_hu=float(ct.hu[mask].mean()),
        p_nodule=p_nodule,
        p_malignant=p_malignant,
        mask=VoxelMask(start, mask[box].copy()),
    )


def permuted(ct: CT, labels: np.ndarray, order: tuple[int, int, int]) -> tuple[CT, np.ndarray]:
    """The same patient with permuted array axes: new (index, row, col) axis b = old ``order[b]``.

    Voxel (0, 0, 0) stays where it was; the direction's columns and the spacing follow their axes,
    so every voxel keeps its LPS position (a volume whose slices are not the array's first axis).
    """
    g = ct.geometry
    old_cols = g.direction_matrix  # column j = LPS direction of ITK axis j (0 col, 1 row, 2 index)
    new_itk = [2 - order[2 - j] for j in range(3)]  # ITK axis j of the new grid = old ITK axis
    direction = old_cols[:, new_itk]
    spacing = [g.spacing_xyz[a] for a in new_itk]
    hu = np.ascontiguousarray(ct.hu.transpose(order))
    geometry = Geometry.from_arrays(g.origin_xyz, spacing, direction, hu.shape)
    moved = CT(hu=hu, geometry=geometry, series_uid=ct.series_uid)
    return moved, np.ascontiguousarray(labels.transpose(order))


def truth_result(
    case: PhantomCase,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    *,
    ct: CT | None = None,
    labels: np.ndarray | None = None,
) -> TruthResult:
    """Findings = the case's true nodules (largest first), p_malignant spread over [0.05, 0.95].

    ``ct`` and ``labels`` replace the case's own (e.g. a :func:`permuted` copy).
    """
    ct = case.ct if ct is None else ct
    labels = case.rendered.nodule_labels if labels is None else labels
    present = [n for n in case.spec.nodules if np.any(labels == n.index)]
    present.sort(key=lambda n: -n.diameter_mm)
    p_mal = np.linspace(0.95, 0.05, num=max(len(present), 2))[: len(present)]
    findings = tuple(
        finding_from_mask(k + 1, labels == n.index, ct, 0.9, float(p))
        for k, (n, p) in enumerate(zip(present, p_mal, strict=True))
    )
    candidates = [
        CandidateScore(
            f.center_lps,
            f.center_irc,
            f.diameter_mm,
            f.volume_mm3,
            f.mean_hu,
            0.97,
            f.p_nodule,
            f.p_malignant,
            f.number,
        )
        for f in findings
    ]
    middle = tuple(float(v) / 2 for v in ct.shape)
    candidates.append(
        CandidateScore(
            tuple(float(v) for v in voxel_to_world(middle, ct.geometry)),
            middle,
            3.0,
            14.1,
            40.0,
            0.6,
            0.05,
            None,  # below the nodule floor: the malignancy classifier never saw it
            None,
        )
    )
    return TruthResult(
        geometry=ct.geometry,
        series_uid=ct.series_uid,
        thresholds=thresholds,
        findings=findings,
        candidates=tuple(candidates),
        summary=PatientSummary.of(findings, thresholds),
    )


def empty_result(ct: CT, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> TruthResult:
    """No findings and no candidates."""
    return TruthResult(
        geometry=ct.geometry,
        series_uid=ct.series_uid,
        thresholds=thresholds,
        findings=(),
        candidates=(),
        summary=PatientSummary.of((), thresholds),
    )


def tiny_ct(series_uid: str | None, seed: int = 0, shape=(8, 24, 24)) -> CT:
    """A small CT in HU (air, a body block, noise) with one bright 'nodule' ball, for fast runs."""
    rng = np.random.default_rng(seed)
    hu = np.full(shape, -1000, dtype=np.int16)
    hu[:, 4:-4, 4:-4] = -800 + rng.integers(-20, 20, size=(shape[0], shape[1] - 8, shape[2] - 8))
    zz, yy, xx = np.indices(shape)
    center = (shape[0] // 2, 8 + seed % 8, 10)
    ball = (zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2 <= 4
    hu[ball] = 60
    geometry = Geometry.from_arrays((-20.0, -30.0, -40.0), (1.5, 1.5, 2.0), np.eye(3), shape)
    return CT(hu=hu, geometry=geometry, series_uid=series_uid)


def bright_result(ct: CT, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> TruthResult:
    """What a detector that calls every component above 0 HU a nodule would report."""
    labels, count = ndimage.label(ct.hu > 0)
    findings = tuple(finding_from_mask(k, labels == k, ct, 0.8, 0.7) for k in range(1, count + 1))
    candidates = tuple(
        CandidateScore(
            f.center_lps,
            f.center_irc,
            f.diameter_mm,
            f.volume_mm3,
            f.mean_hu,
            0.9,
            f.p_nodule,
            f.p_malignant,
            f.number,
        )
        for f in findings
    )
    return TruthResult(
        geometry=ct.geometry,
        series_uid=ct.series_uid,
        thresholds=thresholds,
        findings=findings,
        candidates=candidates,
        summary=PatientSummary.of(findings, thresholds),
    )


def write_dicom_series(folder: Path, uid: str, seed: int = 0) -> CT:
    """``tiny_ct`` as a DICOM series (one file per slice) whose SeriesInstanceUID is ``uid``,
    whatever it holds: a header controls it, so tests write hostile ones too."""
    ct = tiny_ct(None, seed=seed)
    volume = sitk.GetImageFromArray(ct.hu)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    folder.mkdir(parents=True)
    for k in range(ct.hu.shape[0]):
        image = volume[:, :, k]
        for tag, value in {
            "0008|0060": "CT",
            "0008|0018": f"1.2.826.0.1.3680043.2.1125.7.{seed}.{k + 1}",
            "0020|000e": uid,
            "0020|0013": str(k + 1),
            "0020|0032": f"0\\0\\{2.0 * k}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
        }.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{k:03d}.dcm"))
        writer.Execute(image)
    return ct
