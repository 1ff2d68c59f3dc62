"""ROC AUC by ranks (ties count half) and the ROC curve for plots.

AUC = (sum of the positives' average ranks - P (P + 1) / 2) / (P N): the Mann-Whitney U over
P positives and N negatives, i.e. the probability that a random positive scores above a random
negative, a tie counting one half.
"""

from __future__ import annotations

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]] if len(values) else []
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    counts = np.diff(np.r_[first, len(values)])
    mean_rank = first + (counts + 1) / 2.0  # 1-based mean of first+1 .. first+count
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


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
    rank_sum = float(average_ranks(scores)[positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


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
