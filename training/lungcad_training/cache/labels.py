"""Nodule label maps on the canonical grid: from a phantom's label file or from the annotations,
and the per-nodule summary kept in meta.json so datasets need not scan the labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lungcad.ct import CT, Geometry
from lungcad.io import geometry_of
from lungcad.luna16 import Annotation, annotation_mask_for_ct
from lungcad.preprocess import labels_to_canonical

ANNOTATION_THRESHOLD_HU = -700  # the seeds' mask builder threshold (real LUNA16 without masks)
_COORD_DECIMALS = 3


@dataclass(frozen=True)
class NoduleSummary:
    """Where one labelled nodule lies on the canonical grid, so datasets need not scan labels.

    ``slices`` holds ``(index, row, col, voxels)`` per slice the nodule touches: the centroid of
    its voxels in that slice and their count.
    """

    label: int
    voxels: int
    center_irc: tuple[float, float, float]
    slices: tuple[tuple[int, float, float, int], ...]

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "voxels": self.voxels,
            "center_irc": [round(v, 3) for v in self.center_irc],
            "slices": [[i, round(r, 3), round(c, 3), n] for i, r, c, n in self.slices],
        }

    @classmethod
    def from_json(cls, data: dict) -> NoduleSummary:
        return cls(
            label=int(data["label"]),
            voxels=int(data["voxels"]),
            center_irc=tuple(float(v) for v in data["center_irc"]),
            slices=tuple((int(i), float(r), float(c), int(n)) for i, r, c, n in data["slices"]),
        )


def summarise_labels(labels: np.ndarray) -> list[NoduleSummary]:
    """Per label: voxel count, centroid and per-slice centroids (scanning bounding boxes only)."""
    out = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        idx = np.argwhere(labels[box] == k) + [s.start for s in box]
        slices = []
        for i in np.unique(idx[:, 0]):
            rows = idx[idx[:, 0] == i]
            slices.append((int(i), float(rows[:, 1].mean()), float(rows[:, 2].mean()), len(rows)))
        out.append(NoduleSummary(k, len(idx), tuple(idx.mean(axis=0).tolist()), tuple(slices)))
    return out


def annotation_rows(annotations: Sequence[Annotation]) -> list[list[float]]:
    return [
        [round(float(v), _COORD_DECIMALS) for v in (*a.center_xyz, a.diameter_mm)]
        for a in annotations
    ]


def labels_from_nrrd(path: Path, canonical: Geometry) -> tuple[np.ndarray, int]:
    """The ground-truth map on the canonical grid, and how many labels the source held."""
    image = sitk.ReadImage(str(path))
    geometry = geometry_of(image)
    labels = sitk.GetArrayFromImage(image)
    if labels.size and labels.max() > np.iinfo(np.uint8).max:
        raise ValueError(f"{path}: more than 255 nodule labels do not fit the uint8 cache")
    n_source = int(np.count_nonzero(np.unique(labels)))
    return labels_to_canonical(labels.astype(np.uint8), geometry, canonical), n_source


def labels_from_annotations(ct: CT, annotations: Sequence[Annotation]) -> np.ndarray:
    """Label k = the seeds' mask of the k-th annotation; where masks overlap the first wins."""
    if len(annotations) > np.iinfo(np.uint8).max:
        raise ValueError(f"{ct.series_uid}: more than 255 annotations do not fit the uint8 cache")
    labels = np.zeros(ct.hu.shape, dtype=np.uint8)
    for k, ann in enumerate(annotations, start=1):
        mask = annotation_mask_for_ct(ct, [ann], threshold_hu=ANNOTATION_THRESHOLD_HU)
        labels[mask & (labels == 0)] = k
    return labels
