"""``lungcad bench --target real``: the cascade on real chest CT beside phantoms, and realism.

The phantoms are what the bundled models were trained on; the figure that matters is what they
do on real scans (issue 13). This runs the real cascade (bundled models, default thresholds) on
the real samples in ``shared/data/real`` beside the checkout (README there), plus a derived 5 mm
thick-slice stand-in, then on a few full-size phantoms, and prints per scan: findings, candidates
(every region the UNet proposed), lung volume, candidates per litre of lung, findings under
5 mm and the seconds spent. Then the realism statistics of :mod:`lungcad.realism` for each real
scan and the phantoms' mean, and the lung histogram distances. A benchmark prints, it never
asserts; the real scans have no nodules, so every finding on them is a false one.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcad.ct import CT
from lungcad.errors import LungCADError
from lungcad.realism import (
    DEPTH_BANDS_MM,
    NOISE_CLASSES,
    RealismStats,
    average_slabs,
    histogram_distance,
    lung_mask,
    measure_realism,
)

log = logging.getLogger(__name__)

#: Real scans no training run may use, so that the real-scan figure stays honest (by base name;
#: scans derived from one, such as its 5 mm version, are held out with it).
HELD_OUT_REAL_SCANS: tuple[str, ...] = ("chest_cta_totalseg",)
REAL_DATA_ENV = "LUNGCAD_REAL_DATA"
PHANTOM_SEED = 7000  # the unseen full-size phantoms of issue 13
THICK_SLAB_MM = 5.0
SMALL_FINDING_MM = 5.0


@dataclass(frozen=True)
class RealScan:
    """A real sample: ``file`` in the real-data folder, optionally re-sliced to ``slab_mm``."""

    name: str
    file: str
    base: str  # the scan it comes from (what HELD_OUT_REAL_SCANS names)
    slab_mm: float | None = None

    @property
    def held_out(self) -> bool:
        return self.base in HELD_OUT_REAL_SCANS

    def note(self) -> str:
        bits = []
        if self.slab_mm:
            bits.append(f"derived: {self.file} averaged over {self.slab_mm:g} mm slabs")
        if self.held_out:
            bits.append("held out of training")
        return f"({'; '.join(bits)})" if bits else ""


REAL_SCANS: tuple[RealScan, ...] = (
    RealScan("chest_cta_totalseg", "chest_cta_totalseg.nii.gz", "chest_cta_totalseg"),
    RealScan(
        "chest_cta_totalseg_5mm", "chest_cta_totalseg.nii.gz", "chest_cta_totalseg", THICK_SLAB_MM
    ),
    RealScan("dicom_totalseg", "dicom_totalseg", "dicom_totalseg"),
    RealScan("dicom_lungmask", "dicom_lungmask", "dicom_lungmask"),
)


def default_real_dir() -> Path:
    """``$LUNGCAD_REAL_DATA``, else ``shared/data/real`` beside the repository checkout."""
    env = os.environ.get(REAL_DATA_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "real"


@dataclass(frozen=True)
class RealBenchOptions:
    real_dir: Path | None = None
    scans: tuple[str, ...] | None = None  # names from REAL_SCANS; None: all
    weights: Path | None = None
    phantoms: int = 2
    phantom_dir: Path | None = None  # LUNA16 layout; None: render seed PHANTOM_SEED cases
    device: str = "auto"
    precision: str = "auto"


@dataclass(frozen=True)
class ScanRow:
    """One scan's detection figures and realism statistics."""

    name: str
    note: str
    shape: str
    spacing: str
    findings: int
    candidates: int
    litres: float
    small_findings: int
    seconds: float
    classify_seconds: float
    realism: RealismStats

    @property
    def per_litre(self) -> float | None:
        return self.candidates / self.litres if self.litres > 0 else None


