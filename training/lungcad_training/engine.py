"""The training loop every trainer shares: epochs, validation, metrics, checkpoints, resume, DDP.

Per epoch: train on ``epoch_length`` samples (split over the ranks by a DistributedSampler), make
the replicas' batch-norm statistics identical, validate (each rank a share of the batches, counts
summed over ranks), log, and save ``last.pt`` (and ``best.pt`` when the recipe's score improves)
from rank 0. Augmentation draws from a generator seeded by (seed, epoch, rank), and the datasets
reseed per epoch too, so a run resumed from ``last.pt`` continues exactly as if never stopped.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

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
    Best,
    Checkpoint,
    rng_states,
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
from lungcad_training.steps import (
    autocast,
    epoch_generator,
    make_scaler,
    train_step,
    validate,
)

log = logging.getLogger(__name__)

#: One step and validation live in :mod:`.steps`; these names are kept here for callers.
__all__ = [
    "RECIPES",
    "FitResult",
    "Trainer",
    "autocast",
    "check_data_dir",
    "epoch_generator",
    "fit",
    "make_recipe",
    "make_scaler",
    "train_step",
    "validate",
]

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


# ------------------------------------------------------------------------------- setup


def check_data_dir(data: Path) -> None:
    """A LUNA16-layout folder: one clear error instead of a traceback from deep inside."""
    if not data.is_dir():
        raise TrainingError(f"{data}: dataset folder not found")
    for name in (ANNOTATIONS_CSV, CANDIDATES_CSV):
        if not (data / name).is_file():
            raise TrainingError(f"{data}: no {name} (expected the LUNA16 layout)")


def _prepare_out(cfg: TrainConfig, runtime: Runtime) -> Checkpoint | None:
    """The checkpoint to resume from, or None; refuses to overwrite a run unless asked to."""
    last = cfg.task_dir / LAST
    if last.is_file() and cfg.resume:
        log.info("resuming %s from %s", cfg.task.value, last)
        return Checkpoint.load(last)
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
            return Trainer(cfg, own).fit()
    return Trainer(cfg, runtime).fit()


# settings that may change between a run and its resumption without changing what it trains
_RUN_CONTROL = {"epochs", "device", "amp", "workers", "resume", "overwrite", "progress", "command"}


class Trainer:
    """One task's run on one rank: data, network, optimiser, and the epochs from where the run
    stands (epoch 0, or a ``--resume``'d ``last.pt``) to ``cfg.epochs``.

    Built in the order that fails cheapest first: the data folder and options, the recipe (a
    bad ``--finetune``), the old run (refused unless resumed or overwritten), then the cache,
    the datasets and the network.
    """

    def __init__(self, cfg: TrainConfig, runtime: Runtime) -> None:
        check_data_dir(cfg.data)
        if cfg.workers < 0 or cfg.batch_size < 1 or cfg.epochs < 0 or cfg.epoch_length < 1:
            raise TrainingError("--workers must be >= 0; --batch-size and --epoch-length >= 1")
        self.cfg, self.runtime = cfg, runtime
        self.device, self.main = runtime.device, runtime.is_main
        self.progress = cfg.progress and self.main
        self.amp = amp_dtype(cfg.amp, self.device)
        self.recipe = make_recipe(cfg)  # first: a bad --finetune fails before a run is cleared
        self.resume = _prepare_out(cfg, runtime)
        self.train_ds, self.val_ds, self.data_info = self._datasets()
        torch.manual_seed(cfg.seed)
        self.net = self.recipe.build_model().to(
            self.device, memory_format=self.recipe.memory_format
        )
        self.optimizer = make_optimizer(cfg.optimizer, self.net.parameters(), cfg.lr, cfg.momentum)
        self.scaler = make_scaler(self.device, self.amp)
        self.hardware = describe_hardware(runtime, self.amp)
        self.start_epoch, self.elapsed, self.commands = 0, 0.0, [cfg.command]
        self.best = Best()
        if self.resume is not None:
            self._restore(self.resume)
        self.model = self.net  # what trains: the network, or its DDP wrapper
        if runtime.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.net, device_ids=device_ids)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.train_loader, self.val_loader, self.sampler = _loaders(
            cfg, self.recipe, self.train_ds, self.val_ds, runtime
        )

    def _datasets(self) -> tuple[CachedSeriesDataset, CachedSeriesDataset, dict]:
        """Fill the series cache (rank 0), then every rank builds the task's datasets."""
        cfg = self.cfg
        if self.main:
            prefill_cache(
                cfg.data,
                cfg.cache_dir,
                spacing_xyz=cfg.spacing,
                workers=max(1, min(cfg.workers, 4)),
                progress=self.progress,
            )
        self.runtime.barrier()
        train_ds, val_ds = self.recipe.datasets(self.progress)
        if len(train_ds) == 0 or len(val_ds) == 0:
            raise TrainingError(
                f"{cfg.task.value}: {len(train_ds)} training and {len(val_ds)} validation samples "
                f"in {cfg.data} with --val-stride {cfg.val_stride}; need some of both (more "
                "series, or a smaller --val-stride)"
            )
        return train_ds, val_ds, _data_info(cfg, train_ds, val_ds)

    def _restore(self, checkpoint: Checkpoint) -> None:
        """Load a checkpoint's model, optimiser, scaler, RNG states and progress (``--resume``)."""
        cfg = self.cfg
        before = {k: v for k, v in checkpoint.args.items() if k not in _RUN_CONTROL}
        now = {k: v for k, v in cfg.to_dict().items() if k not in _RUN_CONTROL}
        changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        if changed:
            log.warning("resuming with changed settings: %s", ", ".join(changed))
        try:
            self.net.load_state_dict(checkpoint.model_state)
            self.optimizer.load_state_dict(checkpoint.optimizer_state)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise TrainingError(
                f"{cfg.task_dir / LAST} does not fit this run's model or optimizer "
                f"({exc!s:.200}); resume with the settings it was trained with, or pass "
                "--overwrite"
            ) from None
        if self.scaler.is_enabled() and checkpoint.scaler_state:
            self.scaler.load_state_dict(checkpoint.scaler_state)
        if checkpoint.rng is not None:
            set_rng_states(checkpoint.rng)
        self.start_epoch, self.elapsed = checkpoint.epoch, checkpoint.training_seconds
        self.commands = [*checkpoint.commands, cfg.command]
        self.best = checkpoint.best

    def fit(self) -> FitResult:
        """Train the remaining epochs; rank 0 logs and saves a checkpoint after each."""
        cfg = self.cfg
        logbook = self._open_logbook()
        if self.start_epoch >= cfg.epochs:
            log.info(
                "%s: already trained %d of %d epochs", cfg.task.value, self.start_epoch, cfg.epochs
            )
        try:
            for epoch in range(self.start_epoch + 1, cfg.epochs + 1):
                self._epoch(epoch, logbook)
                self.runtime.barrier()
        finally:
            if logbook is not None:
                logbook.close()
        return FitResult(
            task=cfg.task,
            model=self.net,
            epochs_done=max(self.start_epoch, cfg.epochs),
            best_epoch=self.best.epoch,
            best_metrics=dict(self.best.metrics),
            last_path=cfg.task_dir / LAST,
            best_path=cfg.task_dir / BEST,
            training_seconds=self.elapsed,
        )

    def _open_logbook(self) -> Logbook | None:
        """metrics.csv and the TensorBoard log (rank 0 only), after a line on what runs."""
        if not self.main:
            return None
        cfg = self.cfg
        log.info(
            "%s: %d training samples per epoch (%d series), %d validation samples (%d series), "
            "%s, batch %d x %d process(es), %s lr %g",
            cfg.task.value,
            len(self.train_ds),
            self.data_info["train_series"],
            len(self.val_ds),
            self.data_info["val_series"],
            hardware_text(self.hardware),
            cfg.batch_size,
            self.runtime.world_size,
            cfg.optimizer,
            cfg.lr,
        )
        return Logbook(
            cfg.task_dir / "metrics.csv", cfg.runs_dir, self.recipe.extras, self.start_epoch
        )

    def _epoch(self, epoch: int, logbook: Logbook | None) -> None:
        """Train, validate, and (rank 0) log and checkpoint one epoch."""
        started = time.perf_counter()
        train_metrics, samples = self._train_epoch(epoch)
        train_seconds = time.perf_counter() - started
        self.runtime.broadcast_buffers(self.net)
        val_metrics = validate(
            self.net, self.recipe, self.val_loader, self.runtime, self.amp, self.progress
        )
        self.elapsed += time.perf_counter() - started
        score = self.recipe.score(val_metrics)
        improved = self.best.improved_by(score)
        if improved:
            self.best = Best(epoch, list(score), val_metrics)
        if not self.main:
            return
        assert logbook is not None
        logbook.write(epoch, "train", train_metrics, samples)
        logbook.write(epoch, "val", val_metrics)
        log.info(
            "%s epoch %d/%d  train: %s (%.0f samples/s)  val: %s%s",
            self.cfg.task.value,
            epoch,
            self.cfg.epochs,
            _format(train_metrics),
            samples / max(train_seconds, 1e-9),
            _format(val_metrics),
            "  [best]" if improved else "",
        )
        checkpoint = self._checkpoint(epoch, {"train": train_metrics, "val": val_metrics})
        checkpoint.save(self.cfg.task_dir / LAST)
        if improved:
            checkpoint.save(self.cfg.task_dir / BEST)

    def _checkpoint(self, epoch: int, metrics: dict[str, Metrics]) -> Checkpoint:
        """Everything a resume or an export needs, as of the end of ``epoch``."""
        net, scaler = self.net, self.scaler
        return Checkpoint(
            task=self.cfg.task.value,
            epoch=epoch,
            architecture=type(net).__name__,
            hyperparameters=dict(getattr(net, "hyperparameters", {})),
            model_state={k: v.detach().cpu() for k, v in net.state_dict().items()},
            optimizer_state=self.optimizer.state_dict(),
            scaler_state=scaler.state_dict() if scaler.is_enabled() else None,
            frozen=[n for n, p in net.named_parameters() if not p.requires_grad],
            metrics=metrics,
            best=self.best,
            args=self.cfg.to_dict(),
            commands=self.commands,
            rng=rng_states(),
            created=_now(),
            training_seconds=self.elapsed,
            hardware=self.hardware,
            data=self.data_info,
            input_spec=self.recipe.input_spec(net),
        )

    def _train_epoch(self, epoch: int) -> tuple[Metrics, int]:
        """One pass over the epoch's samples; the (rank-reduced) metrics and sample count."""
        cfg, runtime = self.cfg, self.runtime
        self.train_ds.set_epoch(epoch)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        self.model.train()
        for module in self.recipe.frozen_modules(self.net):
            module.eval()
        generator = epoch_generator(runtime.device, cfg.seed, epoch, runtime.rank)
        tally = Tally(runtime.device)
        bar = tqdm(
            self.train_loader,
            desc=f"{cfg.task.value} epoch {epoch}",
            leave=False,
            disable=not self.progress,
        )
        for step, batch in enumerate(bar):
            loss = train_step(
                self.model,
                self.recipe,
                batch,
                self.optimizer,
                self.scaler,
                runtime.device,
                self.amp,
                generator,
                tally,
            )
            if self.progress and step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        tally.reduce(runtime.all_reduce_sum, runtime.gather)
        return tally.summary(), tally.samples
