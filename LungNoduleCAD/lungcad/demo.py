"""The embedded default job: one synthetic chest CT, the bundled weights, and a check against truth.

``lungcad demo`` writes a phantom case in the LUNA16 layout, runs the cascade on it through the
same cohort runner as ``lungcad detect`` (so the demo's outputs are exactly what a user gets), and
compares the findings with the phantom's known nodules by the LUNA16 rule: a finding hits a
nodule when its centre lies within the nodule's radius.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcad.cohort import CascadeDetector, CaseInput, Detector, run_cohort
from lungcad.cohort_status import Outcome
from lungcad.errors import LungCADError
from lungcad.evaluation.matching import hit_matrix
from lungcad.phantom import NoduleSpec, PhantomSize, make_spec, write_dataset
from lungcad.reports import read_results

__all__ = ["LARGE_NODULE_MM", "DemoReport", "match_findings", "run_demo"]

#: The size above which missing a nodule matters most (LUNA16 reports sensitivity for >= 3 mm;
#: screening guidelines act on >= 5-6 mm).
LARGE_NODULE_MM = 5.0
#: Findings listed one by one; the rest are summed up (results.json lists them all).
MAX_LISTED = 20


@dataclass(frozen=True)
class FindingMatch:
    """One finding (from results.json) and the true nodule it hits, if any."""

    finding: dict
    nodule: NoduleSpec | None


@dataclass(frozen=True)
class DemoReport:
    """What the demo found against the phantom's truth."""

    ct_path: Path
    case_folder: Path
    nodules: list[NoduleSpec]
    matches: list[FindingMatch]
    found: dict[int, list[int]]  # true nodule index -> finding numbers that hit it
    malignancy_threshold: float
    seconds: float
    status: Outcome
    error: str = ""

    @property
    def false_positives(self) -> int:
        return sum(m.nodule is None for m in self.matches)

    def counts(self, min_diameter_mm: float = 0.0) -> tuple[int, int]:
        """(found, total) among the true nodules at least ``min_diameter_mm`` across."""
        pool = [n for n in self.nodules if n.diameter_mm >= min_diameter_mm]
        return sum(bool(self.found[n.index]) for n in pool), len(pool)

    def malignancy_calls(self) -> dict[str, tuple[int, int]]:
        """Among found nodules: malignant called malignant, benign called malignant (k, of n)."""
        best: dict[int, float] = {}
        for m in self.matches:
            if m.nodule is not None:
                p = float(m.finding["p_malignant"])
                best[m.nodule.index] = max(best.get(m.nodule.index, 0.0), p)
        called = {i: p >= self.malignancy_threshold for i, p in best.items()}
        by_truth = {True: [0, 0], False: [0, 0]}
        for n in self.nodules:
            if n.index in called:
                by_truth[n.is_malignant][0] += called[n.index]
                by_truth[n.is_malignant][1] += 1
        return {"malignant": tuple(by_truth[True]), "benign": tuple(by_truth[False])}

    def lines(self, max_findings: int = MAX_LISTED) -> list[str]:
        """The text the demo prints (at most ``max_findings`` findings listed one by one)."""
        out = []
        threshold = self.malignancy_threshold
        for m in self.matches[:max_findings]:
            f = m.finding
            x, y, z = f["center_lps"]
            where = "false positive"
            if m.nodule is not None:
                n = m.nodule
                truth = "malignant" if n.is_malignant else "benign"
                where = f"true nodule #{n.index} ({n.diameter_mm:.1f} mm, {truth})"
            out.append(
                f"  N{f['number']}: {f['diameter_mm']:5.1f} mm  p(nodule) {f['p_nodule']:.2f}  "
                f"p(malignant) {f['p_malignant']:.2f} {f['band']:13s} "
                f"LPS ({x:7.1f}, {y:7.1f}, {z:7.1f}) -> {where}"
            )
        if len(self.matches) > max_findings:
            rest = self.matches[max_findings:]
            hits = sum(m.nodule is not None for m in rest)
            out.append(
                f"  ... and {len(rest)} more ({hits} on true nodules), all in "
                f"{self.case_folder / 'results.json'}"
            )
        out.append(f"  truth: {len(self.nodules)} nodules")
        for n in self.nodules:
            hits = self.found[n.index]
            seen = "found as " + ", ".join(f"N{k}" for k in hits) if hits else "MISSED"
            x, y, z = n.center_xyz
            out.append(
                f"  #{n.index}: {n.diameter_mm:5.1f} mm {n.kind.value:12s} {n.margin.value:10s} "
                f"{'malignant' if n.is_malignant else 'benign':9s} "
                f"LPS ({x:7.1f}, {y:7.1f}, {z:7.1f}): {seen}"
            )
        k, n = self.counts()
        k5, n5 = self.counts(LARGE_NODULE_MM)
        out.append(
            f"found {k} of {n} nodules ({k5} of {n5} >= {LARGE_NODULE_MM:g} mm); "
            f"{self.false_positives} false positive{'s' if self.false_positives != 1 else ''}"
        )
        calls = self.malignancy_calls()
        mk, mn = calls["malignant"]
        bk, bn = calls["benign"]
        out.append(
            f"malignancy of the found nodules (threshold {threshold:.2f}): {mk} of {mn} malignant "
            f"called malignant, {bk} of {bn} benign called malignant"
        )
        return out


