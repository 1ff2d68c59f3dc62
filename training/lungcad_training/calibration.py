"""Calibration of a trained classifier on the validation split, folded into its weights.

A classifier trained on balanced crops is not calibrated on what it scores in use: "0.9" does not
mean nine in ten are nodules. Two post-hoc fixes are fitted on held-out data by maximum likelihood
on the margin z = logit1 - logit0 (the 2-class softmax gives p = sigmoid(z)):

- temperature scaling (Guo et al. 2017): p = sigmoid(z / T). One number; ranking and the 0.5
  operating point are unchanged. It can only sharpen or soften, not move the scores, so it cannot
  fix a classifier that puts many negatives at 0.5-0.8 (the nodule classifier on mined candidates,
  whose positives are about 1 %).
- Platt scaling (Platt 1999): p = sigmoid(a z + b). The offset b also moves the scores to the
  base rate; ranking is unchanged (a > 0), the 0.5 operating point moves to z = -b / a.

Both fold into the linear head (logit0 -> a logit0, logit1 -> a logit1 + b; T is a = 1 / T, b = 0),
so the exported model's softmax gives the calibrated probability and the engine needs no change.
The card records the method, its parameters, the expected calibration error (ECE) and NLL before
and after, and the reliability bins, with the task and the split it was measured on.

The nodule classifier calibrates on the candidates detection produces (``lungcad-train mine``'s
csv): the LUNA16-style candidates.csv holds mostly easy negatives, whose calibration is not the
one a user sees. The malignancy classifier calibrates on the validation split's labelled nodules.
"""

from __future__ import annotations

import copy
import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lungcad.models import CandidateClassifier
from lungcad_training.errors import TrainingError

log = logging.getLogger(__name__)

Method = Literal["temperature", "platt"]
#: Calibration methods, the default first.
METHODS: tuple[Method, ...] = ("platt", "temperature")
DEFAULT_METHOD: Method = METHODS[0]
#: Equal-width probability bins of the reliability table and the ECE.
RELIABILITY_BINS = 10
#: Temperatures searched (log-uniform bounds): beyond them something else is wrong.
TEMPERATURE_BOUNDS = (0.05, 50.0)
#: Platt's slope a is kept within the temperature bounds' 1 / T (a > 0 keeps the ranking).
SLOPE_BOUNDS = (1.0 / TEMPERATURE_BOUNDS[1], 1.0 / TEMPERATURE_BOUNDS[0])
#: Platt's offset b: a base rate of 1e-13 is about -30; beyond it the fit has run away.
OFFSET_BOUNDS = (-30.0, 30.0)

_FORMULAS = {
    "temperature": "p = sigmoid((z1 - z0) / T) (logits divided by T, folded into head_linear)",
    "platt": "p = sigmoid(a (z1 - z0) + b) (head_linear: z0 -> a z0, z1 -> a z1 + b)",
}


