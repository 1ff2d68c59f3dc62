"""lungcad evaluate: score detection results against a LUNA16-layout folder.

FROC/CPM by the LUNA16 protocol over the series that have results, malignancy ROC AUC beside the
diameter-only baseline, the seeds' end-to-end table, and per-case overlay pictures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lungcad.cli import options
from lungcad.cli_types import bounded_float, bounded_int
from lungcad.errors import LungCADError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="FROC/CPM, malignancy AUC and the end-to-end table of detection results",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--data", required=True, type=Path, help="LUNA16-layout folder (the truth)")
    p.add_argument(
        "--results",
        required=True,
        type=Path,
        help="what `lungcad detect --out` wrote (one folder per case), or a LUNA16 submission csv",
    )
    options.add_out(p, help="folder for the evaluation's files")
    options.add_overwrite(p, "write into a non-empty --out")
    p.add_argument(
        "--min-diameter-mm",
        type=bounded_float(0.0),
        default=0.0,
        help="ignore annotations smaller than this (hits on them are neither TP nor FP), e.g. 5",
    )
    p.add_argument(
        "--max-marks",
        type=bounded_int(0),
        default=100,
        help="keep at most this many candidates per scan, highest first (LUNA16: 100; 0 = all)",
    )
    p.add_argument(
        "--non-nodule-radius-mm",
        type=bounded_float(0.0, lo_open=True),
        default=5.0,
        help="a class-0 candidate of the data counts as found within this distance (table)",
    )
    options.add_thresholds(p, ("nodule", "malignancy"), overrides=True)
    p.add_argument(
        "--bootstrap",
        type=bounded_int(0),
        default=0,
        help="scan resamples for 95%% confidence intervals (LUNA16 uses 1000)",
    )
    options.add_seed(p, 0, "random seed of the bootstrap")
    p.add_argument(
        "--all-series",
        action="store_true",
        help="also count scans on disk without results (as scans with no candidates)",
    )
    p.add_argument("--no-overlays", action="store_true", help="skip the per-case pictures")
    options.add_quiet(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from lungcad.evaluation import (
        EvaluationOptions,
        evaluate,
        load_results,
        load_truth,
        select_cases,
        summary_lines,
        write_outputs,
    )

    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise LungCADError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise LungCADError(f"{out} is not empty; choose another folder or pass --overwrite")
    options = EvaluationOptions(
        min_diameter_mm=args.min_diameter_mm,
        max_marks=args.max_marks if args.max_marks > 0 else None,
        non_nodule_radius_mm=args.non_nodule_radius_mm,
        nodule_threshold=args.nodule_threshold,
        malignancy_threshold=args.malignancy_threshold,
        bootstrap=args.bootstrap,
        seed=args.seed,
    )
    started = time.perf_counter()
    truth = load_truth(args.data)
    results = load_results(args.results)
    cases = select_cases(truth, results.cases, all_series=args.all_series)
    evaluation = evaluate(truth, cases, options, notes=results.skipped)
    written = write_outputs(
        evaluation,
        truth,
        args.results,
        out,
        overlays=not args.no_overlays,
        progress=not args.quiet,
    )
    for line in summary_lines(evaluation):
        print(line)
    print(f"wrote {len(written)} files to {out} in {time.perf_counter() - started:.1f} s")
    return 0
