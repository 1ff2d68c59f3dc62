"""The training loop every trainer shares: epochs, validation, metrics, checkpoints, resume, DDP.

Per epoch: train on ``epoch_length`` samples (split over the ranks by a DistributedSampler), make
the replicas' batch-norm statistics identical, validate (each rank a share of the batches, counts
summed over ranks), log, and save ``last.pt`` (and ``best.pt`` when the recipe's score improves)
from rank 0. Augmentation draws from a generator seeded by (seed, epoch, rank), and the datasets
reseed per epoch too, so a run resumed from ``last.pt`` continues exactly as if never stopped.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from lungcad.luna16 import ANNOTATIONS_CSV, CANDIDATES_CSV
from lungcad.models import Task
from lungcad_training.cache import prefill_cache
from lungcad_training.checkpoint import (
    BEST,
    LAST,
    load_checkpoint,
    rng_states,
    save_checkpoint,
    set_rng_states,
)
from lungcad_training.classification import MalignancyRecipe, NoduleRecipe
from lungcad_training.config import TrainConfig
from lungcad_training.datasets import CachedSeriesDataset
from lungcad_training.errors import TrainingError
from lungcad_training.logbook import Logbook
from lungcad_training.metrics import Metrics, Tally
from lungcad_training.optim import make_optimizer
from lungcad_training.recipe import Recipe, phantom_info
from lungcad_training.runtime import (
    Runtime,
    amp_dtype,
    describe_hardware,
    hardware_text,
    runtime_session,
)
from lungcad_training.segmentation import SegmentationRecipe

log = logging.getLogger(__name__)

RECIPES: dict[Task, type[Recipe]] = {
    Task.SEGMENTATION: SegmentationRecipe,
    Task.NODULE: NoduleRecipe,
    Task.MALIGNANCY: MalignancyRecipe,
}


def make_recipe(cfg: TrainConfig) -> Recipe:
    return RECIPES[cfg.task](cfg)


@dataclass
class FitResult:
    """How a run ended; ``model`` is this rank's (unwrapped) network after the last epoch."""

    task: Task
    model: nn.Module
    epochs_done: int
    best_epoch: int
    best_metrics: Metrics
    last_path: Path
    best_path: Path
    training_seconds: float


# ------------------------------------------------------------------------------- steps


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


# ------------------------------------------------------------------------------- setup


def check_data_dir(data: Path) -> None:
    """A LUNA16-layout folder: one clear error instead of a traceback from deep inside."""
    if not data.is_dir():
        raise TrainingError(f"{data}: dataset folder not found")
    for name in (ANNOTATIONS_CSV, CANDIDATES_CSV):
        if not (data / name).is_file():
            raise TrainingError(f"{data}: no {name} (expected the LUNA16 layout)")


