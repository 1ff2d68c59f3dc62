"""Batch mode: run the module's logic over many CTs and save each case's findings.

    Slicer --no-main-window --python-script LungNoduleCAD/Scripts/batch.py \
        --input CT_OR_FOLDER... --output DIR

loads each CT into the scene, runs detection, writes ``DIR/<case_id>/nodules.seg.nrrd``,
``findings-<band>.mrk.json`` and ``findings.csv`` with Slicer's storage nodes, removes the case's
nodes again, and ends with ``DIR/summary.csv`` and ``DIR/summary.json``. The same function runs
against ``slicer-core`` (no Slicer application), which is how it is tested.
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
    """The series UID, else the file name without its image suffix (DESIGN.md "Outputs")."""
    if series_uid:
        return series_uid
    name = path.name
    for suffix in CT_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def find_inputs(paths: Sequence[Path]) -> list[Path]:
    """CT files and DICOM folders named on the command line.

    Files named directly are always taken; folders are searched for CT files (label maps, see
    :data:`NOT_CT_MARKERS`, are skipped) and a folder without any is taken as a DICOM series.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _is_ct_file(p))
            if files:
                found.extend(files)
            else:  # a folder without image files: treat it as one DICOM series folder
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
        "*_nodules.nrrd and *.seg.nrrd are skipped), or DICOM folders",
    )
    p.add_argument("--output", type=Path, required=True, help="results folder")
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


def _write_summary(out: Path, rows: list[CaseSummary], extra: dict) -> None:
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
    services = services or SlicerServices.current()
    core = LungNoduleCADCore(services, runner=runner or InProcessRunner())
    request = RunRequest(thresholds=thresholds, device=args.device, model_folder=args.models)
    args.output.mkdir(parents=True, exist_ok=True)
    rows: list[CaseSummary] = []
    started_all = time.perf_counter()
    for number, path in enumerate(inputs, start=1):
        started = time.perf_counter()
        case_id = path.name
        volume = None
        try:
            ct = read_ct(path)
            case_id = case_id_for(path, ct.series_uid)
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
                    summary.text,
                )
            )
            print(
                f"[{number}/{len(inputs)}] {case_id}: {summary.text} -> {saved.segmentation.parent}"
            )
        except (LungCADError, ValueError, OSError, RuntimeError) as exc:
            log.debug("case %s failed", path, exc_info=True)
            rows.append(
                CaseSummary(
                    case_id,
                    str(path),
                    "failed",
                    seconds=round(time.perf_counter() - started, 2),
                    message=str(exc),
                )
            )
            print(f"[{number}/{len(inputs)}] {case_id}: FAILED: {exc}")
        finally:
            if volume is not None:
                remove_output_nodes(services.scene, volume)
                remove_node_with_helpers(services.scene, volume)
    failed = sum(r.status != "done" for r in rows)
    _write_summary(
        args.output,
        rows,
        {
            "thresholds": asdict(thresholds),
            "device": args.device,
            "models": str(args.models) if args.models else "bundled",
            "seconds": round(time.perf_counter() - started_all, 2),
        },
    )
    print(f"{len(rows) - failed} of {len(rows)} cases done; summary: {args.output / 'summary.csv'}")
    return 1 if failed else 0
