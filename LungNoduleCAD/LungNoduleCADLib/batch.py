"""Batch mode: ``lungcad detect`` inside Slicer, plus the files Slicer's storage nodes write.

    Slicer --no-main-window --python-script LungNoduleCAD/Scripts/batch.py \
        --input CT_OR_FOLDER... --out DIR [--shard I/N] [--overwrite] [...]

The run is :func:`lungcad.cli_detect.run_detect`, the one behind ``lungcad detect``: the same
discovery (:func:`lungcad.cohort.collect_inputs`), case ids, resume (a case done before with the
same input, thresholds, weights and options is skipped; one whose results no longer match is
rerun), ``--shard``, summary.csv and per-case files (results.json, candidates.csv,
nodules.seg.nrrd, findings.mrk.json, overlay.png, detection.npz), and the same exit status (0
all done, 1 a case failed, 2 bad usage before any work). On top of those each case gets
``DIR/<case_id>/slicer/``: the module's nodes for the case, shown in the scene through its logic
and written by Slicer's storage nodes (:mod:`LungNoduleCADLib.storage`), before results.json
marks the case done; the case's nodes are removed again. The same function runs against
``slicer-core`` (no Slicer application), which is how it is tested.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from LungNoduleCADLib.mrml import SlicerServices

log = logging.getLogger(__name__)

PROG = "LungNoduleCAD batch"


def build_parser() -> argparse.ArgumentParser:
    from lungcad.cli import options
    from lungcad.cli_detect import add_run_options

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Detect lung nodules in CTs as `lungcad detect` does, and write each "
        "case's findings with Slicer's storage nodes too (DIR/<case_id>/slicer/).",
        epilog="exit status: 0 all cases done, 1 some case failed (or summary.csv could not be "
        "written), 2 usage error before any work",
    )
    p.add_argument(
        "--input",
        nargs="+",
        type=Path,
        required=True,
        help="CT files (.mhd .mha .nrrd .nii .nii.gz), folders (searched; a folder of DICOM "
        "files is one series; *.seg.nrrd and *_nodules.nrrd are skipped), or .txt lists of them. "
        "A path that does not exist stops the batch at once with exit status 2, before any work",
    )
    options.add_out(
        p,
        help="results folder (one subfolder per case); created if needed and checked to take "
        "files before any model loads (exit 2 if it is a file or read-only)",
    )
    add_run_options(p)
    return p


class SceneCaseFiles:
    """The batch's :data:`lungcad.reports.ExtraWriter`: shows a case's result in the scene through
    the module's logic, writes the nodes with Slicer's storage nodes, and removes them again."""

    def __init__(self, services: SlicerServices) -> None:
        self.services = services

    def __call__(self, result: Any, ct: Any, folder: Path) -> tuple[dict[str, Path], dict]:
        from LungNoduleCADLib.logic import LungNoduleCADCore
        from LungNoduleCADLib.output_nodes import remove_node_with_helpers, remove_output_nodes
        from LungNoduleCADLib.storage import write_scene_files
        from LungNoduleCADLib.volume import add_volume_node_from_ct

        scene = self.services.scene
        volume = add_volume_node_from_ct(scene, ct, name=folder.name)
        try:
            outputs = LungNoduleCADCore(self.services).show_result(volume, result)
            return write_scene_files(outputs, folder), {}
        finally:
            remove_output_nodes(scene, volume)
            remove_node_with_helpers(scene, volume)


def main(
    argv: Sequence[str] | None = None,
    services: SlicerServices | None = None,
    runner: Any = None,
) -> int:
    """Run the batch; returns the exit status (``lungcad detect``'s).

    ``runner`` (a :class:`LungNoduleCADLib.logic.Runner`) replaces the cascade's detection, as
    tests do; resume still fingerprints the weights named by ``--models``.
    """
    from lungcad.cli_detect import run_detect
    from lungcad.errors import LungCADError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad option (argparse printed why)
        return int(exc.code or 0)
    args.inputs = args.input
    detect_with = None
    if runner is not None:
        from lungcad.cli.options import thresholds_from
        from LungNoduleCADLib.logic import RunRequest

        request = RunRequest(
            thresholds=thresholds_from(args), device=args.device, model_folder=args.models
        )

        def detect_with(ct: Any) -> Any:
            return runner(ct, request)

    writer = SceneCaseFiles(services or SlicerServices.current())
    try:
        return run_detect(args, detect_with=detect_with, extra_writer=writer)
    except (LungCADError, ValueError, FileNotFoundError) as exc:  # as `lungcad` reports them
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