def _prepare_out(cfg: TrainConfig, runtime: Runtime) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None; refuses to overwrite a run unless asked to."""
    last = cfg.task_dir / LAST
    if last.is_file() and cfg.resume:
        log.info("resuming %s from %s", cfg.task.value, last)
        return load_checkpoint(last)
    if last.is_file() and not cfg.overwrite:
        raise TrainingError(
            f"{cfg.task_dir} already holds a run; pass --resume to continue it or --overwrite "
            "to start again"
        )
    if cfg.resume:
        log.warning("no %s to resume from; starting %s afresh", last, cfg.task.value)
    runtime.barrier()  # every rank has looked before rank 0 clears
    if runtime.is_main:
        for name in (LAST, BEST, "metrics.csv"):
            (cfg.task_dir / name).unlink(missing_ok=True)
        shutil.rmtree(cfg.runs_dir, ignore_errors=True)
    return None


def _series_count(dataset: CachedSeriesDataset) -> int:
    return len({c.series_uid for c in dataset.split_candidates()})


def _data_info(cfg: TrainConfig, train: CachedSeriesDataset, val: CachedSeriesDataset) -> dict:
    return {
        "data_dir": str(cfg.data.resolve()),
        "train_series": _series_count(train),
        "val_series": _series_count(val),
        "val_stride": cfg.val_stride,
        "train_samples_per_epoch": len(train),
        "val_samples": len(val),
        "phantom": phantom_info(cfg.data),
    }


def _loaders(
    cfg: TrainConfig,
    recipe: Recipe,
    train: Dataset,
    val: CachedSeriesDataset,
    runtime: Runtime,
) -> tuple[DataLoader, DataLoader, DistributedSampler | None]:
    pin = runtime.device.type == "cuda"
    sampler = None
    if runtime.distributed:
        # shuffled: without it rank r would get every world_size-th sample, all positives
        # when ratio + 1 divides world_size
        sampler = DistributedSampler(
            train, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=True, seed=cfg.seed
        )
    train_loader = DataLoader(
        train,
        batch_size=cfg.batch_size,
        sampler=sampler,
        shuffle=False,  # the datasets shuffle (and balance) per epoch themselves
        num_workers=cfg.workers,
        pin_memory=pin,
    )
    view = recipe.validation_view(val)
    val_batch = cfg.batch_size
    if runtime.device.type == "cpu" and recipe.cpu_validation_batch:
        val_batch = recipe.cpu_validation_batch
    batches = recipe.validation_batches(view, val_batch)[runtime.rank :: runtime.world_size]
    val_loader = DataLoader(view, batch_sampler=batches, num_workers=cfg.workers, pin_memory=pin)
    return train_loader, val_loader, sampler


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _format(metrics: Metrics) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if v is not None)


# ------------------------------------------------------------------------------- the loop


def fit(cfg: TrainConfig, runtime: Runtime | None = None) -> FitResult:
    """Train one task as ``cfg`` says (in a process group of its own when none is given)."""
    if runtime is None:
        with runtime_session(cfg.device) as own:
            return _fit(cfg, own)
    return _fit(cfg, runtime)


def _fit(cfg: TrainConfig, runtime: Runtime) -> FitResult:
    check_data_dir(cfg.data)
    if cfg.workers < 0 or cfg.batch_size < 1 or cfg.epochs < 0 or cfg.epoch_length < 1:
        raise TrainingError("--workers must be >= 0; --batch-size and --epoch-length >= 1")
    device, main = runtime.device, runtime.is_main
    progress = cfg.progress and main
    amp = amp_dtype(cfg.amp, device)
    recipe = make_recipe(cfg)  # first: a bad --finetune fails before an old run is cleared
    resume = _prepare_out(cfg, runtime)

    if main:
        prefill_cache(
            cfg.data,
            cfg.cache_dir,
            spacing_xyz=cfg.spacing,
            workers=max(1, min(cfg.workers, 4)),
            progress=progress,
        )
    runtime.barrier()
    train_ds, val_ds = recipe.datasets(progress)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise TrainingError(
            f"{cfg.task.value}: {len(train_ds)} training and {len(val_ds)} validation samples in "
            f"{cfg.data} with --val-stride {cfg.val_stride}; need some of both (more series, or "
            "a smaller --val-stride)"
        )
    data_info = _data_info(cfg, train_ds, val_ds)

    torch.manual_seed(cfg.seed)
    model = recipe.build_model().to(device, memory_format=recipe.memory_format)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum)
    scaler = make_scaler(device, amp)
    hardware = describe_hardware(runtime, amp)
    start_epoch, elapsed, commands = 0, 0.0, [cfg.command]
    best: dict[str, Any] = {"epoch": 0, "score": None, "metrics": {}}
    if resume is not None:
        _restore(cfg, resume, model, optimizer, scaler)
        start_epoch, elapsed = int(resume["epoch"]), float(resume["training_seconds"])
        commands = [*resume["commands"], cfg.command]
        best = resume["best"]
    net = model
    if runtime.distributed:
        device_ids = [device.index] if device.type == "cuda" else None
        model = DistributedDataParallel(net, device_ids=device_ids)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    train_loader, val_loader, sampler = _loaders(cfg, recipe, train_ds, val_ds, runtime)
    logbook = None
    if main:
        logbook = Logbook(
            cfg.task_dir / "metrics.csv", cfg.runs_dir, recipe.extras, resume_epoch=start_epoch
        )
        log.info(
            "%s: %d training samples per epoch (%d series), %d validation samples (%d series), "
            "%s, batch %d x %d process(es), %s lr %g",
            cfg.task.value,
            len(train_ds),
            data_info["train_series"],
            len(val_ds),
            data_info["val_series"],
            hardware_text(hardware),
            cfg.batch_size,
            runtime.world_size,
            cfg.optimizer,
            cfg.lr,
        )
    if start_epoch >= cfg.epochs:
        log.info("%s: already trained %d of %d epochs", cfg.task.value, start_epoch, cfg.epochs)

    try:
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            started = time.perf_counter()
            train_metrics, samples = _train_epoch(
                cfg,
                recipe,
                model,
                net,
                train_ds,
                train_loader,
                sampler,
                optimizer,
                scaler,
                runtime,
                amp,
                epoch,
                progress,
            )
            train_seconds = time.perf_counter() - started
            runtime.broadcast_buffers(net)
            val_metrics = validate(net, recipe, val_loader, runtime, amp, progress)
            elapsed += time.perf_counter() - started
            score = recipe.score(val_metrics)
            improved = best["score"] is None or tuple(score) > tuple(best["score"])
            if improved:
                best = {"epoch": epoch, "score": list(score), "metrics": val_metrics}
            if main:
                assert logbook is not None
                logbook.write(epoch, "train", train_metrics, samples)
                logbook.write(epoch, "val", val_metrics)
                log.info(
                    "%s epoch %d/%d  train: %s (%.0f samples/s)  val: %s%s",
                    cfg.task.value,
                    epoch,
                    cfg.epochs,
                    _format(train_metrics),
                    samples / max(train_seconds, 1e-9),
                    _format(val_metrics),
                    "  [best]" if improved else "",
                )
                state = {
                    **_model_state(net, optimizer, scaler),
                    "task": cfg.task.value,
                    "epoch": epoch,
                    "metrics": {"train": train_metrics, "val": val_metrics},
                    "best": best,
                    "args": cfg.to_dict(),
                    "commands": commands,
                    "rng": rng_states(),
                    "created": _now(),
                    "training_seconds": elapsed,
                    "hardware": hardware,
                    "data": data_info,
                    "input_spec": recipe.input_spec(net),
                }
                save_checkpoint(state, cfg.task_dir / LAST)
                if improved:
                    save_checkpoint(state, cfg.task_dir / BEST)
            runtime.barrier()
    finally:
        if logbook is not None:
            logbook.close()
    return FitResult(
        task=cfg.task,
        model=net,
        epochs_done=max(start_epoch, cfg.epochs),
        best_epoch=int(best["epoch"]),
        best_metrics=dict(best["metrics"]),
        last_path=cfg.task_dir / LAST,
        best_path=cfg.task_dir / BEST,
        training_seconds=elapsed,
    )


# settings that may change between a run and its resumption without changing what it trains
_RUN_CONTROL = {"epochs", "device", "amp", "workers", "resume", "overwrite", "progress", "command"}


def _restore(
    cfg: TrainConfig,
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> None:
    """Load a checkpoint's model, optimiser, scaler and RNG states for ``--resume``."""
    before = {k: v for k, v in state.get("args", {}).items() if k not in _RUN_CONTROL}
    now = {k: v for k, v in cfg.to_dict().items() if k not in _RUN_CONTROL}
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if changed:
        log.warning("resuming with changed settings: %s", ", ".join(changed))
    try:
        model.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise TrainingError(
            f"{cfg.task_dir / LAST} does not fit this run's model or optimizer ({exc!s:.200}); "
            "resume with the settings it was trained with, or pass --overwrite"
        ) from None
    if scaler.is_enabled() and state.get("scaler_state"):
        scaler.load_state_dict(state["scaler_state"])
    set_rng_states(state["rng"])


