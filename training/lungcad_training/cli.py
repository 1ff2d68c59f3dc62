"""``lungcad-train``: train the cascade's three networks, export them, or do it all in one go.

Subcommands ``segmentation``, ``nodule`` and ``malignancy`` train one network each into
``OUT/<task>/`` (``last.pt``, ``best.pt``, ``metrics.csv``) with TensorBoard runs in
``OUT/runs/<task>``; ``export`` turns a checkpoint into safetensors + model card; ``all`` trains
the three (malignancy fine-tuned from the best nodule model) and exports them to ``OUT/models``.
Defaults are sized for a CPU; scale up with ``--epochs``, ``--epoch-length``, ``--batch-size``
and ``--workers`` on a GPU, and run under ``torchrun`` for several GPUs. Bad paths, data or
options print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from lungcad.errors import LungCADError
from lungcad.models import Task
from lungcad.pipeline.precision import Precision
from lungcad.preprocess import CANONICAL_SPACING_XYZ
from lungcad_training.calibration import DEFAULT_METHOD, METHODS
from lungcad_training.config import CLASSIFIER_CROP_IRC, DEFAULTS, TrainConfig
from lungcad_training.errors import TrainingError
from lungcad_training.optim import OPTIMIZERS
from lungcad_training.runtime import AMP_MODES, DEVICES, Runtime, env_rank, runtime_session

log = logging.getLogger("lungcad_training")

PROG = "lungcad-train"
MINED_CSV = "mined_candidates.csv"
TRAIN_TASKS = (Task.SEGMENTATION, Task.NODULE, Task.MALIGNANCY)
CALIBRATED_TASKS = (Task.NODULE, Task.MALIGNANCY)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _stride(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be >= 2 (1 would validate on everything): {text}")
    return value


def _add_spacing(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--spacing",
        type=_positive_float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        default=CANONICAL_SPACING_XYZ,
        help=f"canonical voxel size in mm ({' '.join(f'{v:g}' for v in CANONICAL_SPACING_XYZ)}; "
        "others for tests and experiments)",
    )


def _add_run_options(p: argparse.ArgumentParser, task: Task | None) -> None:
    """Options every training command shares; ``task`` None = ``all`` (per-task defaults)."""
    d = DEFAULTS[task] if task is not None else None

    def default(name: str) -> str:
        if d is None:
            return "per task: " + ", ".join(
                f"{t.value} {getattr(DEFAULTS[t], name)}" for t in TRAIN_TASKS
            )
        return str(getattr(d, name))

    p.add_argument("--data", type=Path, required=True, help="LUNA16-layout dataset folder")
    p.add_argument("--out", type=Path, required=True, help="output folder (runs, checkpoints)")
    p.add_argument("--epochs", type=_positive_int, help=f"epochs ({default('epochs')})")
    p.add_argument(
        "--epoch-length",
        type=_positive_int,
        help=f"training samples per epoch, over all processes ({default('epoch_length')})",
    )
    p.add_argument(
        "--batch-size", type=_positive_int, help=f"per process ({default('batch_size')})"
    )
    p.add_argument("--device", choices=DEVICES, default="auto", help="(auto: CUDA when present)")
    p.add_argument(
        "--amp",
        choices=AMP_MODES,
        default="auto",
        help="mixed precision (auto: bf16 or fp16 on CUDA, off on the CPU)",
    )
    p.add_argument("--workers", type=_non_negative_int, default=2, help="DataLoader processes (2)")
    p.add_argument(
        "--val-stride", type=_stride, default=10, help="every N-th series validates (10)"
    )
    p.add_argument("--seed", type=int, default=0, help="(0)")
    p.add_argument("--cache", type=Path, help="canonical-CT cache folder (OUT/cache)")
    _add_spacing(p)
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from OUT/<task>/last.pt")
    group.add_argument("--overwrite", action="store_true", help="replace an earlier run in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_optimiser_options(p: argparse.ArgumentParser, task: Task) -> None:
    d = DEFAULTS[task]
    p.add_argument("--lr", type=_positive_float, help=f"learning rate ({d.lr:g})")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help=f"({d.optimizer})")
    p.add_argument("--momentum", type=float, default=0.99, help="SGD momentum (0.99)")


def _add_domain_randomization(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--domain-randomization",
        action="store_true",
        help=f"also vary slice thickness, kernel, HU calibration and noise per {what} (scanners, "
        "not patients; see lungcad_training.augment)",
    )


def _add_init(p: argparse.ArgumentParser, network: str) -> None:
    p.add_argument(
        "--init",
        type=Path,
        metavar="WEIGHTS",
        help=f"start from this {network}'s weights (best.pt or exported .safetensors), every "
        "layer trainable",
    )


def _add_classifier_options(p: argparse.ArgumentParser, what: str = "crop") -> None:
    p.add_argument(
        "--ratio",
        type=_non_negative_int,
        default=1,
        help="negatives per positive in training (1 alternates; 0 = the raw list)",
    )
    p.add_argument(
        "--crop-size",
        type=_positive_int,
        nargs=3,
        metavar=("D", "H", "W"),
        help=f"crop in canonical voxels, index row col ({' '.join(map(str, CLASSIFIER_CROP_IRC))})",
    )
    _add_domain_randomization(p, what)


def _add_finetune_depth(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--finetune-depth",
        type=_positive_int,
        default=2,
        help="blocks trained when fine-tuning: 1 = the head only, 2 = head + last conv block (2)",
    )


def _add_extra_candidates(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--extra-candidates",
        type=Path,
        metavar="CSV",
        help="nodule classifier: another candidates csv (seriesuid,coordX,coordY,coordZ,class) "
        "trained and validated beside candidates.csv, e.g. from 'lungcad-train mine'",
    )


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
    seg.add_argument("--context-slices", type=_non_negative_int, default=3, help="(3)")
    seg.add_argument("--crop", type=_positive_int, default=64, help="training crop side (64)")
    seg.add_argument(
        "--val-negative-slices",
        type=_non_negative_int,
        default=8,
        help="nodule-free slices per validation series, besides every nodule slice (8)",
    )
    seg.add_argument(
        "--background-ratio",
        type=_non_negative_float,
        default=1.0,
        help="background crops (on non-nodule candidates) per nodule crop in training (1)",
    )
    seg.add_argument(
        "--region-ratio",
        type=_non_negative_float,
        default=1.0,
        help="crops at random places of the lung region (where detection runs the UNet: "
        "mediastinum and chest wall too) per nodule crop in training (1)",
    )
    seg.add_argument(
        "--dense-ratio",
        type=_non_negative_float,
        default=2.0,
        help="crops on dense tissue in or at the lungs (vessels, airway walls, pleura, "
        "diaphragm, heart border) per nodule crop in training (2)",
    )
    seg.add_argument(
        "--recall-target",
        type=_non_negative_float,
        default=0.9,
        help="best epoch: highest F1 among epochs whose >= 5 mm recall reaches this (0.9)",
    )
    _add_domain_randomization(seg, "slice stack, thickness over the context slices")
    _add_init(seg, "segmentation UNet")

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
    mal.add_argument(
        "--finetune",
        type=Path,
        help="nodule classifier to start from (best.pt, or exported .safetensors)",
    )
    _add_finetune_depth(mal)

    mine = sub.add_parser(
        "mine", help="the UNet's own candidates on a dataset, labelled, as a candidates csv"
    )
    mine.add_argument("--data", type=Path, required=True, help="LUNA16-layout dataset folder")
    mine.add_argument(
        "--weights",
        type=Path,
        required=True,
        help="segmentation .safetensors (card beside it), or a folder holding one",
    )
    mine.add_argument("--out", type=Path, required=True, help="candidates csv to write")
    mine.add_argument("--cache", type=Path, required=True, help="canonical-CT cache folder")
    _add_spacing(mine)
    mine.add_argument(
        "--threshold", type=_positive_float, default=0.5, help="grouping threshold (0.5)"
    )
    mine.add_argument("--device", choices=DEVICES, default="auto")
    mine.add_argument(
        "--precision",
        choices=[p.value for p in Precision],
        default="auto",
        help="auto: bf16 where the device has bf16 matrix units",
    )
    mine.add_argument("--overwrite", action="store_true", help="replace an existing csv")
    mine.add_argument("--quiet", action="store_true", help="no progress bars")

    exp = sub.add_parser("export", help="checkpoint -> safetensors + model card")
    exp.add_argument("--checkpoint", type=Path, required=True, help="e.g. OUT/nodule/best.pt")
    exp.add_argument("--task", choices=[t.value for t in Task], help="check the task")
    exp.add_argument("--out", type=Path, required=True, help="weights path (.safetensors)")
    exp.add_argument("--overwrite", action="store_true", help="replace existing files")

    cal = sub.add_parser(
        "calibrate",
        help="calibrate an exported classifier (Platt or temperature scaling) on the validation "
        "split: the nodule classifier on mined candidates, the malignancy classifier on the "
        "labelled nodules; writes calibrated weights with ECE and reliability in the card",
    )
    cal.add_argument("--weights", type=Path, required=True, help="classifier .safetensors")
    cal.add_argument(
        "--task",
        choices=[t.value for t in CALIBRATED_TASKS],
        default=Task.NODULE.value,
        help="which classifier --weights is (nodule)",
    )
    cal.add_argument(
        "--method",
        choices=METHODS,
        default=DEFAULT_METHOD,
        help=f"platt: sigmoid(a z + b), also moves the scores to the base rate; temperature: "
        f"sigmoid(z / T), keeps the 0.5 operating point (z = logit1 - logit0; {DEFAULT_METHOD})",
    )
    cal.add_argument("--data", type=Path, required=True, help="LUNA16-layout dataset folder")
    cal.add_argument("--cache", type=Path, required=True, help="canonical-CT cache folder")
    cal.add_argument(
        "--mined",
        type=Path,
        help="--task nodule (required there): lungcad-train mine's csv, to calibrate on the "
        "candidates detection proposes",
    )
    cal.add_argument(
        "--val-stride", type=_stride, default=10, help="every N-th series validates (10)"
    )
    _add_spacing(cal)
    cal.add_argument("--out", type=Path, required=True, help="calibrated weights (.safetensors)")
    cal.add_argument("--device", choices=DEVICES, default="auto")
    cal.add_argument("--overwrite", action="store_true", help="replace existing files")

    rng = sub.add_parser(
        "range",
        help="the training range (pixel size, slices, contrast, HU) of a data set, as export "
        "writes it into model cards; optionally add it to existing cards",
    )
    source = rng.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a LUNA16-layout folder (phantoms included)")
    source.add_argument(
        "--phantom",
        nargs=3,
        metavar=("SEED", "CASES", "SIZE"),
        help="a phantom set by its recipe, from the generator's draws (no voxels rendered)",
    )
    rng.add_argument(
        "--card", type=Path, nargs="*", default=[], help="model cards to write the range into"
    )

    every = sub.add_parser(
        "all", help="cache, train all three, export to OUT/models (the bundled weights' recipe)"
    )
    _add_run_options(every, None)
    every.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        help="one optimiser for all three (per task: "
        + ", ".join(f"{t.value} {DEFAULTS[t].optimizer}" for t in TRAIN_TASKS)
        + ")",
    )
    _add_classifier_options(every, "crop and slice stack (all three networks)")
    every.add_argument(
        "--malignancy-finetune",
        action="store_true",
        help="start the malignancy classifier from the nodule classifier just trained "
        "(default: from scratch, which did better on the phantoms)",
    )
    _add_finetune_depth(every)
    every.add_argument(
        "--no-mine",
        action="store_true",
        help=f"train the nodule classifier on candidates.csv alone (default: also on the new "
        f"UNet's own candidates, mined into OUT/{MINED_CSV})",
    )
    return parser


def _config(args: argparse.Namespace, task: Task, command: str, **extra: object) -> TrainConfig:
    fields = {
        "data": args.data,
        "out": args.out,
        "cache": args.cache,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "epoch_length": args.epoch_length,
        "device": args.device,
        "amp": args.amp,
        "workers": args.workers,
        "val_stride": args.val_stride,
        "seed": args.seed,
        "augment": not args.no_augment,
        "domain_randomization": getattr(args, "domain_randomization", False),
        "spacing": tuple(args.spacing),
        "resume": args.resume,
        "overwrite": args.overwrite,
        "progress": not args.quiet,
        "command": command,
    }
    for name in (
        "lr", "optimizer", "momentum", "ratio", "crop_size", "finetune", "extra_candidates",
        "init",
    ):  # fmt: skip
        if getattr(args, name, None) is not None:
            fields[name] = getattr(args, name)
    if hasattr(args, "finetune_depth"):
        fields["finetune_depth"] = args.finetune_depth
    if task is Task.SEGMENTATION and hasattr(args, "context_slices"):
        fields.update(
            context_slices=args.context_slices,
            seg_crop=args.crop,
            val_negative_slices=args.val_negative_slices,
            seg_background_ratio=args.background_ratio,
            seg_region_ratio=args.region_ratio,
            seg_dense_ratio=args.dense_ratio,
            seg_recall_target=args.recall_target,
        )
    fields.update(extra)
    return TrainConfig(task=task, **fields)


def _metrics_text(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if v is not None)


def _cmd_train(args: argparse.Namespace, command: str, runtime: Runtime) -> int:
    from lungcad_training.engine import fit

    task = Task(args.command)
    result = fit(_config(args, task, command), runtime)
    if runtime.is_main:
        print(
            f"{task.value}: best epoch {result.best_epoch} of {result.epochs_done} "
            f"({_metrics_text(result.best_metrics)}); checkpoints in {result.best_path.parent}"
        )
    return 0


def _cmd_mine(args: argparse.Namespace) -> int:
    from lungcad.pipeline.models import resolve_device
    from lungcad_training.mining import load_segmentation, mine_candidates

    device = str(resolve_device(args.device))
    model = load_segmentation(args.weights, device)
    found, hits = mine_candidates(
        args.data, args.cache, model, args.out, threshold=args.threshold, device=device,
        precision=args.precision, spacing_xyz=tuple(args.spacing), overwrite=args.overwrite,
        progress=not args.quiet,
    )  # fmt: skip
    print(f"wrote {args.out}: {found} candidates, {hits} of them within a nodule")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from lungcad_training.export import export_checkpoint

    st_path, card_path = export_checkpoint(args.checkpoint, args.out, args.task, args.overwrite)
    print(f"wrote {st_path} and {card_path}")
    return 0


def _calibration_task(args: argparse.Namespace) -> Task:
    """The task to calibrate; --mined and --out are checked first, so a mistake costs no run."""
    from lungcad.models import WeightsExistsError, WeightsNotFoundError, weights_paths

    task = Task(args.task)
    if task is Task.NODULE and args.mined is None:
        raise TrainingError(
            "calibrate --task nodule needs --mined (lungcad-train mine's csv): the nodule "
            "classifier is calibrated on the candidates detection proposes"
        )
    if task is Task.MALIGNANCY and args.mined is not None:
        raise TrainingError(
            "--mined is for --task nodule only: the malignancy classifier is calibrated on the "
            "validation split's labelled nodules"
        )
    outputs = weights_paths(args.out)
    for path in outputs:
        if path.exists() and not args.overwrite:
            raise WeightsExistsError(path, "exists; pass --overwrite to replace it")
    if not outputs[0].parent.is_dir():
        raise WeightsNotFoundError(
            outputs[0].parent, "folder to save the weights in does not exist"
        )
    return task


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import dataclasses

    from lungcad.models import load_weights, save_weights
    from lungcad.pipeline.models import resolve_device
    from lungcad_training.calibration import calibrate, collect_margins, mined_items_only
    from lungcad_training.datasets import MalignancyDataset, NoduleClassificationDataset

    task = _calibration_task(args)
    device = resolve_device(args.device)
    model, card = load_weights(args.weights, task)
    if card.calibration is not None:
        log.warning(
            "%s is calibrated already (%s); this fit applies on top and its record replaces "
            "the card's",
            args.weights,
            card.calibration.get("method", "?"),
        )
    common = {
        "is_validation": True,
        "val_stride": args.val_stride,
        "crop_size": tuple(model.input_shape),
        "spacing_xyz": tuple(args.spacing),
    }
    split = f"validation series (stride {args.val_stride}) of {args.data}: "
    if task is Task.NODULE:
        dataset = NoduleClassificationDataset(
            args.data, args.cache, extra_candidates=args.mined, **common
        )
        mined_items_only(dataset, args.mined)
        split += f"the candidates of {args.mined.name} there"
        what, positive = "candidates", "nodules"
    else:
        dataset = MalignancyDataset(args.data, args.cache, **common)
        split += "the nodules with a malignancy label there"
        what, positive = "nodules", "malignant"
    margins, labels = collect_margins(model, dataset, device)
    found = calibrate(margins, labels, args.method)
    for other in (m for m in METHODS if m != args.method):
        alt = calibrate(margins, labels, other)
        log.info("%s would give ECE %.3f, NLL %.3f (%s)", other, alt.ece_after, alt.nll_after,
                 alt.summary())  # fmt: skip
    if found.offset:
        log.info("the uncalibrated 0.5 operating point is now p = %.3f: thresholds chosen on "
                 "uncalibrated scores move with it", found.p_at_uncalibrated_half)  # fmt: skip
    calibrated = dataclasses.replace(card, calibration=found.card_entry(split, task.value))
    save_weights(found.fold(model), calibrated, args.out, overwrite=args.overwrite)
    print(
        f"{task.value}, {found.method}: {found.summary()} on {found.n} {what} ({found.positives} "
        f"{positive}): ECE {found.ece_before:.3f} -> {found.ece_after:.3f}, NLL "
        f"{found.nll_before:.3f} -> {found.nll_after:.3f}; wrote {args.out}"
    )
    return 0


def _cmd_range(args: argparse.Namespace) -> int:
    import json

    from lungcad_training.training_range import folder_range, phantom_range, write_range

    if args.data is not None:
        found = folder_range(args.data)
    else:
        seed, cases, size = args.phantom
        found = phantom_range(int(seed), int(cases), size)
    print(json.dumps(found.to_dict(), indent=2))
    for card in args.card:
        print(f"wrote the range into {write_range(card, found)}")
    return 0


def _mine_for_all(args: argparse.Namespace, unet: Path, command: str, runtime: Runtime) -> Path:
    """``OUT/mined_candidates.csv``: the best UNet's own candidates, for the nodule classifier.

    Rank 0 mines (again when the UNet checkpoint is newer than the csv), the others wait.
    """
    from lungcad_training.mining import load_segmentation, mine_candidates

    out = args.out / MINED_CSV
    if runtime.is_main and not (out.is_file() and out.stat().st_mtime >= unet.stat().st_mtime):
        mine_candidates(
            args.data, _config(args, Task.NODULE, command).cache_dir,
            load_segmentation(unet, str(runtime.device)), out, device=str(runtime.device),
            spacing_xyz=tuple(args.spacing), overwrite=True, progress=not args.quiet,
        )  # fmt: skip
    runtime.barrier()
    return out


def _cmd_all(args: argparse.Namespace, command: str, runtime: Runtime) -> int:
    from lungcad_training.engine import check_data_dir, fit
    from lungcad_training.export import export_checkpoint

    check_data_dir(args.data)
    models = args.out / "models"
    results = {}
    for task in TRAIN_TASKS:
        extra: dict[str, object] = {}
        if task is Task.NODULE and not args.no_mine:
            unet = results[Task.SEGMENTATION].best_path
            extra = {"extra_candidates": _mine_for_all(args, unet, command, runtime)}
        if task is Task.MALIGNANCY and args.malignancy_finetune:
            extra = {"finetune": results[Task.NODULE].best_path, "crop_size": None}
        results[task] = fit(_config(args, task, command, **extra), runtime)
    if not runtime.is_main:
        return 0
    lines = ["validation metrics of the exported (best) epochs:"]
    for task, result in results.items():
        st_path, _ = export_checkpoint(
            result.best_path, models / task.value, task=task, overwrite=True
        )
        lines.append(
            f"  {task.value:13s} epoch {result.best_epoch:3d}/{result.epochs_done}: "
            f"{_metrics_text(result.best_metrics)}"
        )
        lines.append(f"  {'':13s} -> {st_path}")
    print("\n".join(lines))
    return 0


def _setup_logging(verbose: bool, rank: int) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    if rank != 0:
        level = logging.WARNING
    prefix = f"[rank {rank}] " if rank else ""
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s {prefix}%(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    command = shlex.join([PROG, *argv])
    try:
        _setup_logging(args.verbose, env_rank())
        with logging_redirect_tqdm():
            if args.command == "export":
                return _cmd_export(args)
            if args.command == "mine":
                return _cmd_mine(args)
            if args.command == "range":
                return _cmd_range(args)
            if args.command == "calibrate":
                return _cmd_calibrate(args)
            with runtime_session(args.device) as runtime:
                if args.command == "all":
                    return _cmd_all(args, command, runtime)
                return _cmd_train(args, command, runtime)
    except (
        LungCADError,
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
    ) as exc:
        log.debug("details", exc_info=True)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (resume with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
