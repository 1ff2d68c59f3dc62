"""``lungcad-train``'s options: the shared ones from :mod:`lungcad.cli.options`, the rest from
:class:`~lungcad_training.config.TrainConfig`'s fields.

Every option that fills a :class:`TrainConfig` field is added with
:func:`lungcad.cli.options.add_field`: its ``dest`` is the field's name and its default the
field's default (shown in the help), so a default is written once, in the dataclass, and
:func:`config_from_args` builds the config from the parsed values without naming them again.
The per-task defaults (epochs, batch size, epoch length, optimizer, learning rate) are ``None`` in
the dataclass and come from :data:`~lungcad_training.config.DEFAULTS`, which the help quotes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lungcad.cli import options
from lungcad.cli_types import bounded_float, bounded_int, choice_of, segmentation_probability
from lungcad.models import Task
from lungcad_training.calibration import DEFAULT_METHOD, METHODS
from lungcad_training.config import CLASSIFIER_CROP_IRC, DEFAULTS, TrainConfig
from lungcad_training.mining import DEFAULT_MINING_THRESHOLD
from lungcad_training.optim import OPTIMIZERS, Optimizer
from lungcad_training.runtime import AMP_MODES, AmpMode

PROG = "lungcad-train"
MINED_CSV = "mined_candidates.csv"
TRAIN_TASKS = (Task.SEGMENTATION, Task.NODULE, Task.MALIGNANCY)
CALIBRATED_TASKS = (Task.NODULE, Task.MALIGNANCY)

positive_int = bounded_int(1)
non_negative_int = bounded_int(0)
positive_float = bounded_float(0.0, lo_open=True)
non_negative_float = bounded_float(0.0)
#: Every N-th series validates; 1 would validate on everything.
val_stride = bounded_int(2)

Parser = argparse.ArgumentParser | argparse._ArgumentGroup


def _field(p: Parser, name: str, *flags: str, help: str, **kwargs: Any) -> argparse.Action:
    return options.add_field(p, TrainConfig, name, *flags, help=help, **kwargs)


def _per_task(name: str, task: Task | None) -> str:
    """The task's default of ``name`` (DEFAULTS), or all three for ``all``."""
    if task is not None:
        value = getattr(DEFAULTS[task], name)
        return f"default {value.value if name == 'optimizer' else f'{value:g}'}"
    return "per task: " + ", ".join(f"{t.value} {getattr(DEFAULTS[t], name)}" for t in TRAIN_TASKS)


def add_spacing(p: Parser) -> None:
    _field(
        p, "spacing", "--spacing", type=positive_float, nargs=3, metavar=("X", "Y", "Z"),
        help="canonical voxel size in mm (others for tests and experiments)",
    )  # fmt: skip


def add_val_stride(p: Parser) -> None:
    _field(p, "val_stride", "--val-stride", type=val_stride, help="every N-th series validates")


def add_training_device(p: Parser) -> None:
    options.add_device(
        p,
        default=options.field_default(TrainConfig, "device"),
        help="auto: CUDA when present, else the CPU (default auto)",
    )


def _add_run_options(p: argparse.ArgumentParser, task: Task | None) -> None:
    """Options every training command shares; ``task`` None = ``all`` (per-task defaults)."""
    p.add_argument("--data", type=Path, required=True, help="LUNA16-layout dataset folder")
    options.add_out(p, help="output folder (runs, checkpoints)")
    _field(p, "epochs", "--epochs", type=positive_int, help=f"epochs ({_per_task('epochs', task)})")
    _field(
        p, "epoch_length", "--epoch-length", type=positive_int,
        help=f"training samples per epoch, over all processes ({_per_task('epoch_length', task)})",
    )  # fmt: skip
    _field(
        p, "batch_size", "--batch-size", type=positive_int,
        help=f"per process ({_per_task('batch_size', task)})",
    )  # fmt: skip
    add_training_device(p)
    _field(
        p, "amp", "--amp", type=choice_of(AmpMode), metavar="{" + ",".join(AMP_MODES) + "}",
        help="mixed precision (auto: bf16 or fp16 on CUDA, off on the CPU)",
    )  # fmt: skip
    _field(p, "workers", "--workers", type=non_negative_int, help="DataLoader processes")
    add_val_stride(p)
    _field(p, "seed", "--seed", type=int, help="random seed")
    _field(p, "cache", "--cache", type=Path, help="canonical-CT cache folder (OUT/cache)")
    add_spacing(p)
    _field(p, "augment", "--no-augment", action="store_false", help="train without augmentation")
    group = p.add_mutually_exclusive_group()
    _field(group, "resume", "--resume", action="store_true", help="go on from OUT/<task>/last.pt")
    _field(group, "overwrite", "--overwrite", action="store_true", help="replace an earlier run")
    _field(p, "progress", "--quiet", action="store_false", help="no progress bars")


def _add_optimizer(p: Parser, task: Task | None, help: str = "") -> None:
    _field(
        p, "optimizer", "--optimizer", type=choice_of(Optimizer),
        metavar="{" + ",".join(OPTIMIZERS) + "}",
        help=help or f"({_per_task('optimizer', task)})",
    )  # fmt: skip


