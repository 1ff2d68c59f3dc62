"""``lungcad detect`` (a cohort of CTs) and ``lungcad demo`` (one synthetic CT against its truth).

Exit status of ``detect``: 0 when every case is done, 1 when any case failed (its error is in
OUT/<case_id>/error.txt and summary.csv) or the summary could not be written, 2 for usage errors
found before any work (bad arguments, an input that does not exist, no input found, an output
folder that is a file or does not take files, weights that do not load).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lungcad.cli import options
from lungcad.cohort_status import Outcome

if TYPE_CHECKING:
    from lungcad.ct import CT
    from lungcad.reports import ExtraWriter, ResultLike


def _cmd_detect(args: argparse.Namespace) -> int:
    return run_detect(args)


def run_detect(
    args: argparse.Namespace,
    detect_with: Callable[[CT], ResultLike] | None = None,
    extra_writer: ExtraWriter | None = None,
) -> int:
    """``lungcad detect`` with parsed options (:func:`add_run_options` plus ``inputs`` and
    ``out``); Slicer batch mode runs the same with its own detection and files.

    ``detect_with`` replaces the cascade's detection (the weights' model cards still make the
    resume fingerprint), ``extra_writer`` adds files to each case (see
    :func:`lungcad.reports.write_case_outputs`). Returns the exit status.
    """
    from lungcad.cohort import (
        CascadeDetector,
        assign_case_ids,
        collect_inputs,
        parse_shard,
        resume_plan,
        run_cohort,
        select_shard,
    )
    from lungcad.safe_names import check_output_root

    thresholds = options.thresholds_from(args)
    index, count = parse_shard(args.shard) if args.shard else (0, 1)
    cases = assign_case_ids(collect_inputs(args.inputs, exclude=args.out))
    check_output_root(args.out)  # a file, read-only or uncreatable folder: exit 2, nothing ran
    detector = CascadeDetector(
        args.models, args.device, thresholds, args.precision, mirror_nodule=not args.no_mirror
    )
    settings = detector.settings()  # the model cards only: a bad weights folder stops here
    if args.dicom_out:  # results without the DICOM files are not this run's results
        from lungcad.dicom_out.case import DICOM_OUT_OPTION

        settings = dataclasses.replace(
            settings, options={**settings.options, DICOM_OUT_OPTION: True}
        )
    mine = select_shard(cases, index, count)
    todo, reruns = resume_plan(mine, args.out, args.overwrite, settings)
    shard = f" (shard {index}/{count})" if count > 1 else ""
    print(
        f"{len(cases)} case{'s' if len(cases) != 1 else ''} found; this run{shard}: "
        f"{len(mine)}, of which {len(mine) - len(todo)} already done"
        f"{' (redone: --overwrite)' if args.overwrite and mine else ''}"
        f"{f', {len(reruns)} rerun (results no longer match)' if reruns else ''}"
    )
    for case_id, reason in reruns.items():
        print(f"  rerun {case_id}: {reason}")
    extra, notes = extra_writer, {}
    if todo and (detect_with is None or args.dicom_out):
        models = detector.load()  # a bad weights folder is a usage error, before any case
        print(
            f"models on {models.device} ({models.precision.value}): "
            + "; ".join(models.versions().values())
        )
        if args.dicom_out:  # the DICOM objects name the algorithm: its cards and versions
            from lungcad.dicom_out.case import algorithm_for, case_writer
            from lungcad.reports.case import chain_writers

            dicom = case_writer(algorithm_for(settings.models, models), notes)
            extra = chain_writers(extra_writer, dicom)
    started = time.perf_counter()
    statuses = run_cohort(
        mine,
        args.out,
        detector if detect_with is None else detect_with,
        overwrite=args.overwrite,
        progress=not args.quiet,
        settings=settings,
        extra_writer=extra,
    )
    by_status = {s: [c for c in statuses if c.status == s] for s in Outcome}
    print(
        f"done in {time.perf_counter() - started:.1f} s: {len(by_status[Outcome.OK])} ok, "
        f"{len(by_status[Outcome.SKIPPED])} skipped (done before), "
        f"{len(by_status[Outcome.FAILED])} failed"
    )
    for status in by_status[Outcome.OK]:
        print(f"  {status.case_id}: {status.findings} findings, {status.suspicious} suspicious")
        for warning in status.warnings:
            print(f"    warning: {warning}")
        if status.case_id in notes:
            print(f"    DICOM outputs: {notes[status.case_id]}")
    for status in by_status[Outcome.FAILED]:
        print(f"  FAILED {status.case_id} ({status.input}): {status.error}")
    summary = Path(args.out) / "summary.csv"
    if statuses.summary_error:
        print(f"outputs: {args.out}/<case_id>/; summary NOT written: {statuses.summary_error}")
        return 1
    print(f"outputs: {args.out}/<case_id>/; summary: {summary}")
    return 1 if by_status[Outcome.FAILED] else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """The embedded default job: a synthetic chest CT, the bundled weights, and the truth."""
    from lungcad.demo import run_demo
    from lungcad.phantom import PhantomSize

    report = run_demo(
        args.out,
        seed=args.seed,
        size=PhantomSize(args.size),
        overwrite=args.overwrite,
        device=args.device,
        precision=args.precision,
        progress=print,
    )
    if report.status == Outcome.FAILED:
        print(f"detection failed: {report.error}")
        return 1
    found = len(report.matches)
    print(f"detection with the bundled weights: {found} findings in {report.seconds:.1f} s")
    for line in report.lines():
        print(line)
    print(
        f"outputs: {report.case_folder}/ (results.json, candidates.csv, nodules.seg.nrrd, "
        "findings.mrk.json, overlay.png, detection.npz)"
    )
    return 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``detect`` and ``demo``."""
    p = subparsers.add_parser(
        "detect",
        help="find nodules in CT files or folders; per-case outputs and a cohort summary",
        description="Run the cascade on each CT and write OUT/<case_id>/ (results.json, "
        "candidates.csv, nodules.seg.nrrd, findings.mrk.json, overlay.png, detection.npz) and "
        "OUT/summary.csv. Case ids are series UIDs (digits and dots, at most 64 characters) or "
        "file names made safe (no separators, '..' or control characters; a short hash is "
        "added where a name was changed); nothing is written outside OUT. Cases already done "
        "with the same input (size, time, header), thresholds, weights and --no-mirror choice are "
        "skipped (resume); a case whose results no longer match is rerun and the reason is "
        "printed and recorded (results.json rerun_reason, summary.csv). A case that fails is "
        "recorded in summary.csv (and OUT/<case_id>/error.txt where that folder can be "
        "written) and the run goes on.",
        epilog="exit status: 0 all cases done, 1 some case failed (or summary.csv could not be "
        "written), 2 usage error before any work: a bad option, an INPUT that does not exist "
        "(the run stops at once), no CT found, --out a file or a folder that does not take "
        "files, weights that do not load",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="CT files (.mhd .mha .nrrd .nii .nii.gz), folders (searched; a folder of DICOM "
        "files is one series), or .txt lists of them (one per line, # comments). A path that "
        "does not exist stops the run at once with exit status 2, before any work",
    )
    options.add_out(
        p,
        help="output folder (one subfolder per case); created if needed, and checked to take "
        "files before any model loads (exit 2 if it is a file or read-only)",
    )
    add_run_options(p)
    p.set_defaults(func=_cmd_detect)

    p = subparsers.add_parser(
        "demo", help="the default job: detect on an embedded synthetic chest CT, check the truth"
    )
    options.add_out(
        p, help="folder for the phantom and its results", required=False,
        default=Path("demo-output"),
    )  # fmt: skip
    options.add_seed(p, 2023, "the phantom's random seed")
    p.add_argument("--size", choices=["small", "full"], default="full")
    options.add_device(p)
    options.add_precision(p)
    options.add_overwrite(p, "write into a non-empty --out")
    p.set_defaults(func=_cmd_demo)


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options of a cohort run besides its inputs and output folder: thresholds, weights,
    device, precision, mirror, shard, overwrite, quiet (``lungcad detect`` and Slicer batch)."""
    options.add_thresholds(p)
    options.add_models(p)
    options.add_device(p)
    options.add_precision(p)
    options.add_mirror(p)
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="run cases I, I+N, I+2N, ... of the sorted case list (0 <= I < N), e.g. for a "
        "job array: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT",
    )
    options.add_overwrite(
        p, "redo cases that are already done, even where their results still match"
    )
    p.add_argument(
        "--dicom-out",
        action="store_true",
        help="also write, per case, a DICOM Segmentation (nodules.seg.dcm) and a TID 1500 "
        "Structured Report (nodules.sr.dcm) referencing the input series, and a one-page "
        "report.pdf; an input that is not a DICOM series (or lacks its UIDs) gets report.pdf "
        "only and a one-line note. results.json then records the UIDs under 'dicom'",
    )
    options.add_quiet(p)