def run_real_bench(options: RealBenchOptions) -> int:
    """Print the detection rows, the realism table and the histogram distances."""
    from lungcad.pipeline import CascadeModels

    real_dir = options.real_dir or default_real_dir()
    scans = _selected(options.scans)
    if scans and not real_dir.is_dir():
        raise LungCADError(
            f"{real_dir}: real CT folder not found (set --real-dir or ${REAL_DATA_ENV})"
        )
    models = CascadeModels.load(options.weights, options.device, options.precision)
    print(f"real-CT benchmark: {real_dir}; models on {models.device}, "
          f"{'bf16' if models.bf16 else 'float32'}; default thresholds")  # fmt: skip
    print(f"held out of all training: {', '.join(HELD_OUT_REAL_SCANS)} (and scans derived from it)")
    print(_header())
    real_rows = []
    cache: dict[str, CT] = {}
    for scan in scans:
        row = _run(scan.name, scan.note(), _real_ct(real_dir, scan, cache), models)
        real_rows.append(row)
        print(_row(row), flush=True)
    phantom_rows = []
    for name, ct in _phantoms(options):
        row = _run(name, "(phantom)", ct, models)
        phantom_rows.append(row)
        print(_row(row), flush=True)
    print(
        "candidates: the UNet's regions in the lung, which the nodule classifier scores (mirrors "
        "and malignancy from the nodule floor up); lung L: the lung mask "
        "(lungcad.lungs.parenchyma_mask); <5mm: findings under 5 mm; classify s: the "
        "classification stage, both classifiers"
    )
    _print_realism(real_rows, phantom_rows)
    return 0


