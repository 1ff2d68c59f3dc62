"""The evaluation's curves as PNG: FROC (log FP/scan axis, CPM in the title) and malignancy ROC."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lungcad.atomic import write_bytes_atomic
from lungcad.evaluation.endtoend import MalignancyResult
from lungcad.evaluation.froc import FrocResult

DPI = 100


def _save(fig: Figure, path: Path) -> Path:
    png = io.BytesIO()
    try:
        fig.savefig(png, format="png", dpi=DPI)
    finally:
        fig.clear()
    return write_bytes_atomic(path, png.getvalue())


def plot_froc(froc: FrocResult, path: Path, title: str = "FROC") -> Path:
    """FROC curve from 1/8 to 8 FP/scan (log axis), the seven rates marked, CPM in the title."""
    fig = Figure(figsize=(7.0, 5.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    lo, hi = froc.rates[0] / 1.5, froc.rates[-1] * 1.5
    grid = np.geomspace(lo, hi, 400)
    curve = froc.curve
    if froc.n_nodules:
        ax.plot(grid, curve.sensitivity_at(grid), color="tab:blue", lw=2, label="sensitivity")
        ax.plot(froc.rates, froc.sensitivities, "o", color="tab:blue", ms=5)
        for r, s in zip(froc.rates, froc.sensitivities, strict=True):
            ax.annotate(
                f"{s:.2f}",
                (r, s),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
            )
        if froc.ci_low is not None and froc.ci_high is not None:
            ax.fill_between(
                froc.rates,
                froc.ci_low[:-1],
                froc.ci_high[:-1],
                color="tab:blue",
                alpha=0.2,
                label=f"{froc.bootstrap_samples}-sample bootstrap CI",
            )
        cpm = f"CPM {froc.cpm:.3f}"
    else:
        ax.text(
            0.5,
            0.5,
            "no annotated nodule in the evaluated scans",
            transform=ax.transAxes,
            ha="center",
        )
        cpm = "CPM n/a"
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(0.0, 1.02)
    ax.set_xticks(froc.rates, [f"{r:g}" for r in froc.rates])
    ax.minorticks_off()
    ax.grid(True, which="major", alpha=0.3)
    ax.set_xlabel("average false positives per scan")
    ax.set_ylabel("sensitivity")
    ax.set_title(
        f"{title}: {cpm}  ({froc.n_scans} scans, {froc.n_nodules} nodules, "
        f"{froc.n_detected} hit by any candidate)",
        fontsize=10,
    )
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_roc(malignancy: MalignancyResult, path: Path) -> Path:
    """Malignancy ROC of the model beside the diameter-only baseline, on the same nodules."""
    fig = Figure(figsize=(5.5, 5.5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    curves = malignancy.curves()
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
    if curves is None:
        ax.text(
            0.5,
            0.5,
            "AUC undefined: the detected nodules are all one class",
            transform=ax.transAxes,
            ha="center",
            fontsize=9,
        )
    else:
        fpr, tpr = curves["model"]
        ax.plot(
            fpr, tpr, color="tab:red", lw=2, label=f"model p_malignant: AUC {malignancy.auc:.3f}"
        )
        fpr, tpr = curves["diameter"]
        ax.plot(
            fpr,
            tpr,
            color="tab:gray",
            lw=2,
            label=f"diameter only: AUC {malignancy.diameter_auc:.3f}",
        )
        ax.legend(loc="lower right", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (benign called malignant)")
    ax.set_ylabel("true positive rate (malignant called malignant)")
    ax.set_title(
        f"Malignancy ROC over detected nodules\n"
        f"({malignancy.n_malignant} malignant, {malignancy.n_benign} benign)",
        fontsize=10,
    )
    return _save(fig, path)
