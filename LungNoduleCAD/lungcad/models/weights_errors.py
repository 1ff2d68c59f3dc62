"""The typed errors of weights and model cards; each message names the file and the problem."""

from __future__ import annotations

from pathlib import Path

from lungcad.errors import LungCADError


class WeightsError(LungCADError):
    """Weights or their model card could not be used; the message names the file and why."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """The weights file or its model card does not exist."""


class WeightsExistsError(WeightsError, FileExistsError):
    """Saving would overwrite an existing file and ``overwrite`` was not given."""


class WeightsChecksumError(WeightsError):
    """The tensors file's SHA-256 differs from the card's: damaged, truncated or swapped."""


class WeightsCardError(WeightsError):
    """The model card is not valid JSON or lacks / mistypes a field."""


class WeightsFormatError(WeightsError):
    """The tensors file (or an imported checkpoint) cannot be parsed."""


class WeightsArchitectureError(WeightsError):
    """Unknown architecture, bad hyperparameters, or tensors that do not fit the network."""


class WeightsTaskError(WeightsError):
    """The weights are for another task than the caller expected."""