def _selected(names: tuple[str, ...] | None) -> list[RealScan]:
    if names is None:
        return list(REAL_SCANS)
    known = {s.name: s for s in REAL_SCANS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise LungCADError(f"unknown real scan {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]


def _real_ct(real_dir: Path, scan: RealScan, cache: dict[str, CT]) -> CT:
    from lungcad.ctio import read_ct

    if scan.file not in cache:
        cache[scan.file] = read_ct(real_dir / scan.file)
    ct = cache[scan.file]
    return average_slabs(ct, scan.slab_mm) if scan.slab_mm else ct


def _phantoms(options: RealBenchOptions) -> Iterator[tuple[str, CT]]:
    """Phantom CTs one at a time: from ``phantom_dir`` or rendered (seed 7000) into a temp dir."""
    from lungcad.ctio import read_ct

    if options.phantoms <= 0:
        return
    if options.phantom_dir is not None:
        from lungcad.luna16.candidates import find_series

        series = sorted(find_series(options.phantom_dir).items())[: options.phantoms]
        for k, (_, path) in enumerate(series):
            yield f"phantom {k} ({path.parent.name})", read_ct(path)
        return
    from lungcad.benchmark import _phantom_ct

    with tempfile.TemporaryDirectory() as tmp:
        for case in range(options.phantoms):
            path = _phantom_ct(PHANTOM_SEED, case, Path(tmp))
            yield f"phantom {PHANTOM_SEED}/{case}", read_ct(path)
            path.unlink()
            path.with_suffix(".raw").unlink(missing_ok=True)


def _run(name: str, note: str, ct: CT, models) -> ScanRow:
    from lungcad.pipeline import DetectionStats, Thresholds, detect

    stats = DetectionStats()
    result = detect(ct, models, Thresholds(), stats=stats)
    t0 = time.perf_counter()
    lungs = lung_mask(ct)
    realism = measure_realism(ct, lungs)
    log.info("%s: realism statistics in %.1f s", name, time.perf_counter() - t0)
    sx, sy, sz = ct.geometry.spacing_xyz
    nz, ny, nx = ct.shape
    return ScanRow(
        name=name,
        note=note,
        shape=f"{nx}x{ny}x{nz}",
        spacing=f"{sx:.2f}x{sy:.2f}x{sz:.2f}",
        findings=len(result.findings),
        candidates=stats.candidates_in_lung,
        litres=stats.lung_volume_ml / 1000.0,
        small_findings=sum(f.diameter_mm < SMALL_FINDING_MM for f in result.findings),
        seconds=stats.timings_s.get("total", 0.0),
        classify_seconds=stats.timings_s.get("classification", 0.0),
        realism=realism,
    )


# --- printing -----------------------------------------------------------------------------------

_NAME_W = 24
COLUMNS = ("voxels", "spacing mm", "findings", "candidates", "lung L", "cand/L", "<5mm", "total s",
           "classify s")  # fmt: skip


def _header() -> str:
    return (
        f"{'scan':{_NAME_W}s} {COLUMNS[0]:>11s} {COLUMNS[1]:>15s} {COLUMNS[2]:>8s} "
        f"{COLUMNS[3]:>10s} {COLUMNS[4]:>7s} {COLUMNS[5]:>7s} {COLUMNS[6]:>5s} "
        f"{COLUMNS[7]:>8s} {COLUMNS[8]:>10s}"
    )


def _row(row: ScanRow) -> str:
    per = "n/a" if row.per_litre is None else f"{row.per_litre:.1f}"
    text = (
        f"{row.name:{_NAME_W}s} {row.shape:>11s} {row.spacing:>15s} {row.findings:8d} "
        f"{row.candidates:10d} {row.litres:7.3f} {per:>7s} {row.small_findings:5d} "
        f"{row.seconds:8.1f} {row.classify_seconds:10.1f}"
    )
    return f"{text}  {row.note}" if row.note else text


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None or not np.isfinite(value) else format(value, spec)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _realism_values(r: RealismStats) -> list[float | None]:
    dense = None if r.dense_share is None else 100.0 * r.dense_share
    return [
        dense,
        *(r.vessels_per_cm2[label] for label, *_ in DEPTH_BANDS_MM),
        *(r.noise_sd_hu[name] for name, *_ in NOISE_CLASSES),
        r.nps_peak_cyc_mm,
    ]


def _print_realism(real_rows: list[ScanRow], phantom_rows: list[ScanRow]) -> None:
    labels = ["dense %", *(f"v/cm² {b}" for b, *_ in DEPTH_BANDS_MM)]
    labels += [f"SD {name}" for name, *_ in NOISE_CLASSES] + ["NPS c/mm"]
    specs = [".2f", ".2f", ".2f", ".2f", ".2f", ".1f", ".1f", ".1f", ".3f"]
    print()
    print("realism (lungcad.realism): dense % = lung voxels >= -500 HU; v/cm² = vessel "
          "cross-sections per cm² of lung by depth from the pleura (mm); SD = noise (HU) in "
          "homogeneous patches; NPS = noise power spectrum peak (cycles/mm)")  # fmt: skip
    print(f"{'scan':{_NAME_W}s} " + " ".join(f"{label:>10s}" for label in labels))
    rows: list[tuple[str, list[float | None]]] = [
        (r.name, _realism_values(r.realism)) for r in real_rows
    ]
    if phantom_rows:
        values = [_realism_values(r.realism) for r in phantom_rows]
        mean = [_mean([v[i] for v in values]) for i in range(len(labels))]
        rows.append((f"phantom mean (n={len(phantom_rows)})", mean))
    for name, values in rows:
        cells = " ".join(f"{_fmt(v, s):>10s}" for v, s in zip(values, specs, strict=True))
        print(f"{name:{_NAME_W}s} {cells}")
    for row in [*real_rows, *phantom_rows]:
        for what, why in row.realism.notes.items():
            print(f"  n/a: {row.name}: {what}: {why}")

    if not real_rows:
        return
    print()
    print("lung HU histogram distance (earth mover's, HU; -1000..-400 HU in 10 HU bins)")
    heads = [r.name for r in real_rows]
    print(f"{'':{_NAME_W}s} " + " ".join(f"{h[:_NAME_W]:>{_NAME_W}s}" for h in heads))
    for row in [*real_rows, *phantom_rows]:
        cells = []
        for other in real_rows:
            a, b = row.realism.histogram, other.realism.histogram
            cells.append("n/a" if a is None or b is None else f"{histogram_distance(a, b):.1f}")
        print(f"{row.name:{_NAME_W}s} " + " ".join(f"{c:>{_NAME_W}s}" for c in cells))
