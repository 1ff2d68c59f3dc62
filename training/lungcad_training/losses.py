"""The seeds' losses: Dice + 8 x false-negative Dice for segmentation, cross-entropy otherwise.

Nodules are a tiny fraction of a slice, so plain Dice is happy to miss the edges of a nodule; the
false-negative term (Dice of the prediction restricted to the label, against the label) only
rewards covering label pixels, and weighting it 8x makes the network prefer recall, which the
later classifier stage can trade back for precision.

Training computes the plain Dice term over the whole batch (``over_batch``), the false-negative
term per sample. A per-sample Dice of a crop without nodule is 1 - 1 / (1 + predicted pixels): once
a crop holds a few dozen false-positive pixels its gradient all but vanishes (1 / (1 + S)^2), so
background crops barely taught the UNet anything and whole slices ended up mostly "nodule". Over
the batch, false positives in empty crops weigh against the batch's nodule pixels and keep their
gradient; the per-sample false-negative term still counts every nodule, small ones too.
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


def batch_dice_loss(
    prediction: torch.Tensor, label: torch.Tensor, epsilon: float = 1.0
) -> torch.Tensor:
    """Soft Dice loss of the whole batch taken as one image (a scalar)."""
    return dice_loss(prediction.reshape(1, -1), label.reshape(1, -1), epsilon)[0]


def segmentation_loss(
    prediction: torch.Tensor,
    label: torch.Tensor,
    fn_weight: float = FALSE_NEGATIVE_WEIGHT,
    over_batch: bool = False,
) -> torch.Tensor:
    """Dice loss plus ``fn_weight`` x the per-sample false-negative Dice loss, shape (N,).

    ``over_batch``: the Dice term is the batch's (the same value in every sample's loss, so the
    mean is batch Dice + ``fn_weight`` x mean false-negative Dice); else each sample's own.
    Computed in float32 whatever the autocast dtype: sums over a whole slice lose too much in
    half precision.
    """
    prediction, label = prediction.float(), label.float()
    false_negative = fn_weight * dice_loss(prediction * label, label)
    if over_batch:
        return batch_dice_loss(prediction, label) + false_negative
    return dice_loss(prediction, label) + false_negative


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (N,) of 2-class logits, in float32."""
    return functional.cross_entropy(logits.float(), labels, reduction="none")
