"""The seeds' end-to-end table and the malignancy ROC over detected nodules.

Rows: non-nodule (class-0 rows of the data's candidates.csv), benign and malignant (rows of
annotations_with_malignancy.csv). Columns: where the cascade left each one:

- missed by segmentation: no candidate within the truth's radius (an annotation's diameter / 2;
  for a class-0 point, which has no size, a fixed radius, 5 mm by default);
- outside lung: candidates hit it, all with their centre outside the lung mask (never classified);
- filtered out by the nodule classifier: candidates hit it, all with p_nodule < nodule threshold;
- predicted benign / malignant: a kept candidate (p_nodule >= nodule threshold) hits it, and its
  p_malignant is below / at or above the malignancy threshold.

As in the seeds (``match_and_score``), a truth hit by several candidates takes the furthest
column any of them reaches (malignant > benign > filtered > outside lung), and one candidate may
count for several truths.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lungcad.evaluation.matching import hit_matrix
from lungcad.evaluation.roc import roc_auc, roc_curve

ROWS = ("non-nodule", "benign", "malignant")
COLUMNS = (
    "missed_by_segmentation",
    "outside_lung",
    "filtered_by_nodule_classifier",
    "predicted_benign",
    "predicted_malignant",
)
COLUMN_TITLES = (
    "missed by seg.", "outside lung", "filtered (nodule)", "pred. benign", "pred. malignant",
)  # fmt: skip
MISSED, OUTSIDE_LUNG, FILTERED, PREDICTED_BENIGN, PREDICTED_MALIGNANT = range(5)
DEFAULT_NON_NODULE_RADIUS_MM = 5.0


def candidate_columns(
    kept: np.ndarray,
    p_malignant: np.ndarray,
    malignancy_threshold: float,
    in_lung: np.ndarray | None = None,
) -> np.ndarray:
    """Per candidate: OUTSIDE_LUNG, FILTERED (not kept), PREDICTED_BENIGN or _MALIGNANT."""
    kept = np.asarray(kept, dtype=bool)
    p_malignant = np.asarray(p_malignant, dtype=np.float64)
    in_lung = np.ones(len(kept), dtype=bool) if in_lung is None else np.asarray(in_lung, bool)
    judged = np.where(p_malignant < malignancy_threshold, PREDICTED_BENIGN, PREDICTED_MALIGNANT)
    return np.where(~in_lung, OUTSIDE_LUNG, np.where(~kept, FILTERED, judged)).astype(np.int64)


def truth_outcomes(
    truth_xyz: np.ndarray,
    truth_diameter_mm: np.ndarray,
    cand_xyz: np.ndarray,
    kept: np.ndarray,
    p_malignant: np.ndarray,
    malignancy_threshold: float,
    in_lung: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(table column, highest p_malignant of a kept hit or NaN) for each truth sphere.

    ``kept`` marks the candidates the nodule classifier kept (p_nodule >= nodule threshold);
    ``in_lung`` (None: all) those whose centre lies in the lung mask.
    """
    truth_diameter_mm = np.asarray(truth_diameter_mm, dtype=np.float64).reshape(-1)
    hits = hit_matrix(cand_xyz, truth_xyz, truth_diameter_mm)  # candidates x truths
    cols = candidate_columns(kept, p_malignant, malignancy_threshold, in_lung)
    column = np.where(hits, cols[:, None], MISSED).max(axis=0, initial=MISSED)
    kept_hits = hits & (cols >= PREDICTED_BENIGN)[:, None]
    p_mal = np.asarray(p_malignant, dtype=np.float64)
    best = np.where(kept_hits, p_mal[:, None], -np.inf).max(axis=0, initial=-np.inf)
    return column.astype(np.int64), np.where(np.isinf(best), np.nan, best)


@dataclass(frozen=True)
class NoduleOutcome:
    """One benign/malignant annotation and what the cascade made of it."""

    series_uid: str
    center_xyz: tuple[float, float, float]
    diameter_mm: float
    is_malignant: bool
    column: int
    p_malignant: float  # highest among kept hits; NaN when no kept candidate hits it


