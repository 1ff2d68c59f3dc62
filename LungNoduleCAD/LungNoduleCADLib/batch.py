"""Batch mode: run the module's logic over many CTs and save each case's findings.

    Slicer --no-main-window --python-script LungNoduleCAD/Scripts/batch.py \
        --input CT_OR_FOLDER... --output DIR

loads each CT into the scene, runs detection, writes ``DIR/<case_id>/nodules.seg.nrrd``,
``findings-<band>.mrk.json`` and ``findings.csv`` with Slicer's storage nodes, removes the case's
nodes again, and ends with ``DIR/summary.csv`` and ``DIR/summary.json``. The same function runs
against ``slicer-core`` (no Slicer application), which is how it is tested.

Output names follow the engine's one rule (:mod:`lungcad.safe_names`): the case id is the series
UID only where it is a DICOM UID, else the file name made safe, and every case folder must lie
inside DIR. DIR is checked to take files before any model loads (exit 2). A failing case (any
exception, MemoryError included) is a ``failed`` row and the batch goes on; a summary that cannot
be written is reported and gives exit status 1.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lungcad.safe_names import checked_series_uid, confined_path, printable, safe_case_id
from LungNoduleCADLib.mrml import SlicerServices

log = logging.getLogger(__name__)

CT_SUFFIXES = (".mhd", ".mha", ".nrrd", ".nhdr", ".nii", ".nii.gz")
#: In searched folders, files whose name holds one of these are label maps, not CTs
#: (phantom/LUNA16 truth maps ``<uid>_nodules.nrrd``, Slicer segmentations, label volumes).
NOT_CT_MARKERS = ("_nodules.", ".seg.", "label")
SUMMARY_COLUMNS = (
    "case_id",
    "input",
    "status",
    "findings",
    "suspicious",
    "highest_malignancy",
    "seconds",
    "output",
    "message",
)


@dataclass
class CaseSummary:
    case_id: str
    input: str
    status: str  # "done" or "failed"
    findings: int | None = None
    suspicious: int | None = None
    highest_malignancy: float | None = None
    seconds: float = 0.0
    output: str = ""
    message: str = ""


def _is_ct_file(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in CT_SUFFIXES) and not any(
        marker in name for marker in NOT_CT_MARKERS
    )


def case_id_for(path: Path, series_uid: str | None) -> str:
    """The series UID where it is a DICOM UID, else the file name without its image suffix,
    made safe (DESIGN.md "Outputs"; :func:`lungcad.safe_names.safe_case_id`)."""
    uid, _ = checked_series_uid(series_uid)
    if uid:
        return uid
    name = path.name
    for suffix in CT_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return safe_case_id(name)


def _unique(case_id: str, used: set[str]) -> str:
    """``case_id``, or ``case_id-2``, ``-3``... when an earlier input of this run took it."""
    candidate, n = case_id, 2
    while candidate in used:
        candidate, n = f"{case_id}-{n}", n + 1
    used.add(candidate)
    return candidate


def find_inputs(paths: Sequence[Path]) -> list[Path]:
    """CT files and DICOM folders named on the command line.

    Folders are searched for CT files (label maps, see :data:`NOT_CT_MARKERS`, are skipped) and
    a folder without any is taken as a DICOM series. Anything else that exists is taken as
    named, a FIFO or device too: reading it fails that case alone (read_ct refuses it), where
    "no such file" would stop the whole batch. Only a path that does not exist does that.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _is_ct_file(p))
            if files:
                found.extend(files)
            else:  # a folder without image files: treat it as one DICOM series folder
                found.append(path)
        elif path.exists():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return list(dict.fromkeys(found))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="LungNoduleCAD batch",
        description="Detect lung nodules in CTs with the LungNoduleCAD Slicer logic.",
    )
    p.add_argument(
        "--input",
        nargs="+",
        type=Path,
        required=True,
        help="CT files (.mhd .mha .nrrd .nii .nii.gz), folders of them (label maps such as "
        "*_nodules.nrrd and *.seg.nrrd are skipped), or DICOM folders; a path that does not "
        "exist stops the batch at once with exit status 2, before any work",
    )
    p.add_argument(
        "--output",
        type=Path,
        required=True,
        help="results folder; created if needed and checked to take files before any model "
        "loads (exit 2 if it is a file or read-only)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--models", type=Path, default=None, help="weights folder (default: bundled)")
    # defaults (None): lungcad.pipeline.Thresholds(), the one place they are set; the parser
    # is built before the engine (and PyTorch) is imported
    for name in ("segmentation", "nodule", "malignancy"):
        p.add_argument(
            f"--{name}-threshold", type=float, default=None, help="default: the engine's default"
        )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace results of cases already in the output folder",
    )
    return p