def _add_optimiser_options(p: argparse.ArgumentParser, task: Task) -> None:
    _field(p, "lr", "--lr", type=positive_float, help=f"learning rate ({_per_task('lr', task)})")
    _add_optimizer(p, task)
    _field(p, "momentum", "--momentum", type=bounded_float(0.0, 1.0), help="SGD momentum")


def _add_domain_randomization(p: argparse.ArgumentParser, what: str) -> None:
    _field(
        p, "domain_randomization", "--domain-randomization", action="store_true",
        help=f"also vary slice thickness, kernel, HU calibration and noise per {what} (scanners, "
        "not patients; see lungcad_training.augment)",
    )  # fmt: skip


def _add_init(p: argparse.ArgumentParser, network: str) -> None:
    _field(
        p, "init", "--init", type=Path, metavar="WEIGHTS",
        help=f"start from this {network}'s weights (best.pt or exported .safetensors), every "
        "layer trainable",
    )  # fmt: skip


def _add_classifier_options(p: argparse.ArgumentParser, what: str = "crop") -> None:
    _field(
        p, "ratio", "--ratio", type=non_negative_int,
        help="negatives per positive in training (1 alternates; 0 = the raw list)",
    )  # fmt: skip
    _field(
        p, "crop_size", "--crop-size", type=positive_int, nargs=3, metavar=("D", "H", "W"),
        help=f"crop in canonical voxels, index row col ({' '.join(map(str, CLASSIFIER_CROP_IRC))})",
    )  # fmt: skip
    _add_domain_randomization(p, what)


def _add_finetune_depth(p: argparse.ArgumentParser) -> None:
    _field(
        p, "finetune_depth", "--finetune-depth", type=positive_int,
        help="blocks trained when fine-tuning: 1 = the head only, 2 = head + last conv block",
    )  # fmt: skip


def _add_extra_candidates(p: argparse.ArgumentParser) -> None:
    _field(
        p, "extra_candidates", "--extra-candidates", type=Path, metavar="CSV",
        help="nodule classifier: another candidates csv (seriesuid,coordX,coordY,coordZ,class) "
        "trained and validated beside candidates.csv, e.g. from 'lungcad-train mine'",
    )  # fmt: skip


def _add_segmentation_options(seg: argparse.ArgumentParser) -> None:
    _field(
        seg, "context_slices", "--context-slices", type=non_negative_int,
        help="slices above and below the centre one in the UNet's input (2 N + 1 channels)",
    )  # fmt: skip
    _field(seg, "seg_crop", "--crop", type=positive_int, help="training crop side")
    _field(
        seg, "val_negative_slices", "--val-negative-slices", type=non_negative_int,
        help="nodule-free slices per validation series, besides every nodule slice",
    )  # fmt: skip
    _field(
        seg, "seg_background_ratio", "--background-ratio", type=non_negative_float,
        help="background crops (on non-nodule candidates) per nodule crop in training",
    )  # fmt: skip
    _field(
        seg, "seg_region_ratio", "--region-ratio", type=non_negative_float,
        help="crops at random places of the lung region (where detection runs the UNet: "
        "mediastinum and chest wall too) per nodule crop in training",
    )  # fmt: skip
    _field(
        seg, "seg_dense_ratio", "--dense-ratio", type=non_negative_float,
        help="crops on dense tissue in or at the lungs (vessels, airway walls, pleura, "
        "diaphragm, heart border) per nodule crop in training",
    )  # fmt: skip
    _field(
        seg, "seg_recall_target", "--recall-target", type=bounded_float(0.0, 1.0),
        help="best epoch: highest F1 among epochs whose >= 5 mm recall reaches this",
    )  # fmt: skip
    _add_domain_randomization(seg, "slice stack, thickness over the context slices")
    _add_init(seg, "segmentation UNet")


