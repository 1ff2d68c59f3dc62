"""Export: checkpoint -> safetensors + model card that the engine loads, reproducibly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lungcad.models import Task, load_weights, read_card
from lungcad.preprocess import HU_WINDOW, spacing_policy
from lungcad_training.cache import prefill_cache
from lungcad_training.checkpoint import load_checkpoint
from lungcad_training.cli import main
from lungcad_training.config import TrainConfig
from lungcad_training.engine import fit
from lungcad_training.errors import TrainingError
from lungcad_training.export import export_checkpoint

SPACING = (2.0, 2.0, 2.5)
COMMAND = "lungcad-train nodule --data DATA --out OUT (export test)"


@pytest.fixture(scope="module")
def trained(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUT of a two-epoch nodule run."""
    out = tmp_path_factory.mktemp("export-run")
    prefill_cache(small_dataset, out / "cache", spacing_xyz=SPACING, progress=False)
    cfg = TrainConfig(
        task=Task.NODULE,
        data=small_dataset,
        out=out,
        epochs=2,
        epoch_length=16,
        batch_size=8,
        device="cpu",
        workers=0,
        val_stride=2,
        spacing=SPACING,
        crop_size=(16, 24, 24),
        progress=False,
        command=COMMAND,
    )
    fit(cfg)
    return out


def test_export_round_trips_bit_exactly(trained: Path, tmp_path: Path) -> None:
    checkpoint = trained / "nodule" / "best.pt"
    state = load_checkpoint(checkpoint)
    st_path, card_path = export_checkpoint(checkpoint, tmp_path / "nodule", task="nodule")
    assert st_path.name == "nodule.safetensors" and card_path.name == "nodule.json"

    model, card = load_weights(st_path, expected_task=Task.NODULE)
    exported = model.state_dict()
    assert exported.keys() == state["model_state"].keys()
    for key, tensor in state["model_state"].items():
        assert torch.equal(exported[key], tensor), key
    assert card.hyperparameters["input_shape"] == [16, 24, 24]

    expected = {k: v for k, v in state["metrics"]["val"].items() if v is not None}
    assert card.validation_metrics == pytest.approx(expected) and "f1" in card.validation_metrics
    assert card.command == COMMAND
    assert card.created == state["created"]
    assert card.input_spec["channels"] == 1
    assert card.input_spec["crop_size_irc"] == [16, 24, 24]
    assert card.input_spec["hu_window"] == list(HU_WINDOW)
    assert card.input_spec["spacing_policy"] == spacing_policy(SPACING)
    text = card.trained_on
    assert "seed 4" in text and "size small" in text and "4 cases" in text
    assert "2 training / 2 validation series" in text
    assert f"epoch {state['epoch']} of 2" in text and " s on 1 process on cpu" in text


def test_export_is_reproducible(trained: Path, tmp_path: Path) -> None:
    checkpoint = trained / "nodule" / "last.pt"
    a = export_checkpoint(checkpoint, tmp_path / "a" / "m")
    b = export_checkpoint(checkpoint, tmp_path / "b" / "m")
    for x, y in zip(a, b, strict=True):
        assert x.read_bytes() == y.read_bytes()
    with pytest.raises(FileExistsError):
        export_checkpoint(checkpoint, tmp_path / "a" / "m")
    export_checkpoint(checkpoint, tmp_path / "a" / "m", overwrite=True)


def test_export_checks_the_task(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="a nodule checkpoint"):
        export_checkpoint(trained / "nodule" / "best.pt", tmp_path / "m", task=Task.MALIGNANCY)


def test_export_cli(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli" / "nodule.safetensors"
    argv = ["export", "--checkpoint", str(trained / "nodule" / "best.pt"), "--task", "nodule"]
    assert main([*argv, "--out", str(out)]) == 0
    assert read_card(out).task is Task.NODULE
    assert main([*argv, "--out", str(out)]) == 2  # exists
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lungcad-train: error:") and "none.pt" in err[-1]


def test_export_states_the_training_range_of_the_data(trained: Path, tmp_path: Path) -> None:
    from lungcad_training.training_range import folder_range

    state = load_checkpoint(trained / "nodule" / "best.pt")
    _, card_path = export_checkpoint(trained / "nodule" / "best.pt", tmp_path / "nodule")
    assert read_card(card_path).training_range == folder_range(state["data"]["data_dir"])
