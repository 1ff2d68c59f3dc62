"""Score a set of results against a LUNA16-layout truth: FROC/CPM, malignancy AUC, the table.

Only the scans that have results are evaluated (or every scan on disk with ``all_series``, those
without results counting as scans with no candidates). ``min_diameter_mm`` moves smaller
annotations into the ignored set, beside annotations_excluded.csv: a candidate on one is neither
a hit nor a false positive, and smaller benign/malignant annotations leave the table and the AUC.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from lungcad.evaluation.endtoend import (
    DEFAULT_NON_NODULE_RADIUS_MM,
    EndToEndTable,
    MalignancyResult,
    NoduleOutcome,
    malignancy_result,
    truth_outcomes,
)
from lungcad.evaluation.froc import (
    FP_RATES,
    FrocResult,
    SizeSensitivity,
    evaluate_froc,
    sensitivity_by_size,
)
from lungcad.evaluation.inputs import CaseResult, Truth
from lungcad.evaluation.matching import ScanMatch, Status, hit_matrix, match_scan
from lungcad.pipeline.findings import Thresholds

logger = logging.getLogger(__name__)

SIZE_RATE = 4.0
"""Per-size sensitivities are read at the operating point of this many FP per scan."""


@dataclass(frozen=True)
class EvaluationOptions:
    """How to score. ``max_marks`` is LUNA16's cap of 100 CAD marks per scan (None: no cap)."""

    min_diameter_mm: float = 0.0
    max_marks: int | None = 100
    non_nodule_radius_mm: float = DEFAULT_NON_NODULE_RADIUS_MM
    nodule_threshold: float | None = None
    malignancy_threshold: float | None = None
    bootstrap: int = 0
    confidence: float = 0.95
    seed: int = 0
    rates: tuple[float, ...] = FP_RATES

    def __post_init__(self) -> None:
        if self.min_diameter_mm < 0:
            raise ValueError(f"minimum diameter must be >= 0 mm, got {self.min_diameter_mm}")
        if self.max_marks is not None and self.max_marks < 1:
            raise ValueError(f"max marks per scan must be >= 1, got {self.max_marks}")
        if not self.non_nodule_radius_mm > 0:
            raise ValueError(f"non-nodule radius must be > 0 mm, got {self.non_nodule_radius_mm}")
        for name in ("nodule_threshold", "malignancy_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name.replace('_', ' ')} must lie in [0, 1], got {value}")
        if self.bootstrap < 0:
            raise ValueError(f"bootstrap samples must be >= 0, got {self.bootstrap}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}")


@dataclass(frozen=True, eq=False)
class CaseEvaluation:
    """One scan: its FROC match over all candidates and its match at the operating point.

    ``kept`` marks the candidates with p_nodule >= the nodule threshold (the findings);
    ``operating`` matches only those, without a cap. ``nodule_xyz``/``nodule_diameter_mm`` are
    the counted annotations in the order of ``froc.nodule_prob``.
    """

    case: CaseResult
    thresholds: Thresholds
    froc: ScanMatch
    kept: np.ndarray
    operating: ScanMatch
    nodule_xyz: np.ndarray
    nodule_diameter_mm: np.ndarray


@dataclass(frozen=True, eq=False)
class Evaluation:
    options: EvaluationOptions
    cases: tuple[CaseEvaluation, ...]
    froc: FrocResult
    size_threshold: float
    by_size: list[SizeSensitivity]
    table: EndToEndTable | None
    malignancy: MalignancyResult | None
    n_excluded_annotations: int
    n_small_annotations_ignored: int
    notes: list[str] = field(default_factory=list)

    @property
    def series(self) -> list[str]:
        return [c.case.series_uid for c in self.cases]

    def operating_point(self) -> dict[str, float | int | None]:
        """Findings (kept candidates) at the results' thresholds: hits, false positives."""
        nodules = sum(c.operating.n_nodules for c in self.cases)
        detected = sum(len(c.operating.tp_probs) for c in self.cases)
        status = np.concatenate([c.operating.status for c in self.cases])
        fps = int((status == Status.FALSE_POSITIVE).sum())
        return {
            "findings": len(status),
            "true_positive_findings": int((status == Status.TRUE_POSITIVE).sum()),
            "false_positive_findings": fps,
            "ignored_findings": int((status == Status.IGNORED).sum()),
            "nodules_detected": detected,
            "nodules": nodules,
            "sensitivity": detected / nodules if nodules else None,
            "false_positives_per_scan": fps / len(self.cases),
        }


