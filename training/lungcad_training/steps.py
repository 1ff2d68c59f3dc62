"""One training step, the per-epoch augmentation generator, and validation over every rank."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lungcad_training.metrics import Metrics, Tally
from lungcad_training.recipe import Recipe
from lungcad_training.runtime import Runtime


def autocast(device: torch.device, amp: torch.dtype | None) -> contextlib.AbstractContextManager:
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp)


def make_scaler(device: torch.device, amp: torch.dtype | None) -> torch.amp.GradScaler:
    """Loss scaling for fp16 only (bf16 has float32's range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=amp == torch.float16)


def train_step(
    model: nn.Module,
    recipe: Recipe,
    batch: Any,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    amp: torch.dtype | None = None,
    generator: torch.Generator | None = None,
    tally: Tally | None = None,
) -> torch.Tensor:
    """One optimisation step on one batch; returns the (detached) mean loss."""
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, amp):
        loss = recipe.train_loss(model, batch, device, generator, tally or Tally(device))
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def epoch_generator(device: torch.device, seed: int, epoch: int, rank: int) -> torch.Generator:
    """Augmentation randomness that depends only on (seed, epoch, rank): resumable."""
    state = np.random.SeedSequence([seed, epoch, rank]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator(device=device)
    generator.manual_seed(int(state[0]) << 32 | int(state[1]))
    return generator


def validate(
    model: nn.Module,
    recipe: Recipe,
    loader: DataLoader,
    runtime: Runtime,
    amp: torch.dtype | None,
    progress: bool = False,
) -> Metrics:
    """Validation metrics over every rank's share of the batches."""
    model.eval()
    tally = Tally(runtime.device)
    with torch.no_grad(), autocast(runtime.device, amp):
        for batch in tqdm(loader, desc="validation", leave=False, disable=not progress):
            recipe.validate_batch(model, batch, runtime.device, tally)
    tally.reduce(runtime.all_reduce_sum, runtime.gather)
    return tally.summary(recipe.extras)