def match_findings(
    findings: list[dict], nodules: list[NoduleSpec]
) -> tuple[list[FindingMatch], dict[int, list[int]]]:
    """Each finding's hit (the nearest true nodule whose sphere holds its centre) and, per nodule,
    the findings that hit it."""
    found: dict[int, list[int]] = {n.index: [] for n in nodules}
    if not findings:
        return [], found
    points = np.array([f["center_lps"] for f in findings], dtype=np.float64)
    centers = np.array([n.center_xyz for n in nodules], dtype=np.float64).reshape(-1, 3)
    diameters = np.array([n.diameter_mm for n in nodules], dtype=np.float64)
    hits = hit_matrix(points, centers, diameters)
    matches = []
    for row, f in enumerate(findings):
        nodule = None
        if hits[row].any():
            candidates = np.flatnonzero(hits[row])
            distance = np.linalg.norm(centers[candidates] - points[row], axis=1)
            nodule = nodules[int(candidates[np.argmin(distance)])]
            for j in candidates:
                found[nodules[int(j)].index].append(int(f["number"]))
        matches.append(FindingMatch(f, nodule))
    return matches, found


def run_demo(
    out: Path | str,
    *,
    seed: int = 2023,
    size: PhantomSize = PhantomSize.FULL,
    overwrite: bool = False,
    detector: Detector | None = None,
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
    precision: str = "auto",
) -> DemoReport:
    """Write the phantom under OUT/phantom, detect into OUT/results, and compare with truth.

    ``detector`` defaults to the cascade with the bundled weights. Raises LungCADError when OUT
    is not empty and ``overwrite`` is False.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise LungCADError(f"{out} is not empty; choose another folder or pass --overwrite")
    say = progress or (lambda _text: None)
    records = write_dataset(
        out / "phantom", cases=1, seed=seed, size=size, overwrite=True, progress=False
    )
    record = records[0]
    nz, ny, nx = record.shape_irc
    sx, sy, sz = record.spacing_xyz
    say(
        f"synthetic chest CT (seed {seed}, {size.value}): {nx}x{ny}x{nz} voxels of "
        f"{sx:.2f}x{sy:.2f}x{sz:.2f} mm, {len(make_spec(seed, 0).nodules)} nodules; "
        f"{record.ct_path}"
    )
    detector = (
        detector if detector is not None else CascadeDetector(device=device, precision=precision)
    )
    started = time.perf_counter()
    results_dir = out / "results"
    case = CaseInput(record.ct_path, record.series_uid)
    (status,) = run_cohort([case], results_dir, detector, overwrite=True, progress=False)
    seconds = time.perf_counter() - started
    nodules = list(make_spec(seed, 0).nodules)
    folder = results_dir / case.case_id
    if status.status == Outcome.FAILED:
        return DemoReport(
            record.ct_path, folder, nodules, [], {n.index: [] for n in nodules}, 0.5, seconds,
            Outcome.FAILED, status.error,
        )  # fmt: skip
    doc = read_results(folder / "results.json")
    matches, found = match_findings(doc["findings"], nodules)
    return DemoReport(
        ct_path=record.ct_path,
        case_folder=folder,
        nodules=nodules,
        matches=matches,
        found=found,
        malignancy_threshold=float(doc["thresholds"]["malignancy"]),
        seconds=seconds,
        status=status.status,
    )
