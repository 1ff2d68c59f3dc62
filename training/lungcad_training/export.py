"""Checkpoint -> safetensors + model card, the form the engine and the Slicer module load.

The card's ``created`` is the checkpoint's save time, not the clock at export, so exporting the
same checkpoint twice gives byte-identical files. Training time and hardware go into the
``trained_on`` text (provenance), next to the data the model saw; ``input_spec`` keeps to what a
caller must feed the network.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lungcad.models import ModelCard, Task, save_weights
from lungcad_training.checkpoint import model_from_checkpoint
from lungcad_training.runtime import hardware_text
from lungcad_training.training_range import range_for_data

log = logging.getLogger(__name__)


def _join_counts(data: dict[str, Any]) -> str:
    return (
        f"{data.get('train_series', '?')} training / {data.get('val_series', '?')} validation "
        f"series (validation stride {data.get('val_stride', '?')} over the sorted series UIDs)"
    )


def trained_on_text(state: dict[str, Any]) -> str:
    """Data, split, epochs and hardware in one paragraph."""
    data = state.get("data", {})
    phantom = data.get("phantom")
    if phantom:
        source = (
            f"synthetic chest phantoms (lungcad phantom: seed {phantom.get('seed')}, size "
            f"{phantom.get('size')}, {phantom.get('cases')} cases)"
        )
    else:
        source = "LUNA16-layout data"
    args = state.get("args", {})
    spacing = "x".join(f"{s:g}" for s in args.get("spacing", []))
    best = state.get("best", {})
    hardware = state.get("hardware", {})
    return (
        f"{source} at {data.get('data_dir', '?')}: {_join_counts(data)}, canonical spacing "
        f"{spacing} mm. Training: epoch {state.get('epoch')} of {args.get('epochs')} (best by "
        f"validation {_selection(state.get('task'))}: epoch {best.get('epoch')}), "
        f"{args.get('epoch_length')} samples per epoch, batch {args.get('batch_size')}, "
        f"{args.get('optimizer')} lr {args.get('lr')}, {state.get('training_seconds', 0):.0f} s "
        f"on {hardware_text(hardware)}."
        + (f" Fine-tuned from {args.get('finetune')}." if args.get("finetune") else "")
        + (f" Started from the weights of {args.get('init')}." if args.get("init") else "")
        + (_domain_text(state.get("task")) if args.get("domain_randomization") else "")
        + (
            f" Candidates: candidates.csv and {args.get('extra_candidates')}."
            if args.get("extra_candidates")
            else ""
        )
    )


def _domain_text(task: str | None) -> str:
    """The UNet's slices thicken over its context-slice channels, a classifier's over its crop."""
    where = " (averaged over the context slices)" if task == "segmentation" else ""
    return f" Domain randomisation: slice thickness{where}, kernel, HU calibration and noise."


def _selection(task: str | None) -> str:
    return {"segmentation": "pixel recall, then F1", "nodule": "F1", "malignancy": "ROC AUC"}.get(
        task or "", "?"
    )


def card_from_checkpoint(state: dict[str, Any]) -> ModelCard:
    """The model card of the checkpoint's model (metrics: its own validation epoch).

    Its training range is measured on the training data (:mod:`lungcad_training.training_range`).
    """
    metrics = state.get("metrics", {}).get("val", {})
    return ModelCard(
        task=Task(state["task"]),
        trained_on=trained_on_text(state),
        command=" ; then resumed with: ".join(state.get("commands", [])),
        created=state["created"],
        architecture=state["architecture"],
        hyperparameters=dict(state["hyperparameters"]),
        input_spec=dict(state.get("input_spec", {})),
        validation_metrics={k: float(v) for k, v in metrics.items() if v is not None},
        training_range=range_for_data(state.get("data", {})),
    )


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    task: Task | str | None = None,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write ``out`` (.safetensors + .json) from a training checkpoint; returns both paths."""
    checkpoint = Path(checkpoint)
    expected = Task(task) if task is not None else None
    purpose = f"--task {expected.value}" if expected else ""
    model, state = model_from_checkpoint(checkpoint, expected, purpose)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = save_weights(model, card_from_checkpoint(state), out, overwrite=overwrite)
    log.info("exported %s (epoch %s) to %s", checkpoint, state.get("epoch"), paths[0])
    return paths