def _add_mine(sub: argparse._SubParsersAction) -> None:
    mine = sub.add_parser(
        "mine", help="the UNet's own candidates on a dataset, labelled, as a candidates csv"
    )
    mine.add_argument("--data", type=Path, required=True, help="LUNA16-layout dataset folder")
    options.add_models(
        mine, required=True,
        help="segmentation .safetensors (card beside it), or a folder holding one",
    )  # fmt: skip
    options.add_out(mine, help="candidates csv to write")
    mine.add_argument("--cache", type=Path, required=True, help="canonical-CT cache folder")
    add_spacing(mine)
    mine.add_argument(
        "--threshold", type=segmentation_probability, default=DEFAULT_MINING_THRESHOLD,
        help=f"grouping threshold, in (0, 1] (default {DEFAULT_MINING_THRESHOLD})",
    )  # fmt: skip
    add_training_device(mine)
    options.add_precision(mine)
    options.add_overwrite(mine, "replace an existing csv")
    _field(mine, "progress", "--quiet", action="store_false", help="no progress bars")


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    cal = sub.add_parser(
        "calibrate",
        help="calibrate an exported classifier (Platt or temperature scaling) on the validation "
        "split: the nodule classifier on mined candidates, the malignancy classifier on the "
        "labelled nodules; writes calibrated weights with ECE and reliability in the card",
    )
    # one classifier file, which is read and written anew: not a cascade's --models folder
    cal.add_argument("--weights", type=Path, required=True, help="classifier .safetensors")
    cal.add_argument(
        "--task", choices=[t.value for t in CALIBRATED_TASKS], default=Task.NODULE.value,
        help=f"which classifier --weights is (default {Task.NODULE.value})",
    )  # fmt: skip
    cal.add_argument(
        "--method", choices=METHODS, default=DEFAULT_METHOD,
        help=f"platt: sigmoid(a z + b), also moves the scores to the base rate; temperature: "
        f"sigmoid(z / T), keeps the 0.5 operating point (z = logit1 - logit0; {DEFAULT_METHOD})",
    )  # fmt: skip
    cal.add_argument("--data", type=Path, required=True, help="LUNA16-layout dataset folder")
    cal.add_argument("--cache", type=Path, required=True, help="canonical-CT cache folder")
    cal.add_argument(
        "--mined", type=Path,
        help="--task nodule (required there): lungcad-train mine's csv, to calibrate on the "
        "candidates detection proposes",
    )  # fmt: skip
    add_val_stride(cal)
    add_spacing(cal)
    options.add_out(cal, help="calibrated weights (.safetensors)")
    add_training_device(cal)
    options.add_overwrite(cal, "replace existing files")


def _add_range(sub: argparse._SubParsersAction) -> None:
    rng = sub.add_parser(
        "range",
        help="the training range (pixel size, slices, contrast, HU) of a data set, as export "
        "writes it into model cards; optionally add it to existing cards",
    )
    source = rng.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a LUNA16-layout folder (phantoms included)")
    source.add_argument(
        "--phantom", nargs=3, metavar=("SEED", "CASES", "SIZE"),
        help="a phantom set by its recipe, from the generator's draws (no voxels rendered)",
    )  # fmt: skip
    rng.add_argument(
        "--card", type=Path, nargs="*", default=[], help="model cards to write the range into"
    )


def _add_all(sub: argparse._SubParsersAction) -> None:
    every = sub.add_parser(
        "all", help="cache, train all three, export to OUT/models (the bundled weights' recipe)"
    )
    _add_run_options(every, None)
    _add_optimizer(every, None, f"one optimiser for all three ({_per_task('optimizer', None)})")
    _add_classifier_options(every, "crop and slice stack (all three networks)")
    every.add_argument(
        "--malignancy-finetune", action="store_true",
        help="start the malignancy classifier from the nodule classifier just trained "
        "(default: from scratch, which did better on the phantoms)",
    )  # fmt: skip
    _add_finetune_depth(every)
    every.add_argument(
        "--no-mine", action="store_true",
        help=f"train the nodule classifier on candidates.csv alone (default: also on the new "
        f"UNet's own candidates, mined into OUT/{MINED_CSV})",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train the cascade's three networks, export them, or do it all in one go.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    seg = sub.add_parser("segmentation", help="train the 2D UNet")
    _add_run_options(seg, Task.SEGMENTATION)
    _add_optimiser_options(seg, Task.SEGMENTATION)
    _add_segmentation_options(seg)

    nod = sub.add_parser("nodule", help="train the nodule / non-nodule classifier")
    _add_run_options(nod, Task.NODULE)
    _add_optimiser_options(nod, Task.NODULE)
    _add_classifier_options(nod)
    _add_extra_candidates(nod)
    _add_init(nod, "nodule classifier")

    mal = sub.add_parser("malignancy", help="train the malignancy classifier")
    _add_run_options(mal, Task.MALIGNANCY)
    _add_optimiser_options(mal, Task.MALIGNANCY)
    _add_classifier_options(mal)
    _field(
        mal, "finetune", "--finetune", type=Path,
        help="nodule classifier to start from (best.pt, or exported .safetensors)",
    )  # fmt: skip
    _add_finetune_depth(mal)

    _add_mine(sub)
    exp = sub.add_parser("export", help="checkpoint -> safetensors + model card")
    exp.add_argument("--checkpoint", type=Path, required=True, help="e.g. OUT/nodule/best.pt")
    exp.add_argument("--task", choices=[t.value for t in Task], help="check the task")
    options.add_out(exp, help="weights path (.safetensors)")
    options.add_overwrite(exp, "replace existing files")
    _add_calibrate(sub)
    _add_range(sub)
    _add_all(sub)
    return parser


def config_from_args(
    args: argparse.Namespace, task: Task, command: str, **extra: object
) -> TrainConfig:
    """The :class:`TrainConfig` of one task: every parsed field, then ``extra``."""
    fields = options.dataclass_fields(TrainConfig, args)
    fields.update(command=command, **extra)
    fields.pop("task", None)
    return TrainConfig(task=task, **fields)
