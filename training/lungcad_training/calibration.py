"""Temperature scaling of a trained classifier on the validation split, folded into its weights.

A classifier trained on balanced crops is over-confident on the candidates detection hands it:
"0.9" does not mean nine in ten are nodules. Temperature scaling (Guo et al. 2017) fits one
number T on held-out candidates by maximum likelihood and divides the logits by it; ranking is
unchanged, probabilities become honest on that distribution. T is folded into the linear head
(weights and bias divided by T), so the exported model outputs calibrated probabilities and the
engine needs no change. The card records T, the expected calibration error (ECE) before and after,
and the reliability bins, with the split it was measured on.

Calibrate on the candidates detection produces (``lungcad-train mine``'s csv): the LUNA16-style
candidates.csv holds mostly easy negatives, whose calibration is not the one a user sees.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lungcad.models import CandidateClassifier
from lungcad_training.errors import TrainingError

log = logging.getLogger(__name__)

#: Equal-width probability bins of the reliability table and the ECE.
RELIABILITY_BINS = 10
#: Temperatures searched (log-uniform bounds): beyond them something else is wrong.
TEMPERATURE_BOUNDS = (0.05, 50.0)


@dataclass(frozen=True)
class Calibration:
    """The fitted temperature and how calibrated the outputs are before and after it."""

    temperature: float
    n: int
    positives: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    reliability_before: list[dict[str, float]]
    reliability_after: list[dict[str, float]]

    def card_entry(self, split: str) -> dict[str, Any]:
        """What the model card's ``calibration`` field holds."""
        return {
            "method": "temperature scaling (logits divided by T, folded into head_linear)",
            "split": split,
            "temperature": round(self.temperature, 6),
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
    z = margins / temperature
    # log(1 + exp(-z)) for positives, log(1 + exp(z)) for negatives, stably
    return float(np.mean(np.logaddexp(0.0, np.where(labels, -z, z))))


def fit_temperature(margins: np.ndarray, labels: np.ndarray) -> float:
    """The T minimising the NLL of sigmoid(margins / T) (bounded search over log T)."""
    margins = np.asarray(margins, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if len(margins) == 0 or labels.all() or not labels.any():
        raise TrainingError("calibration needs both positive and negative candidates")
    lo, hi = (math.log(b) for b in TEMPERATURE_BOUNDS)
    found = minimize_scalar(
        lambda log_t: _nll(margins, labels, math.exp(log_t)), bounds=(lo, hi), method="bounded"
    )
    return float(math.exp(found.x))


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
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": count,
                "mean_probability": round(mean_p, 6),
                "positive_share": round(share, 6),
            }
        )
    return float(ece), table


def calibrate(margins: np.ndarray, labels: np.ndarray) -> Calibration:
    """Fit T on (margin, label) pairs and measure ECE and NLL before and after."""
    labels = np.asarray(labels, dtype=bool)
    margins = np.asarray(margins, dtype=np.float64)
    temperature = fit_temperature(margins, labels)
    before = 1.0 / (1.0 + np.exp(-margins))
    after = 1.0 / (1.0 + np.exp(-margins / temperature))
    ece_before, table_before = reliability(before, labels)
    ece_after, table_after = reliability(after, labels)
    return Calibration(
        temperature=temperature,
        n=len(labels),
        positives=int(labels.sum()),
        nll_before=_nll(margins, labels, 1.0),
        nll_after=_nll(margins, labels, temperature),
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


def mined_items_only(dataset: Any, mined_csv: Path) -> None:
    """Keep only ``dataset``'s items that are rows of ``mined_csv`` (what detection proposes)."""
    import csv

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