def _by_series(items, uid_of) -> dict[str, list]:
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(uid_of(item), []).append(item)
    return groups


def _xyz_diam(items: Sequence) -> tuple[np.ndarray, np.ndarray]:
    xyz = np.array([a.center_xyz for a in items], dtype=np.float64).reshape(-1, 3)
    return xyz, np.array([a.diameter_mm for a in items], dtype=np.float64)


def _thresholds(case: CaseResult, options: EvaluationOptions, notes: list[str]) -> Thresholds:
    base = case.thresholds
    if base is None:
        base = Thresholds()
        if options.nodule_threshold is None and len(case):
            note = (
                "results without results.json thresholds use the defaults "
                f"({base.segmentation:g}/{base.nodule:g}/{base.malignancy:g})"
            )
            if note not in notes:
                notes.append(note)
    changes = {}
    if options.nodule_threshold is not None:
        changes["nodule"] = options.nodule_threshold
    if options.malignancy_threshold is not None:
        changes["malignancy"] = options.malignancy_threshold
    return replace(base, **changes)


def _kept(case: CaseResult, thresholds: Thresholds, options: EvaluationOptions) -> np.ndarray:
    """The findings: the csv's finding column as written, or p_nodule >= an overridden threshold.

    The column is trusted over re-applying the threshold because the csv rounds p_nodule.
    """
    in_lung = np.ones(len(case), dtype=bool) if case.in_lung is None else case.in_lung
    if case.finding is not None and options.nodule_threshold is None:
        kept = case.finding > 0
        rule = (case.p_nodule >= thresholds.nodule) & in_lung
        if np.any(kept != rule):
            logger.info(
                "%s: %d candidates' finding column differs from p_nodule >= %g (csv rounding)",
                case.source,
                int((kept != rule).sum()),
                thresholds.nodule,
            )
        return kept
    return (case.p_nodule >= thresholds.nodule) & in_lung


