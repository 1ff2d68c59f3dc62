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

__all__ = ["ALGORITHM_NAME", "DECISION_SUPPORT", "MANUFACTURER", "Algorithm"]

ALGORITHM_NAME = "LungNoduleCAD"
MANUFACTURER = "LungNoduleCAD project"
#: What every report says about how to use the findings (the training data follow it).
DECISION_SUPPORT = (
    "Decision support only, not a diagnosis: a radiologist reviews every finding, and a scan "
    "without findings is not a scan without nodules."
)


@dataclass(frozen=True)
class Algorithm:
    """The cascade's identity: ``model_sha256`` maps task -> weights SHA-256 (64 hex digits);
    ``trained_on`` task -> what its model card says it was trained on (for the PDF)."""

    model_sha256: Mapping[str, str]
    version: str = __version__
    name: str = ALGORITHM_NAME
    trained_on: Mapping[str, str] = field(default_factory=dict)

    def training_statement(self) -> str:
        """What the models were trained on, from their cards (the text before its details)."""
        if not self.trained_on:
            return "Training data: see the model cards beside the weights."
        kinds = {
            task: text.split(" (")[0].split(":")[0].strip()
            for task, text in self.trained_on.items()
        }
        if len(set(kinds.values())) == 1:
            return f"The models were trained on {next(iter(kinds.values()))}."
        return "Trained on: " + "; ".join(f"{t}: {k}" for t, k in sorted(kinds.items())) + "."

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
