"""Who made the DICOM outputs: the algorithm's name, version and the weights it ran with.

The SEG's segments, the SR's measurements and the PDF all name the same :class:`Algorithm`, so a
reader can tell which weights produced a finding (model SHA-256s, not just a version string).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import highdicom as hd
from pydicom.sr.codedict import codes

from lungcad import __version__

__all__ = ["ALGORITHM_NAME", "MANUFACTURER", "Algorithm"]

ALGORITHM_NAME = "LungNoduleCAD"
MANUFACTURER = "LungNoduleCAD project"
#: What every report says about how to use the findings.
DECISION_SUPPORT = (
    "Decision support only, not a diagnosis: every finding must be reviewed by a radiologist. "
    "The models were trained on synthetic chest CT phantoms, not on patient scans."
)


@dataclass(frozen=True)
class Algorithm:
    """The cascade's identity: ``model_sha256`` maps task -> weights SHA-256 (64 hex digits);
    ``trained_on`` task -> what its model card says it was trained on (for the PDF)."""

    model_sha256: Mapping[str, str]
    version: str = __version__
    name: str = ALGORITHM_NAME
    trained_on: Mapping[str, str] = field(default_factory=dict)

    def parameters(self) -> dict[str, str]:
        """Algorithm Parameters of the SEG and SR: one '<task>_sha256' entry per model."""
        return {f"{task}_sha256": sha for task, sha in sorted(self.model_sha256.items())}

    def segmentation_identification(self) -> hd.AlgorithmIdentificationSequence:
        return hd.AlgorithmIdentificationSequence(
            name=self.name,
            family=codes.DCM.ArtificialIntelligence,
            version=self.version,
            parameters=self.parameters(),
        )

    def sr_identification(self) -> hd.sr.AlgorithmIdentification:
        return hd.sr.AlgorithmIdentification(
            name=self.name, version=self.version, parameters=self._sr_parameters()
        )

    def _sr_parameters(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.parameters().items()]
