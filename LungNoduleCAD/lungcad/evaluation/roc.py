"""ROC AUC (ties count half) and the ROC curve for plots.

AUC = U / (P N): scipy's Mann-Whitney U of the P positives against the N negatives, i.e. the
probability that a random positive scores above a random negative, a tie counting one half.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import mannwhitneyu


def _check(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    positive = np.asarray(positive).reshape(-1)
    if len(scores) != len(positive):
        raise ValueError(f"{len(scores)} scores but {len(positive)} labels")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    return scores, positive.astype(bool)


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC AUC of ``scores`` for the bool labels ``positive``; None without both classes."""
    scores, positive = _check(scores, positive)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # the p-value is not used: "asymptotic" spares the exact null distribution on small samples
    u = mannwhitneyu(scores[positive], scores[~positive], method="asymptotic").statistic
    return float(u) / (n_pos * n_neg)


def roc_curve(
    scores: np.ndarray, positive: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate, threshold) from (0, 0) at +inf to (1, 1).

    One point per distinct score, so ties give a diagonal step (the half-credit of the AUC).
    """
    scores, positive = _check(scores, positive)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a ROC curve needs positives and negatives")
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order]
    last = np.r_[s[1:] != s[:-1], True]
    tpr = np.r_[0.0, np.cumsum(p)[last] / n_pos]
    fpr = np.r_[0.0, np.cumsum(~p)[last] / n_neg]
    return fpr, tpr, np.r_[np.inf, s[last]]
