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
from lungcad_training.calibration import METHODS
from lungcad_training.cli_parser import MINED_CSV, PROG, TRAIN_TASKS, build_parser
from lungcad_training.cli_parser import config_from_args as _config
from lungcad_training.errors import TrainingError
from lungcad_training.runtime import Runtime, env_rank, runtime_session

log = logging.getLogger("lungcad_training")


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
    model = load_segmentation(args.models, device)
    found, hits = mine_candidates(
        args.data, args.cache, model, args.out, threshold=args.threshold, device=device,
        precision=args.precision, spacing_xyz=tuple(args.spacing), overwrite=args.overwrite,
        progress=args.progress,
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
            spacing_xyz=tuple(args.spacing), overwrite=True, progress=args.progress,
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
