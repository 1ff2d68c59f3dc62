"""Which candidate hits which annotation, per scan, by the LUNA16 rule.

A candidate hits an annotation when its LPS distance to the annotation's centre is strictly less
than the annotation's radius (diameter / 2), as ``noduleCADEvaluationLUNA16.py`` tests
``dist < radius**2`` on squared distances. Each annotation counts once, with the highest
probability among the candidates that hit it; a candidate that hits two overlapping annotations
counts for both. Candidates that hit an ignored annotation (annotations_excluded.csv, or one
below the minimum diameter) and no counted one are neither true nor false positives.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class Status(enum.IntEnum):
    """What a candidate is in the FROC analysis."""

    FALSE_POSITIVE = 0
    TRUE_POSITIVE = 1  # hits at least one counted annotation
    IGNORED = 2  # hits only ignored annotations
    OVER_CAP = 3  # dropped by the per-scan cap on CAD marks (LUNA16 keeps 100)


def hit_matrix(points: np.ndarray, centers: np.ndarray, diameters: np.ndarray) -> np.ndarray:
    """(points x centers) bool: point strictly inside the sphere of diameter ``diameters``."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 3)
    radius_sq = (np.asarray(diameters, dtype=np.float64).reshape(-1) / 2.0) ** 2
    if len(points) == 0 or len(centers) == 0:
        return np.zeros((len(points), len(centers)), dtype=bool)
    d2 = ((points[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    return d2 < radius_sq[None, :]


def cap_marks(probability: np.ndarray, max_marks: int | None) -> np.ndarray:
    """Bool mask of the candidates LUNA16 keeps when a scan has more than ``max_marks``.

    The official script keeps those whose probability is strictly above the
    (max_marks + 1)-th highest, so ties at the cut drop together (fewer than max_marks remain).
    """
    probability = np.asarray(probability, dtype=np.float64)
    if max_marks is None or len(probability) <= max_marks:
        return np.ones(len(probability), dtype=bool)
    cut = np.sort(probability)[::-1][max_marks]
    return probability > cut


@dataclass(frozen=True, eq=False)
class ScanMatch:
    """One scan's FROC ingredients.

    ``nodule_prob[k]`` is the best probability among candidates hitting counted annotation k
    (NaN when missed) and ``nodule_candidate[k]`` that candidate's index (-1 when missed);
    ``status`` holds a :class:`Status` per candidate; ``nodule_diameter_mm`` sizes the counted
    annotations for per-size sensitivities; ``nodule_hits`` counts the candidates hitting each.
    """

    series_uid: str
    status: np.ndarray
    probability: np.ndarray
    nodule_prob: np.ndarray
    nodule_candidate: np.ndarray
    nodule_diameter_mm: np.ndarray
    nodule_hits: np.ndarray

    @property
    def n_nodules(self) -> int:
        return len(self.nodule_prob)

    @property
    def tp_probs(self) -> np.ndarray:
        """Best probability of each detected nodule (missed ones left out)."""
        return self.nodule_prob[~np.isnan(self.nodule_prob)]

    @property
    def fp_probs(self) -> np.ndarray:
        return self.probability[self.status == Status.FALSE_POSITIVE]

    @property
    def n_duplicates(self) -> int:
        """Hits beyond the first on each detected nodule (LUNA16's "double detections")."""
        return int(np.maximum(self.nodule_hits - 1, 0).sum())


def match_scan(
    series_uid: str,
    xyz: np.ndarray,
    probability: np.ndarray,
    nodule_xyz: np.ndarray,
    nodule_diameter_mm: np.ndarray,
    ignored_xyz: np.ndarray,
    ignored_diameter_mm: np.ndarray,
    max_marks: int | None = 100,
) -> ScanMatch:
    """Match one scan's candidates to its counted and ignored annotations (LUNA16 rules)."""
    probability = np.asarray(probability, dtype=np.float64).reshape(-1)
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    nodule_diameter_mm = np.asarray(nodule_diameter_mm, dtype=np.float64).reshape(-1)
    kept = cap_marks(probability, max_marks)
    hits = hit_matrix(xyz, nodule_xyz, nodule_diameter_mm) & kept[:, None]
    ignored = hit_matrix(xyz, ignored_xyz, ignored_diameter_mm).any(axis=1) & kept
    status = np.full(len(probability), int(Status.FALSE_POSITIVE), dtype=np.int8)
    status[ignored] = Status.IGNORED
    status[hits.any(axis=1)] = Status.TRUE_POSITIVE
    status[~kept] = Status.OVER_CAP
    masked = np.where(hits, probability[:, None], -np.inf)
    found = hits.any(axis=0)
    if len(probability):
        best = np.argmax(masked, axis=0)  # the first of equal best probabilities
    else:
        best = np.zeros(hits.shape[1], dtype=np.int64)
    nodule_candidate = np.where(found, best, -1).astype(np.int64)
    nodule_prob = np.where(found, masked.max(axis=0, initial=-np.inf), np.nan)
    return ScanMatch(
        series_uid=series_uid,
        status=status,
        probability=probability,
        nodule_prob=nodule_prob.reshape(-1),
        nodule_candidate=nodule_candidate.reshape(-1),
        nodule_diameter_mm=nodule_diameter_mm,
        nodule_hits=hits.sum(axis=0).astype(np.int64),
    )