def evaluate(
    truth: Truth,
    cases: Sequence[CaseResult],
    options: EvaluationOptions | None = None,
    notes: Sequence[str] = (),
) -> Evaluation:
    """Score ``cases`` (already checked against ``truth`` by :func:`select_cases`).

    ``notes`` (e.g. the case folders left out) are carried into the report.
    """
    options = options or EvaluationOptions()
    if not cases:
        raise ValueError("no cases to evaluate")
    notes = list(notes)
    ann = _by_series(truth.annotations, lambda a: a.series_uid)
    exc = _by_series(truth.excluded, lambda a: a.series_uid)
    mal = _by_series(truth.malignancy or (), lambda m: m.series_uid)
    non = _by_series(truth.non_nodules or (), lambda p: p[0])
    # scans without candidates (e.g. added by --all-series) need no malignancy column
    scored = [c for c in cases if len(c)]
    with_malignancy = truth.malignancy is not None and all(
        c.p_malignant is not None for c in scored
    )
    operating_points = []  # (thresholds, kept) per case
    for case in cases:
        thresholds = _thresholds(case, options, notes)
        operating_points.append((thresholds, _kept(case, thresholds, options)))
    unscored = 0
    if with_malignancy:
        unscored = sum(
            int(np.count_nonzero(kept & np.isnan(case.p_malignant)))
            for case, (_, kept) in zip(cases, operating_points, strict=True)
            if len(case)
        )
    if unscored:
        # a kept candidate without p_malignant (below its detection's nodule floor) would land
        # in neither predicted column: no table rather than a wrong one
        with_malignancy = False
        notes.append(
            f"{unscored} kept candidate{'s' if unscored != 1 else ''} without p_malignant "
            "(below the detection's nodule floor, 0.1 by default): no malignancy AUC or table; "
            "evaluate at a nodule threshold at or above the floor for them"
        )
    table = EndToEndTable(non_nodule_radius_mm=options.non_nodule_radius_mm)
    evaluated, n_excluded, n_small = [], 0, 0
    for case, (thresholds, kept) in zip(cases, operating_points, strict=True):
        uid = case.series_uid
        counted = [a for a in ann.get(uid, []) if a.diameter_mm >= options.min_diameter_mm]
        small = [a for a in ann.get(uid, []) if a.diameter_mm < options.min_diameter_mm]
        ignored = exc.get(uid, []) + small
        n_excluded += len(exc.get(uid, []))
        n_small += len(small)
        nod_xyz, nod_d = _xyz_diam(counted)
        ign_xyz, ign_d = _xyz_diam(ignored)
        froc = match_scan(
            uid, case.xyz, case.probability, nod_xyz, nod_d, ign_xyz, ign_d, options.max_marks
        )
        operating = match_scan(
            uid, case.xyz[kept], case.probability[kept], nod_xyz, nod_d, ign_xyz, ign_d, None
        )
        evaluated.append(CaseEvaluation(case, thresholds, froc, kept, operating, nod_xyz, nod_d))
        if with_malignancy:
            _add_to_table(
                table,
                case,
                kept,
                thresholds,
                options,
                mal.get(uid, []),
                non.get(uid, []),
                ann.get(uid, []) + exc.get(uid, []),
            )
    froc_result = evaluate_froc(
        [c.froc for c in evaluated],
        options.rates,
        options.bootstrap,
        options.confidence,
        options.seed,
    )
    size_threshold = froc_result.curve.threshold_at(SIZE_RATE)
    by_size = sensitivity_by_size([c.froc for c in evaluated], size_threshold)
    malignancy = None
    if with_malignancy:
        malignancy = malignancy_result(table.nodules)
        if truth.non_nodules is None:
            notes.append("no candidates.csv in the data folder: the non-nodule row is empty")
    elif truth.malignancy is None:
        notes.append("no annotations_with_malignancy.csv: no malignancy AUC or end-to-end table")
    elif not unscored:
        notes.append("results without p_malignant (a submission csv): no AUC or table")
    return Evaluation(
        options=options,
        cases=tuple(evaluated),
        froc=froc_result,
        size_threshold=size_threshold,
        by_size=by_size,
        table=table if with_malignancy else None,
        malignancy=malignancy,
        n_excluded_annotations=n_excluded,
        n_small_annotations_ignored=n_small,
        notes=notes,
    )


def _add_to_table(
    table: EndToEndTable,
    case: CaseResult,
    kept: np.ndarray,
    thresholds: Thresholds,
    options: EvaluationOptions,
    malignancy_rows: Sequence,
    non_nodules: Sequence[tuple[str, tuple[float, float, float]]],
    annotated: Sequence,
) -> None:
    p_malignant = case.p_malignant if case.p_malignant is not None else np.zeros(len(case))
    scores = (case.xyz, kept, p_malignant, thresholds.malignancy, case.in_lung)
    rows = [m for m in malignancy_rows if m.diameter_mm >= options.min_diameter_mm]
    xyz, diam = _xyz_diam(rows)
    columns, p_mal = truth_outcomes(xyz, diam, *scores)
    table.add_nodules(
        [
            NoduleOutcome(m.series_uid, m.center_xyz, m.diameter_mm, m.mal_bool, int(c), float(p))
            for m, c, p in zip(rows, columns.tolist(), p_mal.tolist(), strict=True)
        ]
    )
    if not non_nodules:
        return
    points = np.array([p for _, p in non_nodules], dtype=np.float64).reshape(-1, 3)
    spheres = [*annotated, *malignancy_rows]
    sph_xyz, sph_d = _xyz_diam(spheres)
    inside = hit_matrix(points, sph_xyz, sph_d).any(axis=1)
    table.non_nodules_inside_annotations += int(inside.sum())
    points = points[~inside]
    diameters = np.full(len(points), 2.0 * options.non_nodule_radius_mm)
    columns, _ = truth_outcomes(points, diameters, *scores)
    table.add_non_nodules(columns)
