"""Train/validation split by series (patient), never by candidate.

Candidates of one scan are strongly correlated; splitting them across halves would let the
validation score measure memorisation of a patient rather than generalisation.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Protocol, TypeVar


class HasSeriesUID(Protocol):
    @property
    def series_uid(self) -> str: ...


T = TypeVar("T", bound=HasSeriesUID)


def _check_stride(val_stride: int) -> None:
    if (
        isinstance(val_stride, bool)
        or not isinstance(val_stride, numbers.Integral)
        or val_stride < 2
    ):
        raise ValueError(
            f"val_stride must be an integer >= 2 (1 would put every series in validation), "
            f"got {val_stride!r}"
        )


def validation_series(series_uids: Iterable[str], val_stride: int) -> set[str]:
    """Validation UIDs: in sorted order, those with index % val_stride == 0."""
    _check_stride(val_stride)
    return set(sorted(set(series_uids))[::val_stride])


def split_by_series(items: Iterable[T], val_stride: int, is_validation: bool) -> list[T]:
    """The validation (or training) half of ``items``, keeping their order.

    Works for any objects with a ``series_uid`` attribute. The split depends only on the set of
    UIDs present, so two lists over the same series split the same way.
    """
    _check_stride(val_stride)
    items = list(items)
    try:
        uids = [item.series_uid for item in items]
    except AttributeError as exc:
        raise TypeError(f"split_by_series needs items with a series_uid attribute: {exc}") from exc
    val = validation_series(uids, val_stride)
    return [item for item, uid in zip(items, uids, strict=True) if (uid in val) == is_validation]
