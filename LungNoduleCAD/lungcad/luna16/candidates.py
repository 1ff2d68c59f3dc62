"""The joined candidate list that training and evaluation share: candidates.csv rows with labels.

Each ``candidates.csv`` row becomes one :class:`CandidateInfo`. The row's nodule size comes from
the nearest annotation of the same series that the candidate lies within (Euclidean distance <=
diameter / 2), and its malignancy from the ``annotations_with_malignancy.csv`` row nearest that
annotation (same series, within the annotation's radius). Matching is vectorized per series
because the real candidates.csv has about 550k rows.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcad.luna16.records import (
    XYZ,
    Annotation,
    Candidate,
    DatasetFileNotFoundError,
    MalignancyAnnotation,
    bulk_build,
    read_annotations,
    read_candidate_arrays,
    read_malignancy_annotations,
)

logger = logging.getLogger(__name__)

ANNOTATIONS_CSV = "annotations.csv"
CANDIDATES_CSV = "candidates.csv"
MALIGNANCY_CSV = "annotations_with_malignancy.csv"
EXCLUDED_CSV = "annotations_excluded.csv"


@dataclass(frozen=True, slots=True)
class CandidateInfo:
    """One labelled candidate.

    ``diameter_mm`` is the matched annotation's diameter (0.0 without one); ``is_malignant`` is
    None when no malignancy row matched (no annotation, no malignancy file, or no row near it).
    """

    is_nodule: bool
    has_annotation: bool
    is_malignant: bool | None
    diameter_mm: float
    series_uid: str
    center_xyz: XYZ
    annotation_center_xyz: XYZ | None


def find_series(data_dir: str | Path) -> dict[str, Path]:
    """Map series UID -> ``.mhd`` path over ``data_dir/subset*/``.

    A UID found in two subsets keeps the first path (sorted order) and logs a warning, because a
    duplicated scan would otherwise leak across a train/validation split.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetFileNotFoundError(data_dir, "dataset folder not found")
    series: dict[str, Path] = {}
    for path in sorted(data_dir.glob("subset*/*.mhd")):
        if not path.parent.is_dir():
            continue
        uid = path.stem
        if uid in series:
            logger.warning(
                "series %s is in both %s and %s; using the first", uid, series[uid], path
            )
            continue
        series[uid] = path
    if not series:
        logger.warning("no subset*/*.mhd files under %s", data_dir)
    return series