@dataclass(frozen=True)
class Calibration:
    """The fitted map p = sigmoid(slope * margin + offset) and how calibrated the outputs are
    before and after it (temperature scaling: slope 1 / T, offset 0)."""

    method: Method
    slope: float
    offset: float
    n: int
    positives: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    reliability_before: list[dict[str, float]]
    reliability_after: list[dict[str, float]]

    @property
    def temperature(self) -> float:
        """1 / slope: the temperature (for Platt, the one its slope amounts to)."""
        return 1.0 / self.slope

    @property
    def p_at_uncalibrated_half(self) -> float:
        """The calibrated probability where the uncalibrated one was 0.5 (margin 0): thresholds
        chosen on uncalibrated scores move there (temperature scaling: 0.5, unmoved)."""
        return float(expit(self.offset))

    def summary(self) -> str:
        """The parameters in one short phrase, for the command's result line."""
        if self.method == "temperature":
            return f"T = {self.temperature:.3f}"
        return f"Platt a = {self.slope:.3f}, b = {self.offset:.3f}"

    def fold(self, model: CandidateClassifier) -> CandidateClassifier:
        """A copy of ``model`` whose softmax gives the calibrated probability."""
        if self.method == "temperature":
            return with_temperature(model, self.temperature)
        return with_platt(model, self.slope, self.offset)

    def card_entry(self, split: str, task: str) -> dict[str, Any]:
        """What the model card's ``calibration`` field holds."""
        # the parameters as folded, unrounded: with the source weights they give these weights
        parameters: dict[str, float] = {"a": self.slope, "b": self.offset}
        if self.method == "temperature":
            parameters = {"temperature": self.temperature, **parameters}
        return {
            "method": self.method,
            "formula": _FORMULAS[self.method],
            "task": task,
            "split": split,
            **parameters,
            "p_at_uncalibrated_0_5": round(self.p_at_uncalibrated_half, 6),
            "candidates": self.n,
            "positives": self.positives,
            "nll_before": round(self.nll_before, 6),
            "nll_after": round(self.nll_after, 6),
            "ece_before": round(self.ece_before, 6),
            "ece_after": round(self.ece_after, 6),
            "reliability_before": self.reliability_before,
            "reliability_after": self.reliability_after,
        }


def _nll(margins: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of sigmoid(margin / T) (margin = logit1 - logit0)."""
    return _affine_nll(margins, labels, 1.0 / temperature, 0.0)


def _affine_nll(margins: np.ndarray, labels: np.ndarray, slope: float, offset: float) -> float:
    """Mean negative log-likelihood of sigmoid(slope * margin + offset)."""
    z = slope * margins + offset
    # log(1 + exp(-z)) for positives, log(1 + exp(z)) for negatives, stably
    return float(np.mean(np.logaddexp(0.0, np.where(labels, -z, z))))


def _checked(margins: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    margins = np.asarray(margins, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if len(margins) == 0 or labels.all() or not labels.any():
        raise TrainingError("calibration needs both positive and negative candidates")
    return margins, labels


def fit_temperature(margins: np.ndarray, labels: np.ndarray) -> float:
    """The T minimising the NLL of sigmoid(margins / T) (bounded search over log T)."""
    margins, labels = _checked(margins, labels)
    lo, hi = (math.log(b) for b in TEMPERATURE_BOUNDS)
    found = minimize_scalar(
        lambda log_t: _nll(margins, labels, math.exp(log_t)), bounds=(lo, hi), method="bounded"
    )
    return float(math.exp(found.x))


def fit_platt(margins: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The (a, b) minimising the NLL of sigmoid(a * margins + b): a 1-D logistic regression,
    convex, solved with its exact gradient; a stays positive so the ranking is kept."""
    margins, labels = _checked(margins, labels)
    y = labels.astype(np.float64)

    def nll_and_gradient(ab: np.ndarray) -> tuple[float, np.ndarray]:
        residual = expit(ab[0] * margins + ab[1]) - y  # d NLL / d z per sample
        gradient = np.array([np.mean(residual * margins), np.mean(residual)])
        return _affine_nll(margins, labels, ab[0], ab[1]), gradient

    found = minimize(
        nll_and_gradient,
        x0=np.array([1.0, 0.0]),
        jac=True,
        method="L-BFGS-B",
        bounds=[SLOPE_BOUNDS, OFFSET_BOUNDS],
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 1000},
    )
    slope, offset = (float(v) for v in found.x)
    if not found.success:
        log.warning("Platt fit did not converge (%s); using a = %g, b = %g", found.message,
                    slope, offset)  # fmt: skip
    for name, value, (lo, hi) in (("a", slope, SLOPE_BOUNDS), ("b", offset, OFFSET_BOUNDS)):
        if math.isclose(value, lo) or math.isclose(value, hi):
            log.warning("Platt %s = %g is at its bound: the classes are (nearly) separable here; "
                        "calibrate on more data", name, value)  # fmt: skip
    return slope, offset


