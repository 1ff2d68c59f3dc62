"""Balanced presentation of rare positives, as the seeds' ``ratio_int`` does it.

Nodules are a fraction of a percent of LUNA16's candidates; a classifier trained on the raw list
learns to say "no". With ``ratio`` r, every (r + 1)-th sample is a positive and the r between are
negatives, both lists cycled (and reshuffled each epoch by the dataset), so ratio 1 alternates.
"""

from __future__ import annotations


def balanced_pick(index: int, ratio: int, n_positive: int, n_negative: int) -> tuple[bool, int]:
    """(is_positive, position in that list) of sample ``index``; index 0 is a positive."""
    if ratio < 1:
        raise ValueError(f"ratio must be >= 1 to balance, got {ratio}")
    if n_positive < 1 or n_negative < 1:
        raise ValueError("balancing needs at least one positive and one negative")
    positive_index, remainder = divmod(index, ratio + 1)
    if remainder:
        return False, (index - 1 - positive_index) % n_negative
    return True, positive_index % n_positive
