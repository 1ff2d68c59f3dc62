"""The seeds' losses: Dice + 8 x false-negative Dice for segmentation, cross-entropy otherwise.

Nodules are a tiny fraction of a slice, so plain Dice is happy to miss the edges of a nodule; the
false-negative term (Dice of the prediction restricted to the label, against the label) only
rewards covering label pixels, and weighting it 8x makes the network prefer recall, which the
later classifier stage can trade back for precision.
"""

from __future__ import annotations

import torch
from torch.nn import functional

FALSE_NEGATIVE_WEIGHT = 8.0


def dice_loss(prediction: torch.Tensor, label: torch.Tensor, epsilon: float = 1.0) -> torch.Tensor:
    """Per-sample soft Dice loss (N,) for (N, ...) probabilities and binary labels.

    ``epsilon`` keeps empty-label, empty-prediction samples at loss 0 instead of 0/0.
    """
    dims = tuple(range(1, prediction.ndim))
    correct = (prediction * label).sum(dim=dims)
    ratio = (2 * correct + epsilon) / (prediction.sum(dim=dims) + label.sum(dim=dims) + epsilon)
    return 1 - ratio


def segmentation_loss(
    prediction: torch.Tensor, label: torch.Tensor, fn_weight: float = FALSE_NEGATIVE_WEIGHT
) -> torch.Tensor:
    """Per-sample Dice loss plus ``fn_weight`` x the false-negative Dice loss, shape (N,).

    Computed in float32 whatever the autocast dtype: sums over a whole slice lose too much in
    half precision.
    """
    prediction, label = prediction.float(), label.float()
    return dice_loss(prediction, label) + fn_weight * dice_loss(prediction * label, label)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (N,) of 2-class logits, in float32."""
    return functional.cross_entropy(logits.float(), labels, reduction="none")
