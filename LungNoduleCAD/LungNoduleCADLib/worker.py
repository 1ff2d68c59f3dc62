"""Child-process entry point: read a CT file, run the cascade, save the result as .npz.

The module's GUI runs this with ``python -m LungNoduleCADLib.worker`` (PythonSlicer inside
Slicer) so inference never blocks the GUI thread. It imports only the engine, never Slicer, and
speaks a line protocol on stdout that :mod:`LungNoduleCADLib.process` parses:

    LUNGCAD_PROGRESS {"stage": "segmentation", "fraction": 0.4}
    LUNGCAD_INFO {"device": "cuda:0", "precision": "bf16"}
    LUNGCAD_DONE {"result": "/tmp/.../result.npz", "findings": 3}
    LUNGCAD_ERROR {"message": "..."}

Exit status: 0 done, 2 a problem the message explains, 3 cancelled (never sent by the parent,
which kills the process instead, but kept for symmetry with the engine's DetectionCancelled).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from lungcad.cli import options
from lungcad.cli_types import probability
from lungcad.stages import SETUP_STAGES, Stage

PROGRESS = "LUNGCAD_PROGRESS"
INFO = "LUNGCAD_INFO"
DONE = "LUNGCAD_DONE"
ERROR = "LUNGCAD_ERROR"
#: Before the cascade's own stages (lungcad.pipeline.STAGES) the worker reports these names.
WORKER_STAGES = tuple(stage.value for stage in SETUP_STAGES)


def emit(kind: str, payload: dict) -> None:
    print(f"{kind} {json.dumps(payload)}", flush=True)


def _three_probabilities(text: str) -> tuple[float, float, float]:
    """``S,N,M``: the segmentation, nodule and malignancy thresholds, each in [0, 1]."""
    values = text.split(",")
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"needs three numbers S,N,M, got {text!r}")
    s, n, m = (probability(v) for v in values)
    return s, n, m


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="LungNoduleCADLib.worker", description=__doc__.split("\n")[0])
    p.add_argument("--input", type=Path, required=True, help="CT file written by the parent")
    options.add_out(p, help="where to save the .npz result")
    options.add_device(p)
    options.add_models(p)
    p.add_argument(
        "--thresholds",
        type=_three_probabilities,
        default=None,
        help="segmentation,nodule,malignancy thresholds (each in [0, 1]; default: the engine's, "
        "lungcad.pipeline.Thresholds())",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        from lungcad.openmp import prefer_passive_waits

        prefer_passive_waits()  # before the engine's imports load torch
        from lungcad.ctio import read_ct
        from lungcad.errors import LungCADError
        from lungcad.pipeline import CascadeModels, DetectionCancelled, Thresholds, detect
    except ImportError as exc:  # e.g. PyTorch not installed in this Python
        emit(ERROR, {"message": f"cannot import the engine: {exc}"})
        return 2
    try:
        thresholds = Thresholds() if args.thresholds is None else Thresholds(*args.thresholds)
        emit(PROGRESS, {"stage": Stage.LOADING_CT.value, "fraction": 0.0})
        ct = read_ct(args.input)
        emit(PROGRESS, {"stage": Stage.LOADING_MODELS.value, "fraction": 0.0})
        models = CascadeModels.load(args.models, device=args.device)
        emit(INFO, {"device": str(models.device), "precision": models.precision.value})

        def progress(stage: str, fraction: float) -> None:
            emit(PROGRESS, {"stage": stage, "fraction": round(float(fraction), 4)})

        result = detect(ct, models, thresholds, progress=progress)
        result.save(args.out)
    except DetectionCancelled:
        emit(ERROR, {"message": "cancelled"})
        return 3
    except (LungCADError, ValueError, OSError, RuntimeError) as exc:
        emit(ERROR, {"message": str(exc)})
        return 2
    emit(DONE, {"result": str(args.out), "findings": len(result.findings)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
