"""Temperature and Platt scaling: each recovers known parameters, folds into the head exactly,
and the ``calibrate`` command (nodule and malignancy) writes calibrated weights whose card
records what it did."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import expit

from lungcad.models import CandidateClassifier, Task, load_weights, read_card
from lungcad.pipeline import BUNDLED_MODELS
from lungcad_training.calibration import (
    DEFAULT_METHOD,
    calibrate,
    fit_platt,
    fit_temperature,
    reliability,
    with_platt,
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


def _platt_labels(margins: np.ndarray, a: float, b: float, seed: int = 0) -> np.ndarray:
    """Labels drawn so that sigmoid(a * margin + b) is the true probability."""
    return np.random.default_rng(seed).random(len(margins)) < expit(a * margins + b)


def test_platt_fit_recovers_the_slope_and_offset_that_made_the_labels() -> None:
    margins = np.random.default_rng(2).normal(1.0, 4.0, 40_000)
    labels = _platt_labels(margins, 0.6, -3.0)
    a, b = fit_platt(margins, labels)
    assert (a, b) == (pytest.approx(0.6, rel=0.05), pytest.approx(-3.0, abs=0.1))
    # the fit is the exact maximum of the likelihood: both gradient components vanish there
    residual = expit(a * margins + b) - labels
    assert np.mean(residual) == pytest.approx(0.0, abs=1e-7)
    assert np.mean(residual * margins) == pytest.approx(0.0, abs=1e-7)
    platt = calibrate(margins, labels, "platt")
    assert (platt.slope, platt.offset) == (a, b) and platt.ece_after < 0.02 < platt.ece_before
    # temperature scaling cannot move the scores to the base rate: it stays off
    temperature = calibrate(margins, labels, "temperature")
    assert temperature.offset == 0.0 and temperature.ece_after > 3 * platt.ece_after
    assert platt.nll_after < temperature.nll_after < temperature.nll_before


def test_platt_fit_on_temperature_labels_finds_no_offset() -> None:
    margins = np.random.default_rng(3).normal(0.0, 8.0, 40_000)
    a, b = fit_platt(margins, _labels_at(margins, 3.0))
    assert (a, b) == (pytest.approx(1 / 3.0, rel=0.05), pytest.approx(0.0, abs=0.1))


def test_platt_is_folded_into_the_head_exactly() -> None:
    torch.manual_seed(0)
    model = CandidateClassifier(input_shape=(16, 16, 16)).double().eval()
    x = torch.randn(5, 1, 16, 16, 16, dtype=torch.float64)
    a, b = 0.37, -2.9
    folded = with_platt(model, a, b).eval()
    with torch.no_grad():
        z, _ = model(x)
        logits, p = folded(x)
    torch.testing.assert_close(p[:, 1], torch.sigmoid(a * (z[:, 1] - z[:, 0]) + b),
                               rtol=1e-12, atol=1e-14)  # fmt: skip
    torch.testing.assert_close(logits, torch.stack([a * z[:, 0], a * z[:, 1] + b], 1))
    assert model.head_linear.bias.tolist() != folded.head_linear.bias.tolist()  # a copy
    with pytest.raises(TrainingError, match="positive"):
        with_platt(model, 0.0, 1.0)


def test_a_calibration_folds_with_its_own_method() -> None:
    torch.manual_seed(1)
    model = CandidateClassifier(input_shape=(16, 16, 16)).double().eval()
    x = torch.randn(3, 1, 16, 16, 16, dtype=torch.float64)
    margins = np.random.default_rng(4).normal(0.0, 4.0, 5_000)
    labels = _platt_labels(margins, 1.5, -1.0)
    for method in ("temperature", "platt"):
        found = calibrate(margins, labels, method)
        with torch.no_grad():
            z, _ = model(x)
            _, p = found.fold(model)(x)
        expected = expit(found.slope * (z[:, 1] - z[:, 0]).numpy() + found.offset)
        np.testing.assert_allclose(p[:, 1].numpy(), expected, rtol=1e-12)


def test_calibrate_command_writes_calibrated_weights_and_card(
    small_dataset: Path, cache_dir: Path, tmp_path: Path, capsys
) -> None:
    # the set's candidates.csv stands in for a mined csv (same columns); all its nodules and
    # a few hundred others keep the run short
    mined = tmp_path / "mined.csv"
    with (small_dataset / "candidates.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if r["class"] == "1"] + [r for r in rows if r["class"] == "0"][::4]
    with mined.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(keep)
    assert {r["class"] for r in keep} == {"0", "1"}
    out = tmp_path / "nodule.safetensors"
    args = ["calibrate", "--weights", str(BUNDLED_MODELS / "nodule.safetensors"),
            "--data", str(small_dataset), "--cache", str(cache_dir), "--mined", str(mined),
            "--val-stride", "2", "--spacing", *map(str, CACHE_SPACING), "--out", str(out),
            "--device", "cpu", "--method", "temperature"]  # fmt: skip
    assert main(args) == 0
    assert "T = " in capsys.readouterr().out
    card = read_card(out)
    entry = card.calibration
    assert entry is not None and entry["temperature"] > 0
    assert (entry["method"], entry["task"], entry["b"]) == ("temperature", "nodule", 0.0)
    assert entry["p_at_uncalibrated_0_5"] == 0.5
    assert entry["candidates"] == sum(b["count"] for b in entry["reliability_after"])
    model, _ = load_weights(out)
    source, _ = load_weights(BUNDLED_MODELS / "nodule.safetensors")
    t = entry["temperature"]
    torch.testing.assert_close(model.head_linear.bias, source.head_linear.bias / t)
    assert main(args) == 2  # exists: refused without --overwrite


def test_calibrate_malignancy_writes_a_card_that_loads_back(
    small_dataset: Path, cache_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "malignancy.safetensors"
    source_path = BUNDLED_MODELS / "malignancy.safetensors"
    args = ["calibrate", "--task", "malignancy", "--weights", str(source_path),
            "--data", str(small_dataset), "--cache", str(cache_dir), "--val-stride", "2",
            "--spacing", *map(str, CACHE_SPACING), "--out", str(out),
            "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    assert capsys.readouterr().out.startswith(f"malignancy, {DEFAULT_METHOD}: ")
    model, card = load_weights(out, Task.MALIGNANCY)
    entry = card.calibration
    assert entry is not None and (entry["task"], entry["method"]) == ("malignancy", "platt")
    assert "malignancy label" in entry["split"]
    assert 0 < entry["positives"] < entry["candidates"]
    assert entry["candidates"] == sum(b["count"] for b in entry["reliability_after"])
    assert entry["nll_after"] <= entry["nll_before"]
    source, _ = load_weights(source_path, Task.MALIGNANCY)
    a, b = entry["a"], entry["b"]
    # the card's a and b are the ones folded: the head is the source's, mapped with them
    assert torch.equal(model.head_linear.weight, source.head_linear.weight * a)
    expected = source.head_linear.bias * a
    expected[1] += b
    assert torch.equal(model.head_linear.bias, expected)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--task", "nodule"], "--task nodule needs --mined"),
        ([], "--task nodule needs --mined"),
        (["--task", "malignancy", "--mined", "mined.csv"], "--mined is for --task nodule only"),
    ],
)
def test_a_bad_task_and_mined_combination_is_one_clear_line(
    tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    out = tmp_path / "calibrated.safetensors"
    args = ["calibrate", "--weights", str(BUNDLED_MODELS / "nodule.safetensors"),
            "--data", str(tmp_path / "nowhere"), "--cache", str(tmp_path / "cache"),
            "--out", str(out), *extra]  # fmt: skip
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lungcad-train: error: ") and message in lines[0]
    assert not out.exists()


def test_weights_of_the_other_task_are_refused(tmp_path: Path, capsys) -> None:
    args = ["calibrate", "--task", "malignancy", "--weights",
            str(BUNDLED_MODELS / "nodule.safetensors"), "--data", str(tmp_path),
            "--cache", str(tmp_path), "--out", str(tmp_path / "x.safetensors")]  # fmt: skip
    assert main(args) == 2
    assert "expected malignancy" in capsys.readouterr().err