def _nearest_within(points: np.ndarray, centers: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Index of the nearest centre within ``radii`` (broadcast to (points, centers)), else -1.

    Ties go to the earlier centre (file order), so the result is deterministic.
    """
    if len(points) == 0 or len(centers) == 0:
        return np.full(len(points), -1, dtype=np.int64)
    dist = np.linalg.norm(points[:, None, :] - centers[None, :, :], axis=2)
    dist = np.where(dist <= radii, dist, np.inf)
    nearest = np.argmin(dist, axis=1)
    nearest[np.isinf(dist[np.arange(len(points)), nearest])] = -1
    return nearest


def _group(uids: Sequence[str]) -> dict[str, np.ndarray]:
    """Row indices of each series UID, in file order (a dict pass: sorting 550k strings is slow)."""
    if len(uids) == 0:
        return {}
    codes_of: dict[str, int] = {}
    codes = np.fromiter(
        (codes_of.setdefault(u, len(codes_of)) for u in uids), dtype=np.int64, count=len(uids)
    )
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(codes_of)))[:-1]
    return dict(zip(codes_of, np.split(order, bounds), strict=True))


def _annotation_malignancy(
    annotations: Sequence[Annotation], malignancy: Sequence[MalignancyAnnotation]
) -> list[bool | None]:
    """Per annotation: mal_bool of the nearest malignancy row within the annotation's radius."""
    result: list[bool | None] = [None] * len(annotations)
    mal_groups = _group([m.series_uid for m in malignancy])
    for uid, ann_idx in _group([a.series_uid for a in annotations]).items():
        mal_idx = mal_groups.get(uid)
        if mal_idx is None:
            continue
        points = np.array([annotations[i].center_xyz for i in ann_idx])
        radii = np.array([annotations[i].diameter_mm / 2 for i in ann_idx])
        centers = np.array([malignancy[j].center_xyz for j in mal_idx])
        for i, hit in zip(ann_idx, _nearest_within(points, centers, radii[:, None]), strict=True):
            if hit >= 0:
                result[i] = malignancy[mal_idx[hit]].mal_bool
    return result


def _match_annotations(
    uids: Sequence[str], centers: np.ndarray, annotations: Sequence[Annotation]
) -> np.ndarray:
    """Per candidate: index of the nearest same-series annotation it lies within, else -1."""
    match = np.full(len(uids), -1, dtype=np.int64)
    ann_groups = _group([a.series_uid for a in annotations])
    for uid, cand_idx in _group(uids).items():
        ann_idx = ann_groups.get(uid)
        if ann_idx is None:
            continue
        ann_centers = np.array([annotations[i].center_xyz for i in ann_idx])
        radii = np.array([annotations[i].diameter_mm / 2 for i in ann_idx])
        hit = _nearest_within(centers[cand_idx], ann_centers, radii[None, :])
        match[cand_idx] = np.where(hit >= 0, ann_idx[np.maximum(hit, 0)], -1)
    return match


def _series_rank(uids: Sequence[str]) -> np.ndarray:
    """Per row: the rank of its UID in sorted order (for a vectorized sort key)."""
    names = sorted(set(uids))
    rank_of = {u: r for r, u in enumerate(names)}
    return np.fromiter((rank_of[u] for u in uids), dtype=np.int64, count=len(uids))


def _join_arrays(
    uids: Sequence[str],
    centers: np.ndarray,
    is_nodule: np.ndarray,
    annotations: Sequence[Annotation],
    malignancy: Sequence[MalignancyAnnotation] | None,
) -> list[CandidateInfo]:
    """The join of :func:`join_candidates` on candidate columns (no per-row records)."""
    if len(uids) == 0:
        return []
    centers = np.asarray(centers, dtype=np.float64).reshape(len(uids), 3)
    is_nodule = np.asarray(is_nodule, dtype=bool)
    match = _match_annotations(uids, centers, annotations)
    ann_diam = np.array([a.diameter_mm for a in annotations] + [0.0])
    diameters = ann_diam[match]  # -1 picks the trailing 0.0
    order = np.lexsort(
        (centers[:, 2], centers[:, 1], centers[:, 0], _series_rank(uids), -diameters, ~is_nodule)
    )
    ann_mal = _annotation_malignancy(annotations, malignancy) if malignancy else None
    mal_of = (ann_mal or [None] * len(annotations)) + [None]
    ann_center_of = [a.center_xyz for a in annotations] + [None]
    sorted_centers = centers[order].tolist()
    return [
        CandidateInfo(nod, m >= 0, mal_of[m], d, uids[i], tuple(c), ann_center_of[m])
        for i, nod, m, d, c in zip(
            order.tolist(),
            is_nodule[order].tolist(),
            match[order].tolist(),
            diameters[order].tolist(),
            sorted_centers,
            strict=True,
        )
    ]


def join_candidates(
    candidates: Sequence[Candidate],
    annotations: Sequence[Annotation],
    malignancy: Sequence[MalignancyAnnotation] | None = None,
) -> list[CandidateInfo]:
    """Label each candidate from the annotations (and malignancy rows), sorted deterministically.

    Order: nodules first, then larger diameter first, then series UID, then x, y, z ascending.
    """
    return _join_arrays(
        [c.series_uid for c in candidates],
        np.array([c.center_xyz for c in candidates], dtype=np.float64).reshape(-1, 3),
        np.array([c.is_nodule for c in candidates], dtype=bool),
        annotations,
        malignancy,
    )


def _stamp(path: Path) -> tuple[int, int] | None:
    """(mtime, size) of a file, or None; part of the cache key so edited csvs are re-read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size)


def candidate_list(data_dir: str | Path, require_on_disk: bool = True) -> list[CandidateInfo]:
    """Every ``candidates.csv`` row of ``data_dir``, labelled and sorted (:func:`join_candidates`).

    With ``require_on_disk``, candidates of series without a ``subset*/<uid>.mhd`` are dropped.
    The parsed list is cached per folder, flag, csv modification stamps and (when filtering)
    the set of series on disk; each call returns a new list over shared, immutable items.
    """
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        raise DatasetFileNotFoundError(data_dir, "dataset folder not found")
    on_disk = tuple(sorted(find_series(data_dir))) if require_on_disk else None
    stamps = tuple(_stamp(data_dir / n) for n in (ANNOTATIONS_CSV, CANDIDATES_CSV, MALIGNANCY_CSV))
    return list(_cached_candidate_list(str(data_dir), on_disk, stamps))


@functools.lru_cache(maxsize=2)
def _cached_candidate_list(
    data_dir: str, on_disk: tuple[str, ...] | None, stamps: tuple
) -> tuple[CandidateInfo, ...]:
    with bulk_build():
        return _load_candidate_list(Path(data_dir), on_disk)


def _load_candidate_list(root: Path, on_disk: tuple[str, ...] | None) -> tuple[CandidateInfo, ...]:
    uids, centers, is_nodule = read_candidate_arrays(root / CANDIDATES_CSV)
    if on_disk is not None:
        keep = set(on_disk)
        rows = np.fromiter((u in keep for u in uids), dtype=bool, count=len(uids))
        logger.info(
            "kept %d of %d candidates (%d series on disk)", rows.sum(), len(uids), len(keep)
        )
        uids = [u for u, k in zip(uids, rows.tolist(), strict=True) if k]
        centers, is_nodule = centers[rows], is_nodule[rows]
    annotations = read_annotations(root / ANNOTATIONS_CSV)
    malignancy = None
    if (root / MALIGNANCY_CSV).is_file():
        malignancy = read_malignancy_annotations(root / MALIGNANCY_CSV)
    else:
        logger.info("no %s in %s: malignancy left unknown", MALIGNANCY_CSV, root)
    return tuple(_join_arrays(uids, centers, is_nodule, annotations, malignancy))


def clear_candidate_cache() -> None:
    """Drop cached candidate lists (for long-lived processes that must free the memory)."""
    _cached_candidate_list.cache_clear()
