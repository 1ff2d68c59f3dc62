"""What a nodule looks like: its type (attenuation) and margin.

One vocabulary for the phantoms' ground truth, the type classifier (issue 16 item 1) and the
Lung-RADS category (:mod:`lungcad.lungrads`). Where a value was not measured, its source says how
it was filled in, so a reader never mistakes an assumption for a finding.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class NoduleType(enum.Enum):
    SOLID = "solid"
    PART_SOLID = "part-solid"
    GROUND_GLASS = "ground-glass"
    CALCIFIED = "calcified"


class NoduleMargin(enum.Enum):
    ROUND = "round"
    LOBULATED = "lobulated"
    SPICULATED = "spiculated"


class TypeSource(enum.Enum):
    """Where a finding's type came from; the engine has no type classifier yet."""

    GIVEN = "given"
    ASSUMED_SOLID = "assumed solid"


class MarginSource(enum.Enum):
    """Where a finding's margin came from; unknown margins count as not spiculated."""

    GIVEN = "given"
    ASSUMED_NOT_SPICULATED = "assumed not spiculated"


@dataclass(frozen=True)
class Characteristics:
    """A finding's type and margin where someone (a reader, later a classifier) gave them;
    None where unknown."""

    nodule_type: NoduleType | None = None
    margin: NoduleMargin | None = None