def _write_summary(out: Path, rows: list[CaseSummary], extra: dict) -> str | None:
    """Write summary.csv and summary.json; returns why they could not be written, else None."""
    try:
        _write_summary_files(out, rows, extra)
    except OSError as exc:
        log.error("%s: summary not written: %s", out, exc)
        return printable(f"{type(exc).__name__}: {exc}", 500)
    return None


def _write_summary_files(out: Path, rows: list[CaseSummary], extra: dict) -> None:
    from lungcad.atomic import write_text_atomic

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    write_text_atomic(out / "summary.csv", buffer.getvalue())
    payload = {**extra, "cases": [asdict(r) for r in rows]}
    write_text_atomic(out / "summary.json", json.dumps(payload, indent=2) + "\n")


def main(
    argv: Sequence[str] | None = None,
    services: SlicerServices | None = None,
    runner=None,
) -> int:
    """Run the batch; returns 0 when every case succeeded, 1 when some failed, 2 on bad input."""
    from lungcad.ctio import read_ct
    from lungcad.errors import LungCADError
    from lungcad.pipeline import Thresholds
    from lungcad.safe_names import check_output_root
    from LungNoduleCADLib.logic import InProcessRunner, LungNoduleCADCore, RunRequest
    from LungNoduleCADLib.scene import remove_node_with_helpers, remove_output_nodes
    from LungNoduleCADLib.volume import add_volume_node_from_ct

    args = build_parser().parse_args(argv)
    try:
        given = {
            name: value
            for name in ("segmentation", "nodule", "malignancy")
            if (value := getattr(args, f"{name}_threshold")) is not None
        }
        thresholds = Thresholds(**given)
        inputs = find_inputs(args.input)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}")
        return 2
    if not inputs:
        print("error: no CT found in the inputs")
        return 2
    try:
        check_output_root(args.output)  # before any model loads
    except LungCADError as exc:
        print(f"error: {exc}")
        return 2
    services = services or SlicerServices.current()
    core = LungNoduleCADCore(services, runner=runner or InProcessRunner())
    request = RunRequest(thresholds=thresholds, device=args.device, model_folder=args.models)
    rows: list[CaseSummary] = []
    used: set[str] = set()
    started_all = time.perf_counter()
    for number, path in enumerate(inputs, start=1):
        started = time.perf_counter()
        case_id = case_id_for(path, None)
        volume = None
        named = False  # whether case_id is this case's own, unique in the run
        try:
            ct = read_ct(path)
            case_id, named = _unique(case_id_for(path, ct.series_uid), used), True
            _, uid_warning = checked_series_uid(ct.series_uid)
            if uid_warning:
                log.warning("%s: %s", path, uid_warning)
            confined_path(args.output, case_id)  # raises if it would leave the output folder
            folder = args.output / case_id
            if folder.exists() and any(folder.iterdir()) and not args.overwrite:
                raise FileExistsError(f"{folder} already holds results (pass --overwrite)")
            volume = add_volume_node_from_ct(services.scene, ct, name=case_id)
            core.run(volume, request)
            saved = core.save(folder, case_id=case_id)
            summary = core.result.summary
            rows.append(
                CaseSummary(
                    case_id,
                    str(path),
                    "done",
                    summary.finding_count,
                    summary.suspicious_count,
                    summary.highest_malignancy,
                    round(time.perf_counter() - started, 2),
                    str(folder),
                    f"{summary.text} Warning: {uid_warning}" if uid_warning else summary.text,
                )
            )
            print(
                f"[{number}/{len(inputs)}] {case_id}: {summary.text} -> {saved.segmentation.parent}"
            )
        except Exception as exc:  # MemoryError too: one case must not end the batch
            log.debug("case %s failed", path, exc_info=True)
            if not named:  # one id per summary row: huge.nrrd and huge.nii.gz both fail
                case_id = _unique(case_id, used)
            message = printable(str(exc) or type(exc).__name__, 500)
            if not isinstance(exc, (LungCADError, ValueError, OSError, RuntimeError)):
                message = f"{type(exc).__name__}: {message}"
            rows.append(
                CaseSummary(
                    case_id,
                    str(path),
                    "failed",
                    seconds=round(time.perf_counter() - started, 2),
                    message=message,
                )
            )
            print(f"[{number}/{len(inputs)}] {case_id}: FAILED: {message}")
        finally:
            if volume is not None:
                remove_output_nodes(services.scene, volume)
                remove_node_with_helpers(services.scene, volume)
    failed = sum(r.status != "done" for r in rows)
    summary_error = _write_summary(
        args.output,
        rows,
        {
            "thresholds": asdict(thresholds),
            "device": args.device,
            "models": str(args.models) if args.models else "bundled",
            "seconds": round(time.perf_counter() - started_all, 2),
        },
    )
    done = f"{len(rows) - failed} of {len(rows)} cases done"
    if summary_error:
        print(f"{done}; summary NOT written: {summary_error}")
        return 1
    print(f"{done}; summary: {args.output / 'summary.csv'}")
    return 1 if failed else 0
