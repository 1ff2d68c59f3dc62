"""What a phantom set holds: nodule counts by kind, size range, malignancy rate and how well
diameter alone predicts malignancy (the baseline a malignancy model has to beat)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcad.evaluation.roc import roc_auc


@dataclass(frozen=True)
class PhantomStats:
    cases: int
    nodules: int
    by_type: dict[str, int]
    by_margin: dict[str, int]
    by_location: dict[str, int]
    diameter_min: float
    diameter_max: float
    malignancy_rate: float
    diameter_auc: float | None  # None when a set has only benign or only malignant nodules

    def lines(self) -> list[str]:
        def fmt(counts: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))

        auc = "n/a" if self.diameter_auc is None else f"{self.diameter_auc:.3f}"
        return [
            f"{self.cases} cases, {self.nodules} nodules "
            f"({self.diameter_min:.1f}-{self.diameter_max:.1f} mm)",
            f"types: {fmt(self.by_type)}",
            f"margins: {fmt(self.by_margin)}",
            f"locations: {fmt(self.by_location)}",
            f"malignant: {self.malignancy_rate:.1%}; diameter-only ROC AUC {auc}",
        ]


def dataset_stats(data_dir: str | Path) -> PhantomStats:
    """Read phantom_nodules.csv (written by ``lungcad phantom``) and summarise it."""
    path = Path(data_dir) / "phantom_nodules.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    series = {r["seriesuid"] for r in rows}
    manifest_cases = _manifest_cases(Path(data_dir))
    diam = np.array([float(r["diameter_mm"]) for r in rows])
    malignant = np.array([r["mal_bool"] == "True" for r in rows])
    return PhantomStats(
        cases=manifest_cases or len(series),
        nodules=len(rows),
        by_type=dict(Counter(r["type"] for r in rows)),
        by_margin=dict(Counter(r["margin"] for r in rows)),
        by_location=dict(Counter(r["location"] for r in rows)),
        diameter_min=float(diam.min()) if len(diam) else 0.0,
        diameter_max=float(diam.max()) if len(diam) else 0.0,
        malignancy_rate=float(malignant.mean()) if len(diam) else 0.0,
        diameter_auc=roc_auc(diam, malignant),
    )


def _manifest_cases(data_dir: Path) -> int | None:
    manifest = data_dir / "phantom.json"
    if not manifest.exists():
        return None
    return int(json.loads(manifest.read_text(encoding="utf-8"))["cases"])
