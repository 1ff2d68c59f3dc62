"""LUNA16 FROC analysis and its competition performance metric (CPM).

The curve has one point per distinct probability t (highest first) plus (0, 0):
``FP/scan(t) = #false-positive candidates with p >= t / #scans`` and
``sensitivity(t) = #counted nodules whose best hit has p >= t / #counted nodules``.
Missed nodules stay in the denominator. This is what ``noduleCADEvaluationLUNA16.py`` builds with
``sklearn.metrics.roc_curve`` (rescaled by #negatives/#scans and #detected/#nodules); sklearn's
``drop_intermediate`` only removes collinear points, which linear interpolation does not see.

Sensitivity at a rate r is ``np.interp(r, FP/scan, sensitivity)`` on that curve: linear between
points and the last sensitivity past the curve's end. CPM is the mean over the seven rates
1/8 ... 8. (The official script reads its interpolated curve on a 10001-point linspace grid and
truncates the index, so it samples just below 1/4, 1/2, 1, 2 and 4; the difference is at most
one grid step, 0.0008 FP/scan, of the curve. Here the rates are used exactly.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lungcad.evaluation.matching import ScanMatch, Status

logger = logging.getLogger(__name__)

FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
SIZE_BINS_MM: tuple[tuple[float, float], ...] = (
    (0.0, 5.0),
    (5.0, 10.0),
    (10.0, 20.0),
    (20.0, np.inf),
)


@dataclass(frozen=True, eq=False)
class FrocCurve:
    """FROC points in order of falling threshold: FP/scan and sensitivity never decrease.

    ``thresholds[0]`` is +inf (nothing called positive); ``thresholds[k]`` is the probability at
    or above which point k's candidates count.
    """

    fps_per_scan: np.ndarray
    sensitivity: np.ndarray
    thresholds: np.ndarray

    def sensitivity_at(self, rates: Sequence[float] = FP_RATES) -> np.ndarray:
        return np.interp(np.asarray(rates, dtype=np.float64), self.fps_per_scan, self.sensitivity)

    def threshold_at(self, rate: float) -> float:
        """The lowest probability threshold whose FP/scan does not exceed ``rate``."""
        ok = np.flatnonzero(self.fps_per_scan <= rate)
        return float(self.thresholds[ok[-1]])


def froc_curve(
    tp_probs: np.ndarray, fp_probs: np.ndarray, n_nodules: int, n_scans: int
) -> FrocCurve:
    """The FROC curve from detected nodules' best probabilities and false positives' ones.

    Sensitivities are NaN when there is no counted nodule (nothing to find).
    """
    if n_scans < 1:
        raise ValueError("a FROC curve needs at least one scan")
    tp_probs = np.asarray(tp_probs, dtype=np.float64).reshape(-1)
    fp_probs = np.asarray(fp_probs, dtype=np.float64).reshape(-1)
    if len(tp_probs) > n_nodules:
        raise ValueError(f"{len(tp_probs)} detected nodules but only {n_nodules} nodules")
    scores = np.concatenate([tp_probs, fp_probs])
    is_tp = np.concatenate([np.ones(len(tp_probs)), np.zeros(len(fp_probs))])
    order = np.argsort(-scores, kind="stable")
    scores, is_tp = scores[order], is_tp[order]
    last = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, dtype=bool)
    tps = np.r_[0.0, np.cumsum(is_tp)[last]]
    fps = np.r_[0.0, np.cumsum(1.0 - is_tp)[last]]
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = tps / n_nodules if n_nodules else np.full(len(tps), np.nan)
    return FrocCurve(fps / n_scans, sens, np.r_[np.inf, scores[last]])


@dataclass(frozen=True, eq=False)
class FrocResult:
    """The FROC analysis of a set of scans.

    ``ci_low``/``ci_high`` (per rate, then CPM as the last entry) come from bootstrapping scans,
    as LUNA16 does; None without bootstrap.
    """

    curve: FrocCurve
    rates: tuple[float, ...]
    sensitivities: np.ndarray
    cpm: float
    n_scans: int
    n_nodules: int
    n_detected: int
    n_candidates: int
    n_false_positives: int
    n_ignored: int
    n_over_cap: int
    n_duplicates: int
    ci_low: np.ndarray | None = None
    ci_high: np.ndarray | None = None
    bootstrap_samples: int = 0


def _pooled(matches: Sequence[ScanMatch]) -> tuple[np.ndarray, np.ndarray, int]:
    tp = np.concatenate([m.tp_probs for m in matches]) if matches else np.zeros(0)
    fp = np.concatenate([m.fp_probs for m in matches]) if matches else np.zeros(0)
    return tp, fp, sum(m.n_nodules for m in matches)


def _sens_cpm(
    matches: Sequence[ScanMatch], rates: Sequence[float]
) -> tuple[FrocCurve, np.ndarray, float]:
    tp, fp, n_nodules = _pooled(matches)
    curve = froc_curve(tp, fp, n_nodules, len(matches))
    sens = curve.sensitivity_at(rates)
    return curve, sens, float(np.mean(sens))


def bootstrap_ci(
    matches: Sequence[ScanMatch],
    rates: Sequence[float] = FP_RATES,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of sensitivity at each rate and of CPM (last entry) over scan resamples.

    Scans are drawn with replacement (LUNA16's bootstrap); the bounds are the sorted samples at
    ``floor(p * n)`` for p = (1 - confidence) / 2 and 1 - p, as the official script picks them.
    A sample without any nodule has no sensitivity and is skipped.
    """
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        pick = rng.integers(0, len(matches), size=len(matches))
        drawn = [matches[i] for i in pick]
        if sum(m.n_nodules for m in drawn) == 0:
            continue
        _, sens, cpm = _sens_cpm(drawn, rates)
        values.append(np.r_[sens, cpm])
    if not values:
        nan = np.full(len(rates) + 1, np.nan)
        return nan, nan.copy()
    table = np.sort(np.asarray(values), axis=0)
    p = (1.0 - confidence) / 2.0
    n = len(table)
    low = table[int(np.floor(p * n))]
    high = table[min(int(np.floor((1.0 - p) * n)), n - 1)]
    return low, high


