"""What an evaluation writes (froc.csv, froc.png, roc.png, end_to_end.csv, metrics.json,
overlays/<uid>.png) and the short summary the command prints."""

from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lungcad.atomic import write_text_atomic
from lungcad.evaluation.endtoend import COLUMNS, ROWS
from lungcad.evaluation.evaluate import SIZE_RATE, Evaluation
from lungcad.evaluation.inputs import Truth
from lungcad.evaluation.overlays import write_case_overlay
from lungcad.evaluation.plots import plot_froc, plot_roc

logger = logging.getLogger(__name__)

METRICS_SCHEMA = "lungcad.evaluation/1"
HIT_RULE = (
    "a candidate hits an annotation when its LPS distance to the centre is < diameter / 2; "
    "each annotation counts once with its best-probability hit"
)


def _num(value: float | None) -> float | None:
    """JSON-safe number: NaN and infinities become null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _rate_key(rate: float) -> str:
    return f"{rate:g}"


def metrics(ev: Evaluation, data_dir: Path, results: Path) -> dict[str, Any]:
    """Everything metrics.json holds, as plain JSON types."""
    f = ev.froc
    ci = None
    if f.ci_low is not None and f.ci_high is not None:
        keys = [*map(_rate_key, f.rates), "cpm"]
        ci = {
            "confidence": ev.options.confidence,
            "samples": f.bootstrap_samples,
            "seed": ev.options.seed,
            "low": {k: _num(v) for k, v in zip(keys, f.ci_low, strict=True)},
            "high": {k: _num(v) for k, v in zip(keys, f.ci_high, strict=True)},
        }
    mal = ev.malignancy
    table = ev.table
    thresholds = {
        c.case.series_uid: {
            "segmentation": c.thresholds.segmentation,
            "nodule": c.thresholds.nodule,
            "malignancy": c.thresholds.malignancy,
        }
        for c in ev.cases
    }
    return {
        "schema": METRICS_SCHEMA,
        "data_dir": str(data_dir),
        "results": str(results),
        "series_evaluated": len(ev.cases),
        "series": ev.series,
        "series_without_candidates": sum(len(c.case) == 0 for c in ev.cases),
        "protocol": {
            "hit_rule": HIT_RULE,
            "fp_rates": list(f.rates),
            "max_marks_per_scan": ev.options.max_marks,
            "min_diameter_mm": ev.options.min_diameter_mm,
            "excluded_annotations": ev.n_excluded_annotations,
            "annotations_below_min_diameter": ev.n_small_annotations_ignored,
            "non_nodule_radius_mm": ev.options.non_nodule_radius_mm,
        },
        "froc": {
            "cpm": _num(f.cpm),
            "sensitivity": {
                _rate_key(r): _num(s) for r, s in zip(f.rates, f.sensitivities, strict=True)
            },
            "ci": ci,
            "scans": f.n_scans,
            "nodules": f.n_nodules,
            "nodules_hit_by_any_candidate": f.n_detected,
            "candidates": f.n_candidates,
            "false_positives": f.n_false_positives,
            "ignored_candidates": f.n_ignored,
            "candidates_over_cap": f.n_over_cap,
            "duplicate_hits": f.n_duplicates,
        },
        "sensitivity_by_size": {
            "fp_per_scan": SIZE_RATE,
            "probability_threshold": _num(ev.size_threshold),
            "rows": [
                {
                    "size": s.label,
                    "nodules": s.nodules,
                    "detected": s.detected,
                    "sensitivity": _num(s.sensitivity),
                }
                for s in ev.by_size
            ],
        },
        "operating_point": ev.operating_point(),
        "malignancy": None
        if mal is None
        else {
            "auc": _num(mal.auc),
            "diameter_auc": _num(mal.diameter_auc),
            "diameter_auc_all_annotated": _num(mal.diameter_auc_all),
            "detected_malignant": mal.n_malignant,
            "detected_benign": mal.n_benign,
            "annotated": mal.n_all,
        },
        "end_to_end": None
        if table is None
        else {
            "rows": list(ROWS),
            "columns": list(COLUMNS),
            "counts": table.counts.tolist(),
            "non_nodules_inside_annotations_left_out": table.non_nodules_inside_annotations,
        },
        "thresholds": thresholds,
        "notes": ev.notes,
    }


def froc_csv(ev: Evaluation) -> str:
    out = io.StringIO()
    out.write("fps_per_scan,sensitivity,threshold\n")
    c = ev.froc.curve
    for fps, sens, thr in zip(c.fps_per_scan, c.sensitivity, c.thresholds, strict=True):
        out.write(f"{fps:.9g},{sens:.9g},{thr:.9g}\n")
    return out.getvalue()


def write_outputs(
    ev: Evaluation,
    truth: Truth,
    results: Path,
    out: Path,
    overlays: bool = True,
    progress: bool = False,
) -> list[Path]:
    """Write every output file under ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [
        write_text_atomic(out / "froc.csv", froc_csv(ev)),
        plot_froc(ev.froc, out / "froc.png"),
    ]
    if ev.malignancy is not None:
        written.append(plot_roc(ev.malignancy, out / "roc.png"))
    if ev.table is not None:
        written.append(write_text_atomic(out / "end_to_end.csv", ev.table.csv_text()))
    if overlays:
        missing = []
        for ce in tqdm(ev.cases, desc="overlays", disable=not progress):
            ct_path = truth.series_paths.get(ce.case.series_uid)
            if ct_path is None:
                missing.append(ce.case.series_uid)
                continue
            target = out / "overlays" / f"{ce.case.series_uid}.png"
            written.append(write_case_overlay(ce, ct_path, target))
        if missing:
            ev.notes.append(f"no overlay for {len(missing)} series without a CT under subset*/")
    data = metrics(ev, truth.data_dir, results)
    written.append(write_text_atomic(out / "metrics.json", json.dumps(data, indent=2) + "\n"))
    return written


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def summary_lines(ev: Evaluation) -> list[str]:
    """A few lines a person reads first: CPM, sensitivities, AUC vs baseline, the table."""
    f = ev.froc
    empty = sum(len(c.case) == 0 for c in ev.cases)
    lines = [
        f"evaluated {f.n_scans} series with results ({empty} without candidates): "
        f"{f.n_nodules} nodules, {f.n_candidates} candidates, "
        f"{f.n_detected} nodules hit by any candidate",
        f"CPM {_fmt(f.cpm)}"
        + (
            f" (95% CI {_fmt(f.ci_low[-1])}-{_fmt(f.ci_high[-1])})"
            if f.ci_low is not None and f.ci_high is not None
            else ""
        ),
        "sensitivity at FP/scan: "
        + ", ".join(f"{r:g}: {_fmt(s)}" for r, s in zip(f.rates, f.sensitivities, strict=True)),
    ]
    op = ev.operating_point()
    lines.append(
        f"at the results' thresholds: {op['findings']} findings, sensitivity "
        f"{_fmt(op['sensitivity'])}, {op['false_positives_per_scan']:.2f} FP/scan"
    )
    big = ev.by_size[-1]
    lines.append(
        f"nodules >= 5 mm at {SIZE_RATE:g} FP/scan: {big.detected}/{big.nodules} "
        f"(sensitivity {_fmt(big.sensitivity)})"
    )
    if ev.malignancy is not None:
        m = ev.malignancy
        lines.append(
            f"malignancy ROC AUC {_fmt(m.auc)} vs diameter-only {_fmt(m.diameter_auc)} "
            f"over {m.n_malignant} malignant + {m.n_benign} benign detected nodules"
        )
    if ev.table is not None:
        lines.append("end to end (rows: truth; columns: where the cascade left it):")
        lines += ["  " + line for line in ev.table.lines()]
    lines += [f"note: {n}" for n in ev.notes]
    return lines
