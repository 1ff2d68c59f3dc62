"""Temperature scaling: recovers a known temperature, folds it into the head exactly, and the
``calibrate`` command writes calibrated weights whose card records what it did."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lungcad.models import CandidateClassifier, load_weights, read_card
from lungcad.pipeline import BUNDLED_MODELS
from lungcad_training.calibration import (
    calibrate,
    fit_temperature,
    reliability,
    with_temperature,
)
from lungcad_training.cli import main
from lungcad_training.errors import TrainingError

CACHE_SPACING = (2.0, 2.0, 2.5)  # the session cache fixture's grid (conftest.py)


def _labels_at(margins: np.ndarray, temperature: float, seed: int = 0) -> np.ndarray:
    """Labels drawn so that sigmoid(margin / temperature) is the true probability."""
    p = 1.0 / (1.0 + np.exp(-margins / temperature))
    return np.random.default_rng(seed).random(len(margins)) < p


def test_fit_recovers_the_temperature_that_made_the_labels() -> None:
    margins = np.random.default_rng(1).normal(0.0, 8.0, 40_000)
    labels = _labels_at(margins, 3.0)
    assert fit_temperature(margins, labels) == pytest.approx(3.0, rel=0.05)
    found = calibrate(margins, labels)
    assert found.ece_after < 0.02 < found.ece_before
    assert found.nll_after < found.nll_before
    assert sum(b["count"] for b in found.reliability_after) == len(margins)


def test_reliability_of_exact_probabilities_has_no_calibration_error() -> None:
    p = np.array([0.05] * 20 + [0.55] * 20 + [0.95] * 20)
    y = np.array([1] + [0] * 19 + [1] * 11 + [0] * 9 + [1] * 19 + [0])
    ece, table = reliability(p, y.astype(bool))
    assert ece == pytest.approx(0.0, abs=1e-12)
    assert [(b["low"], b["count"]) for b in table] == [(0.0, 20), (0.5, 20), (0.9, 20)]


def test_one_class_cannot_be_calibrated() -> None:
    with pytest.raises(TrainingError, match="both positive and negative"):
        fit_temperature(np.array([1.0, 2.0]), np.array([True, True]))


def test_the_temperature_is_folded_into_the_head_exactly() -> None:
    torch.manual_seed(0)
    model = CandidateClassifier(input_shape=(16, 16, 16)).eval()
    x = torch.randn(3, 1, 16, 16, 16)
    scaled = with_temperature(model, 2.5).eval()
    with torch.no_grad():
        torch.testing.assert_close(scaled(x)[0], model(x)[0] / 2.5, rtol=1e-5, atol=1e-6)
    with pytest.raises(TrainingError, match="positive"):
        with_temperature(model, 0.0)


def test_calibrate_command_writes_calibrated_weights_and_card(
    small_dataset: Path, cache_dir: Path, tmp_path: Path, capsys
) -> None:
    # the set's candidates.csv stands in for a mined csv (same columns)
    mined = tmp_path / "mined.csv"
    shutil.copy(small_dataset / "candidates.csv", mined)
    with mined.open(newline="") as f:
        assert {r["class"] for r in csv.DictReader(f)} == {"0", "1"}
    out = tmp_path / "nodule.safetensors"
    args = ["calibrate", "--weights", str(BUNDLED_MODELS / "nodule.safetensors"),
            "--data", str(small_dataset), "--cache", str(cache_dir), "--mined", str(mined),
            "--val-stride", "2", "--spacing", *map(str, CACHE_SPACING), "--out", str(out),
            "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    assert "T = " in capsys.readouterr().out
    card = read_card(out)
    entry = card.calibration
    assert entry is not None and entry["temperature"] > 0
    assert entry["candidates"] == sum(b["count"] for b in entry["reliability_after"])
    model, _ = load_weights(out)
    source, _ = load_weights(BUNDLED_MODELS / "nodule.safetensors")
    t = entry["temperature"]
    torch.testing.assert_close(model.head_linear.bias, source.head_linear.bias / t)
    assert main(args) == 2  # exists: refused without --overwrite