def evaluate_froc(
    matches: Sequence[ScanMatch],
    rates: Sequence[float] = FP_RATES,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> FrocResult:
    """FROC curve, sensitivities at ``rates``, CPM and counts over the matched scans."""
    if not matches:
        raise ValueError("FROC needs at least one scan")
    curve, sens, cpm = _sens_cpm(matches, rates)
    statuses = np.concatenate([m.status for m in matches])
    ci_low = ci_high = None
    if bootstrap > 0:
        ci_low, ci_high = bootstrap_ci(matches, rates, bootstrap, confidence, seed)
    return FrocResult(
        curve=curve,
        rates=tuple(float(r) for r in rates),
        sensitivities=sens,
        cpm=cpm,
        n_scans=len(matches),
        n_nodules=sum(m.n_nodules for m in matches),
        n_detected=sum(len(m.tp_probs) for m in matches),
        n_candidates=len(statuses),
        n_false_positives=int((statuses == Status.FALSE_POSITIVE).sum()),
        n_ignored=int((statuses == Status.IGNORED).sum()),
        n_over_cap=int((statuses == Status.OVER_CAP).sum()),
        n_duplicates=sum(m.n_duplicates for m in matches),
        ci_low=ci_low,
        ci_high=ci_high,
        bootstrap_samples=bootstrap,
    )


@dataclass(frozen=True)
class SizeSensitivity:
    """Sensitivity of the nodules in one diameter range at a fixed probability threshold."""

    label: str
    low_mm: float
    high_mm: float
    nodules: int
    detected: int

    @property
    def sensitivity(self) -> float | None:
        return self.detected / self.nodules if self.nodules else None


def sensitivity_by_size(
    matches: Sequence[ScanMatch],
    threshold: float,
    bins: Sequence[tuple[float, float]] = SIZE_BINS_MM,
) -> list[SizeSensitivity]:
    """Per diameter range, how many counted nodules have a hit with probability >= threshold.

    A real operating point (the threshold where FP/scan first reaches the rate), so the overall
    figure can sit a little below the interpolated sensitivity at that rate. The last row is all
    nodules of 5 mm or more.
    """
    diam = np.concatenate([m.nodule_diameter_mm for m in matches]) if matches else np.zeros(0)
    prob = np.concatenate([m.nodule_prob for m in matches]) if matches else np.zeros(0)
    hit = np.nan_to_num(prob, nan=-np.inf) >= threshold
    rows = []
    for low, high in [*bins, (5.0, np.inf)]:
        inside = (diam >= low) & (diam < high)
        label = f">={low:g} mm" if np.isinf(high) else f"{low:g}-{high:g} mm"
        if (low, high) == (5.0, np.inf):
            label = ">=5 mm (all)"
        rows.append(SizeSensitivity(label, low, high, int(inside.sum()), int((inside & hit).sum())))
    return rows
