"""Argument types for the command lines: a bad value is an argparse error, never a traceback.

Each returns a function for ``add_argument(type=...)`` that raises
``argparse.ArgumentTypeError`` with the allowed range, so ``--threads -3`` or
``--min-diameter-mm nan`` stop at once with usage and exit status 2, before any work.
"""

from __future__ import annotations

import argparse
import enum
import math
from collections.abc import Callable
from typing import TypeVar

E = TypeVar("E", bound=enum.Enum)


def bounded_int(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An integer in [lo, hi] (no upper bound when ``hi`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            span = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"must be an integer {span}, got {value}")
        return value

    return parse


def bounded_float(
    lo: float, hi: float = math.inf, *, lo_open: bool = False
) -> Callable[[str], float]:
    """A finite number in [lo, hi], or (lo, hi] with ``lo_open``; NaN and infinities refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        above = value > lo if lo_open else value >= lo
        if not (math.isfinite(value) and above and value <= hi):
            left = "(" if lo_open else "["
            right = f"{hi:g}]" if math.isfinite(hi) else "inf)"
            raise argparse.ArgumentTypeError(
                f"must be a finite number in {left}{lo:g}, {right}, got {text}"
            )
        return value

    return parse


def choice_of(kind: type[E]) -> Callable[[str], E]:
    """A member of the enum ``kind``, by its value; the error reads as argparse's own for
    ``choices`` (``invalid choice: 'x' (choose from a, b)``)."""

    def parse(text: str) -> E:
        try:
            return kind(text)
        except ValueError:
            known = ", ".join(str(m.value) for m in kind)
            raise argparse.ArgumentTypeError(
                f"invalid choice: {text!r} (choose from {known})"
            ) from None

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


#: A threshold: a probability in [0, 1].
probability = bounded_float(0.0, 1.0)
#: The segmentation threshold: (0, 1], as the detector groups the map at or above it.
segmentation_probability = bounded_float(0.0, 1.0, lo_open=True)
