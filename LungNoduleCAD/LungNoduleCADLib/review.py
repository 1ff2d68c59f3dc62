"""The radiologist's review of the findings: a state per finding, and stepping through them.

Qt-free and scene-free: :mod:`LungNoduleCADLib.scene` shows the states (segment opacity, point
selection and label, the table's Review column) and the panel binds the buttons and shortcuts
named here. States are kept per finding *region*, not per number, because a threshold change
renumbers the findings (see :class:`ReviewBook`).
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass


class ReviewState(enum.Enum):
    """What the reader decided about one finding."""

    UNREVIEWED = "unreviewed"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class Step(enum.Enum):
    """Direction of the next/previous finding buttons."""

    NEXT = 1
    PREVIOUS = -1


#: The findings table's column holding the finding number (TABLE_COLUMNS starts there).
FINDING_COLUMN = 0

#: Keyboard shortcuts of the review buttons (Qt key sequences; Slicer's menus use Alt+F/E/V/H).
SHORTCUTS: dict[str, str] = {
    "nextFindingButton": "Alt+N",
    "previousFindingButton": "Alt+P",
    "acceptFindingButton": "Alt+A",
    "rejectFindingButton": "Alt+R",
}


@dataclass(frozen=True)
class Appearance:
    """How a finding looks for one review state.

    Markups have no per-point colour, so a point shows its state by being selected (band colour)
    or not (the list's grey unselected colour) and by a mark after its number.
    """

    segment_opacity: float
    point_selected: bool
    label_suffix: str


APPEARANCE: dict[ReviewState, Appearance] = {
    ReviewState.UNREVIEWED: Appearance(segment_opacity=1.0, point_selected=True, label_suffix=""),
    ReviewState.ACCEPTED: Appearance(segment_opacity=1.0, point_selected=True, label_suffix=" ✓"),
    ReviewState.REJECTED: Appearance(segment_opacity=0.2, point_selected=False, label_suffix=" ✗"),
}

#: Colour of rejected findings' points (the markups display's unselected colour).
REJECTED_POINT_COLOR = (0.55, 0.55, 0.55)


def point_label(number: int, state: ReviewState) -> str:
    return f"{number}{APPEARANCE[state].label_suffix}"


def step_row(current: int | None, count: int, step: Step) -> int | None:
    """The table row ``step`` leads to from ``current`` (None: nothing selected yet), wrapping
    around at either end; None when there are no rows."""
    if count <= 0:
        return None
    if current is None or not 0 <= current < count:
        return 0 if step is Step.NEXT else count - 1
    return (current + step.value) % count


def parse_finding_number(text: object) -> int | None:
    """The finding number in a table cell's text, or None for anything else (an empty cell, a
    header text, a stale view), so a click can never raise."""
    try:
        number = int(str(text).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


class ReviewBook:
    """Review states keyed by a finding's region identity (which survives refiltering)."""

    def __init__(self) -> None:
        self._states: dict[Hashable, ReviewState] = {}

    def state(self, key: Hashable) -> ReviewState:
        return self._states.get(key, ReviewState.UNREVIEWED)

    def set(self, key: Hashable, state: ReviewState) -> None:
        if state is ReviewState.UNREVIEWED:
            self._states.pop(key, None)
        else:
            self._states[key] = ReviewState(state)

    def by_number(self, keyed: Iterable[tuple[int, Hashable]]) -> dict[int, ReviewState]:
        """Finding number -> state for the findings shown now, given (number, key) pairs."""
        return {number: self.state(key) for number, key in keyed}


def export_review(states: Mapping[int, ReviewState]) -> dict[int, str]:
    """The plain mapping Export writes (finding number -> "unreviewed"/"accepted"/"rejected")."""
    return {int(number): ReviewState(state).value for number, state in sorted(states.items())}