@dataclass
class EndToEndTable:
    """Counts (rows ROWS x columns COLUMNS) summed over the evaluated scans."""

    non_nodule_radius_mm: float = DEFAULT_NON_NODULE_RADIUS_MM
    counts: np.ndarray = field(
        default_factory=lambda: np.zeros((len(ROWS), len(COLUMNS)), dtype=np.int64)
    )
    non_nodules_inside_annotations: int = 0
    nodules: list[NoduleOutcome] = field(default_factory=list)

    def add_non_nodules(self, columns: np.ndarray) -> None:
        self.counts[0] += np.bincount(columns, minlength=len(COLUMNS))

    def add_nodules(self, outcomes: Sequence[NoduleOutcome]) -> None:
        for o in outcomes:
            self.counts[2 if o.is_malignant else 1, o.column] += 1
        self.nodules.extend(outcomes)

    def as_rows(self) -> list[dict[str, int | str]]:
        return [
            {
                "truth": name,
                **dict(zip(COLUMNS, map(int, row), strict=True)),
                "total": int(sum(row)),
            }
            for name, row in zip(ROWS, self.counts, strict=True)
        ]

    def csv_text(self) -> str:
        out = io.StringIO()
        out.write(",".join(["truth", *COLUMNS, "total"]) + "\n")
        for row in self.as_rows():
            out.write(",".join(str(v) for v in row.values()) + "\n")
        return out.getvalue()

    def lines(self) -> list[str]:
        """The table as fixed-width text for the terminal."""
        width = max(len(t) for t in COLUMN_TITLES) + 2
        head = f"{'':12s}" + "".join(f"{t:>{width}s}" for t in COLUMN_TITLES) + f"{'total':>8s}"
        body = [
            f"{name:12s}" + "".join(f"{int(v):>{width}d}" for v in row) + f"{int(row.sum()):>8d}"
            for name, row in zip(ROWS, self.counts, strict=True)
        ]
        return [head, *body]


@dataclass(frozen=True)
class MalignancyResult:
    """Malignancy ROC over annotated nodules the cascade kept, beside the diameter baseline.

    ``auc`` scores each kept nodule by its highest kept hit's p_malignant; ``diameter_auc`` scores
    the same nodules by their annotated diameter; ``diameter_auc_all`` by diameter over every
    benign/malignant annotation of the evaluated scans (detected or not). None = one class only.
    """

    auc: float | None
    diameter_auc: float | None
    diameter_auc_all: float | None
    n_malignant: int
    n_benign: int
    n_all: int
    scores: np.ndarray
    diameters: np.ndarray
    positive: np.ndarray

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
        """(FPR, TPR) of the model and the diameter baseline, or None without both classes."""
        if self.auc is None:
            return None
        model = roc_curve(self.scores, self.positive)
        base = roc_curve(self.diameters, self.positive)
        return {"model": (model[0], model[1]), "diameter": (base[0], base[1])}


def malignancy_result(nodules: Sequence[NoduleOutcome]) -> MalignancyResult:
    detected = [n for n in nodules if not np.isnan(n.p_malignant)]
    scores = np.array([n.p_malignant for n in detected], dtype=np.float64)
    diameters = np.array([n.diameter_mm for n in detected], dtype=np.float64)
    positive = np.array([n.is_malignant for n in detected], dtype=bool)
    all_diam = np.array([n.diameter_mm for n in nodules], dtype=np.float64)
    all_pos = np.array([n.is_malignant for n in nodules], dtype=bool)
    return MalignancyResult(
        auc=roc_auc(scores, positive),
        diameter_auc=roc_auc(diameters, positive),
        diameter_auc_all=roc_auc(all_diam, all_pos),
        n_malignant=int(positive.sum()),
        n_benign=int((~positive).sum()),
        n_all=len(nodules),
        scores=scores,
        diameters=diameters,
        positive=positive,
    )
