"""Per-epoch metrics: running sums on the device, reduced across DDP ranks, then summarised.

Sums stay on the device (no host sync per step); score lists for the AUC are gathered once at
the end. Definitions (counts over the whole epoch, never averaged per batch):

- ``loss``: mean per-sample loss.
- ``precision`` = TP / (TP + FP), 0 when nothing is predicted positive; ``recall`` = TP /
  (TP + FN), None without positives; ``f1`` their harmonic mean (0 when both are 0).
  Classifiers count samples (positive when p(class 1) >= 0.5); segmentation counts pixels
  (positive when the probability >= 0.5).
- ``recall_5mm`` (segmentation): recall over the label pixels of nodules whose annotated
  diameter is at least 5 mm.
- ``auc`` / ``diameter_auc`` (malignancy): ROC AUC of p_malignant, and of the annotated diameter
  alone, over the same validation nodules (None when they are all benign or all malignant).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from lungcad.evaluation.roc import roc_auc

Metrics = dict[str, float | None]

_LOSS, _SAMPLES, _TP, _FP, _FN, _TN, _BIG_HIT, _BIG_TOTAL = range(8)


class Tally:
    """Running sums of one phase of one epoch, on one rank."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(8, dtype=torch.float64, device=device)
        self.scores: list[float] = []
        self.labels: list[int] = []
        self.diameters: list[float] = []

    def add_loss(self, per_sample: torch.Tensor) -> None:
        self.sums[_LOSS] += per_sample.detach().double().sum()
        self.sums[_SAMPLES] += per_sample.numel()

    def add_binary(self, predicted: torch.Tensor, truth: torch.Tensor) -> None:
        """Count a boolean prediction against boolean truth (any matching shapes)."""
        predicted, truth = predicted.detach().bool(), truth.detach().bool()
        self.sums[_TP] += (predicted & truth).sum()
        self.sums[_FP] += (predicted & ~truth).sum()
        self.sums[_FN] += (~predicted & truth).sum()
        self.sums[_TN] += (~predicted & ~truth).sum()

    def add_big_nodules(self, predicted: torch.Tensor, big: torch.Tensor) -> None:
        """Count label pixels of >= 5 mm nodules (``big``) and how many were predicted."""
        big = big.detach().bool()
        self.sums[_BIG_HIT] += (predicted.detach().bool() & big).sum()
        self.sums[_BIG_TOTAL] += big.sum()

    def add_scores(
        self, scores: torch.Tensor, labels: torch.Tensor, diameters: torch.Tensor
    ) -> None:
        self.scores += scores.detach().float().cpu().tolist()
        self.labels += labels.detach().cpu().int().tolist()
        self.diameters += diameters.detach().float().cpu().tolist()

    @property
    def samples(self) -> int:
        """How many samples the loss was tallied over."""
        return int(self.sums[_SAMPLES].item())

    def reduce(
        self,
        all_reduce: Callable[[torch.Tensor], None] | None = None,
        gather: Callable[[object], list] | None = None,
    ) -> Tally:
        """Combine every rank's tally in place (no-op in a single process); returns self."""
        if all_reduce is not None:
            all_reduce(self.sums)
        if gather is not None:
            parts = gather((self.scores, self.labels, self.diameters))
            self.scores = [s for part in parts for s in part[0]]
            self.labels = [s for part in parts for s in part[1]]
            self.diameters = [s for part in parts for s in part[2]]
        return self

    def summary(self, extras: tuple[str, ...] = ()) -> Metrics:
        """Loss, precision, recall, f1 and the requested extras (see the module docstring)."""
        s = self.sums.cpu().tolist()
        tp, fp, fn = s[_TP], s[_FP], s[_FN]
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else None
        f1 = None
        if recall is not None:
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out: Metrics = {
            "loss": s[_LOSS] / s[_SAMPLES] if s[_SAMPLES] else None,
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }
        if "recall_5mm" in extras:
            out["recall_5mm"] = s[_BIG_HIT] / s[_BIG_TOTAL] if s[_BIG_TOTAL] else None
        if "auc" in extras or "diameter_auc" in extras:
            positive = np.asarray(self.labels, dtype=bool)
            out["auc"] = roc_auc(np.asarray(self.scores, dtype=np.float64), positive)
            out["diameter_auc"] = roc_auc(np.asarray(self.diameters, dtype=np.float64), positive)
        return out
