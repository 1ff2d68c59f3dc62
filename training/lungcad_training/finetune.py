"""Fine-tuning the malignancy classifier from a trained nodule classifier, as the seeds do.

The network is built afresh with the nodule model's hyperparameters; every tensor except the
last block's (the linear head) is copied, so the head starts from a new initialisation. Only the
last ``depth`` blocks that hold parameters are trained (``depth`` 1: the head; 2: the head and
the last conv block); the rest is frozen: its parameters get no gradient and, unlike in the
seeds, its batch norm stays in eval mode, so the frozen feature extractor is exactly the nodule
model's.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from lungcad.models import CandidateClassifier, Task
from lungcad_training.checkpoint import load_trained_model
from lungcad_training.errors import TrainingError

log = logging.getLogger(__name__)


def load_nodule_classifier(
    path: str | Path, purpose: str = "fine-tuning needs a nodule classifier"
) -> nn.Module:
    """A nodule classifier from a training checkpoint (``.pt``) or exported ``.safetensors``."""
    return load_trained_model(path, Task.NODULE, purpose)


def parameter_blocks(model: nn.Module) -> list[str]:
    """Names of the top-level children that hold parameters, in order (the seeds' blocks)."""
    return [name for name, child in model.named_children() if any(True for _ in child.parameters())]


def finetune_model(source: nn.Module, depth: int) -> tuple[CandidateClassifier, list[str]]:
    """A new classifier with ``source``'s weights (head re-initialised) and all but the last
    ``depth`` blocks frozen; returns it and the frozen block names."""
    if not isinstance(source, CandidateClassifier):
        raise TrainingError(f"cannot fine-tune a {type(source).__name__}")
    model = CandidateClassifier(**source.hyperparameters)
    blocks = parameter_blocks(model)
    if not 1 <= depth <= len(blocks):
        raise TrainingError(
            f"--finetune-depth must be between 1 and {len(blocks)} ({', '.join(blocks)})"
        )
    head = blocks[-1]
    state = {k: v for k, v in source.state_dict().items() if k.split(".")[0] != head}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(k.split(".")[0] != head for k in missing):
        raise TrainingError(
            f"the nodule model does not fit: missing {missing}, unexpected {unexpected}"
        )
    trained = blocks[-depth:]
    frozen = [name for name in blocks if name not in trained]
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.split(".")[0] in trained)
    log.info("fine-tuning %s; frozen: %s", ", ".join(trained), ", ".join(frozen) or "nothing")
    return model, frozen