def reliability(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = RELIABILITY_BINS
) -> tuple[float, list[dict[str, float]]]:
    """(ECE, bins): per equal-width bin its range, count, mean probability and positive share;
    ECE = sum over bins of count share x |mean probability - positive share|."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        count = int(inside.sum())
        if count == 0:
            continue
        mean_p, share = float(p[inside].mean()), float(y[inside].mean())
        ece += count / len(p) * abs(mean_p - share)
        table.append(
            {
                "low": round(float(edges[b]), 6),
                "high": round(float(edges[b + 1]), 6),
                "count": count,
                "mean_probability": round(mean_p, 6),
                "positive_share": round(share, 6),
            }
        )
    return float(ece), table


def calibrate(
    margins: np.ndarray, labels: np.ndarray, method: Method = DEFAULT_METHOD
) -> Calibration:
    """Fit ``method`` on (margin, label) pairs and measure ECE and NLL before and after."""
    margins, labels = _checked(margins, labels)
    if method == "temperature":
        slope, offset = 1.0 / fit_temperature(margins, labels), 0.0
    elif method == "platt":
        slope, offset = fit_platt(margins, labels)
    else:
        raise TrainingError(f"unknown calibration method {method!r} (one of {', '.join(METHODS)})")
    ece_before, table_before = reliability(expit(margins), labels)
    ece_after, table_after = reliability(expit(slope * margins + offset), labels)
    return Calibration(
        method=method,
        slope=slope,
        offset=offset,
        n=len(labels),
        positives=int(labels.sum()),
        nll_before=_affine_nll(margins, labels, 1.0, 0.0),
        nll_after=_affine_nll(margins, labels, slope, offset),
        ece_before=ece_before,
        ece_after=ece_after,
        reliability_before=table_before,
        reliability_after=table_after,
    )


@torch.inference_mode()
def collect_margins(
    model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """(logit1 - logit0, label) over ``dataset`` (items (crop, label, ...)), in its order."""
    model = model.to(device).eval()
    margins, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        crops, label = batch[0].to(device), batch[1]
        logits, _ = model(crops.contiguous(memory_format=torch.channels_last_3d))
        margins.append((logits[:, 1] - logits[:, 0]).float().cpu().numpy())
        labels.append(label.numpy().astype(bool))
    if not margins:
        return np.zeros(0), np.zeros(0, dtype=bool)
    return np.concatenate(margins), np.concatenate(labels)


def with_temperature(model: CandidateClassifier, temperature: float) -> CandidateClassifier:
    """A copy whose head outputs logits / T (weights and bias divided by T)."""
    if not temperature > 0:
        raise TrainingError(f"temperature must be positive, got {temperature}")
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled.head_linear.weight.div_(temperature)
        scaled.head_linear.bias.div_(temperature)
    return scaled


def with_platt(model: CandidateClassifier, slope: float, offset: float) -> CandidateClassifier:
    """A copy whose head outputs (a logit0, a logit1 + b), so its softmax's class 1 is
    sigmoid(a (logit1 - logit0) + b): weights and bias times a, b added to class 1's bias."""
    if not slope > 0:
        raise TrainingError(f"Platt slope a must be positive (a ranking kept), got {slope}")
    if not math.isfinite(offset):
        raise TrainingError(f"Platt offset b must be finite, got {offset}")
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled.head_linear.weight.mul_(slope)
        scaled.head_linear.bias.mul_(slope)
        scaled.head_linear.bias[1] += offset
    return scaled


def mined_items_only(dataset: Any, mined_csv: Path) -> None:
    """Keep only ``dataset``'s items that are rows of ``mined_csv`` (what detection proposes)."""
    with mined_csv.open(newline="") as f:
        keys = {
            (row["seriesuid"], *(round(float(row[c]), 2) for c in ("coordX", "coordY", "coordZ")))
            for row in csv.DictReader(f)
        }
    dataset.items = [
        item
        for item in dataset.items
        if (item.series_uid, *(round(float(v), 2) for v in item.center_xyz)) in keys
    ]