def _model_state(
    net: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> dict[str, Any]:
    """What a checkpoint needs to rebuild the network and continue optimising it."""
    return {
        "architecture": type(net).__name__,
        "hyperparameters": dict(getattr(net, "hyperparameters", {})),
        "model_state": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "optimizer_state": optimizer.state_dict(),
        "scaler_state": scaler.state_dict() if scaler.is_enabled() else None,
        "frozen": [n for n, p in net.named_parameters() if not p.requires_grad],
    }


def _train_epoch(
    cfg: TrainConfig,
    recipe: Recipe,
    model: nn.Module,
    net: nn.Module,
    dataset: CachedSeriesDataset,
    loader: DataLoader,
    sampler: DistributedSampler | None,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    runtime: Runtime,
    amp: torch.dtype | None,
    epoch: int,
    progress: bool,
) -> tuple[Metrics, int]:
    """One pass over the epoch's samples; returns the (rank-reduced) metrics and sample count."""
    dataset.set_epoch(epoch)
    if sampler is not None:
        sampler.set_epoch(epoch)
    model.train()
    for module in recipe.frozen_modules(net):
        module.eval()
    generator = epoch_generator(runtime.device, cfg.seed, epoch, runtime.rank)
    tally = Tally(runtime.device)
    bar = tqdm(loader, desc=f"{cfg.task.value} epoch {epoch}", leave=False, disable=not progress)
    for step, batch in enumerate(bar):
        loss = train_step(
            model, recipe, batch, optimizer, scaler, runtime.device, amp, generator, tally
        )
        if progress and step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    tally.reduce(runtime.all_reduce_sum, runtime.gather)
    return tally.summary(), tally.samples
