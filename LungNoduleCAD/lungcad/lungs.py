"""Find the lungs with classical image processing (threshold, components, fill), no network.

Used to compare the phantoms' lungs with real ones, and to restrict the segmentation network to
the slices and box that contain lung.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungcad.ct import CT

AIR_THRESHOLD_HU = -400.0
MIN_LUNG_ML = 5.0  # smaller air pockets (bowel gas, oesophagus) are not lung


def find_lungs(ct: CT, threshold_hu: float = AIR_THRESHOLD_HU) -> np.ndarray:
    """Boolean lung mask (vessels inside included) in the CT's (index, row, col) order.

    Air below ``threshold_hu`` that does not touch the in-plane border of its slice (the air
    around the patient does) and forms components of at least MIN_LUNG_ML is lung; holes in
    each axial slice (vessels, nodules) are filled, then a closing takes in vessels at the edge.
    """
    air = ct.hu < threshold_hu
    outside = np.zeros_like(air)
    for k in range(air.shape[0]):
        labels, n = ndimage.label(air[k])
        if n == 0:
            continue
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        outside[k] = np.isin(labels, border[border > 0])
    inner_air = air & ~outside
    labels, n = ndimage.label(inner_air)
    if n == 0:
        return inner_air
    sizes = ndimage.sum_labels(inner_air, labels, index=np.arange(1, n + 1))
    min_voxels = MIN_LUNG_ML * 1000.0 / ct.geometry.voxel_volume_mm3
    keep = np.flatnonzero(sizes >= min_voxels) + 1
    lungs = np.isin(labels, keep)
    for k in range(lungs.shape[0]):
        if lungs[k].any():
            lungs[k] = ndimage.binary_fill_holes(lungs[k])
    return lungs


@dataclass(frozen=True)
class LungStatistics:
    volume_ml: float
    parenchyma_mean_hu: float  # lung voxels below -500 HU
    dense_fraction: (
        float  # share of lung voxels at or above -500 HU (vessels, airway walls, nodules)
    )


def lung_statistics(ct: CT, lungs: np.ndarray | None = None) -> LungStatistics:
    """Volume, parenchyma density and the share of dense structures (mostly vessels)."""
    mask = find_lungs(ct) if lungs is None else lungs
    values = ct.hu[mask]
    if values.size == 0:
        return LungStatistics(0.0, float("nan"), float("nan"))
    parenchyma = values[(values < -500) & (values > -990)]
    return LungStatistics(
        volume_ml=float(mask.sum() * ct.geometry.voxel_volume_mm3 / 1000.0),
        parenchyma_mean_hu=float(parenchyma.mean()) if parenchyma.size else float("nan"),
        dense_fraction=float((values >= -500).mean()),
    )
