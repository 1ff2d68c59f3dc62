"""Checkpoint as a dataclass: the files it writes keep the old keys, and old files still load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lungcad_training.checkpoint import (
    Best,
    Checkpoint,
    load_checkpoint,
    rng_states,
    save_checkpoint,
)
from lungcad_training.errors import TrainingError

#: Every key the engine wrote into last.pt / best.pt before Checkpoint existed.
OLD_KEYS = {
    "architecture", "hyperparameters", "model_state", "optimizer_state", "scaler_state", "frozen",
    "task", "epoch", "metrics", "best", "args", "commands", "rng", "created", "training_seconds",
    "hardware", "data", "input_spec",
}  # fmt: skip


def old_style_state() -> dict:
    """A checkpoint dict exactly as the string-keyed engine built it."""
    net = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    return {
        "architecture": "Linear",
        "hyperparameters": {"in_features": 2},
        "model_state": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "optimizer_state": optimizer.state_dict(),
        "scaler_state": None,
        "frozen": [],
        "task": "nodule",
        "epoch": 3,
        "metrics": {"train": {"loss": 0.5}, "val": {"loss": 0.4, "f1": 0.7}},
        "best": {"epoch": 2, "score": [0.75, -0.3], "metrics": {"f1": 0.75}},
        "args": {"lr": 0.1},
        "commands": ["lungcad-train nodule"],
        "rng": rng_states(),
        "created": "2026-01-02T03:04:05+00:00",
        "training_seconds": 12.5,
        "hardware": {"device": "cpu"},
        "data": {"data_dir": "/data"},
        "input_spec": {"crop_mm": 40},
    }


def test_a_checkpoint_written_before_loads_with_every_field(tmp_path: Path) -> None:
    old = old_style_state()
    save_checkpoint(old, tmp_path / "last.pt")
    checkpoint = Checkpoint.load(tmp_path / "last.pt")
    assert checkpoint.epoch == 3 and checkpoint.task == "nodule"
    assert checkpoint.best == Best(2, [0.75, -0.3], {"f1": 0.75})
    assert checkpoint.commands == ["lungcad-train nodule"]
    assert checkpoint.training_seconds == 12.5
    assert checkpoint.input_spec == {"crop_mm": 40}
    for key, tensor in old["model_state"].items():
        assert torch.equal(checkpoint.model_state[key], tensor)


def test_a_saved_checkpoint_has_the_old_keys_and_round_trips(tmp_path: Path) -> None:
    checkpoint = Checkpoint.from_dict(old_style_state())
    checkpoint.save(tmp_path / "best.pt")
    raw = load_checkpoint(tmp_path / "best.pt")
    assert set(raw) == OLD_KEYS | {"format", "version"}
    assert raw["best"] == {"epoch": 2, "score": [0.75, -0.3], "metrics": {"f1": 0.75}}
    again = Checkpoint.load(tmp_path / "best.pt")
    assert again.best == checkpoint.best and again.metrics == checkpoint.metrics


def test_an_older_checkpoint_without_the_later_keys_gets_defaults(tmp_path: Path) -> None:
    old = old_style_state()
    for key in ("scaler_state", "frozen", "input_spec", "hardware", "data", "best"):
        del old[key]
    save_checkpoint(old, tmp_path / "last.pt")
    checkpoint = Checkpoint.load(tmp_path / "last.pt")
    assert checkpoint.scaler_state is None and checkpoint.frozen == []
    assert checkpoint.input_spec == {} and checkpoint.hardware == {} and checkpoint.data == {}
    assert checkpoint.best == Best(0, None, {})


def test_a_checkpoint_without_its_network_is_refused_naming_the_file(tmp_path: Path) -> None:
    old = old_style_state()
    del old["model_state"], old["optimizer_state"]
    save_checkpoint(old, tmp_path / "last.pt")
    with pytest.raises(
        TrainingError, match=r"last\.pt: checkpoint lacks model_state, optimizer_state"
    ):
        Checkpoint.load(tmp_path / "last.pt")


def test_best_improves_only_on_a_higher_score_tuple() -> None:
    assert Best().improved_by([0.1])
    best = Best(2, [0.5, -1.0], {})
    assert best.improved_by([0.5, -0.5]) and best.improved_by([0.6, -9.0])
    assert not best.improved_by([0.5, -1.0]) and not best.improved_by([0.4, 0.0])
