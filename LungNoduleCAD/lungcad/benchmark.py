"""``lungcad bench --target cascade``: time the detection cascade stage by stage on one CT.

A benchmark prints, it never asserts. The phantom is rendered in a child process (so rendering
does not count towards this process's peak memory), written as .mhd and read back, as a user's
CT would be. Peak memory is this process's (:mod:`lungcad.peak_memory`; unknown where neither
``resource`` nor psutil exists), compared with the budget of three times the CT's int16 size plus
1.5 GB.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from lungcad.peak_memory import peak_rss_bytes

log = logging.getLogger(__name__)

BUDGET_EXTRA_BYTES = 1.5 * 1024**3
#: FLOP of one UNet forward pass on one 512x512 slice (the issue's figure).
UNET_GFLOP_PER_512_SLICE = 13.2


@dataclass(frozen=True)
class CascadeBenchOptions:
    ct: Path | None = None
    seed: int = 0
    case: int = 0
    device: str = "auto"
    threads: int | None = None
    slice_batch: int | None = None
    crop_batch: int | None = None
    channels_last: bool = True
    mirror_nodule: bool = True  # p_nodule averaged over the crop's in-plane mirrors
    precision: str = "auto"  # auto, float32 or bf16 (lungcad.pipeline.precision)
    lung_region: bool = True
    weights: Path | None = None
    compare_bf16: int = 0  # slices to run in both precisions (0: no comparison)


def _render_phantom(seed: int, case: int, out: str) -> None:
    from lungcad.ctio import write_ct
    from lungcad.phantom import PhantomSize, make_case

    write_ct(make_case(seed, case, PhantomSize.FULL).ct, Path(out))


def _phantom_ct(seed: int, case: int, folder: Path) -> Path:
    path = folder / f"phantom_{seed}_{case}.mhd"
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=_render_phantom, args=(seed, case, str(path)))
    child.start()
    child.join()
    if child.exitcode != 0 or not path.exists():
        raise RuntimeError(f"rendering phantom seed {seed} case {case} failed")
    return path


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min) on {os.cpu_count()} CPUs"


def run_cascade_bench(options: CascadeBenchOptions) -> int:
    """Print per-stage times, slices, candidates, findings and peak memory for one CT."""
    import torch

    from lungcad.ctio import read_ct
    from lungcad.pipeline import (
        CascadeModels,
        DetectionOptions,
        DetectionStats,
        Thresholds,
        detect,
    )

    if options.threads:
        torch.set_num_threads(options.threads)
    print(f"cascade benchmark: load average {_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        if options.ct is None:
            path = _phantom_ct(options.seed, options.case, Path(tmp))
            made = f"rendered phantom seed {options.seed} case {options.case} in "
            made += f"{time.perf_counter() - started:.1f} s (child process)"
        else:
            path, made = options.ct, "given"
        t0 = time.perf_counter()
        ct = read_ct(path)
        read_s = time.perf_counter() - t0
    rss_ct = peak_rss_bytes()
    print(f"CT ({made}): {ct.describe()}; read in {read_s:.2f} s")

    t0 = time.perf_counter()
    models = CascadeModels.load(options.weights, options.device, options.precision)
    load_s = time.perf_counter() - t0
    print(
        f"models: loaded in {load_s:.2f} s on {models.device} "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
        f"{'bf16 autocast' if models.bf16 else 'float32'} (--precision {options.precision})"
        f"{', channels_last' if options.channels_last else ''}"
        f"{'' if options.mirror_nodule else ', nodule classifier unmirrored'})"
    )
    stats = DetectionStats()
    run = DetectionOptions(
        lung_region=options.lung_region,
        slice_batch=options.slice_batch,
        crop_batch=options.crop_batch,
        channels_last=options.channels_last,
        mirror_nodule=options.mirror_nodule,
    )
    result = detect(ct, models, Thresholds(), run, stats=stats)
    _print_stats(result, stats, models.bf16, options.mirror_nodule)

    t0 = time.perf_counter()
    for seg in (0.3, 0.5, 0.7):
        result.refilter(replace(result.thresholds, segmentation=seg))
    print(f"refilter: {1000 * (time.perf_counter() - t0) / 3:.1f} ms per threshold change "
          f"({stats.candidates} candidates, {stats.stored_voxels} stored voxels)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        saved = result.save(Path(tmp) / "detection.npz")
        print(f"detection.npz: {saved.stat().st_size / 1024**2:.1f} MB")

    budget = 3 * ct.hu.nbytes + BUDGET_EXTRA_BYTES
    peak = peak_rss_bytes()
    verdict = "unknown" if peak is None else "within" if peak <= budget else "OVER"
    print(
        f"peak memory (RSS): {_mb(peak)} MB ({_mb(rss_ct)} MB after reading "
        f"the CT); budget 3 x {ct.hu.nbytes / 1024**2:.0f} MB + 1536 MB = "
        f"{budget / 1024**2:.0f} MB: {verdict}"
    )
    if options.compare_bf16:
        _compare_bf16(ct, models, options.compare_bf16, options.channels_last)
    print(f"load average at the end: {_load()}")
    return 0


def _mb(size: int | None) -> str:
    """Bytes as whole MiB, or 'unknown' where the platform gave no figure."""
    return "unknown" if size is None else f"{size / 1024**2:.0f}"


def _print_stats(result, stats, bf16: bool, mirror_nodule: bool = True) -> None:
    from lungcad.pipeline.classify import MIRROR_FLOOR

    t = stats.timings_s
    n_box = stats.unet_box_shape
    equiv = stats.unet_pixels / 512**2
    seg = t.get("segmentation", 0.0)
    print(
        f"grid: original {_shape(stats.original_shape)}, canonical {_shape(stats.canonical_shape)}"
        f", UNet box {_shape(n_box)}: {stats.slices_run} canonical slices, each on its lung box, "
        f"{stats.unet_pixels / 1e6:.1f} Mpixel = {equiv:.0f} slices of 512x512 "
        f"({100 * stats.unet_pixels / max(n_box[0] * n_box[1] * n_box[2], 1):.0f}% of the box)"
    )
    print("time per stage (wall; CPU time of all threads; peak RSS so far):")
    for stage in ("lungs", "resample", "segmentation", "grouping", "classification", "mapping"):
        peak = stats.peak_rss_mb.get(stage, 0.0)
        cpu = stats.cpu_s.get(stage, 0.0)
        print(f"  {stage:15s} {t.get(stage, 0.0):7.2f} s   cpu {cpu:7.2f} s   {peak:5.0f} MB")
    print(f"  {'total':15s} {t.get('total', 0.0):7.2f} s   cpu {sum(stats.cpu_s.values()):7.2f} s")
    if stats.slices_run:
        per_slice = 1000 * seg / stats.slices_run
        per_512 = 1000 * seg / max(equiv, 1e-9)
        rate = UNET_GFLOP_PER_512_SLICE * equiv / max(seg, 1e-9)
        print(
            f"UNet: {per_slice:.0f} ms per canonical slice run, "
            f"{per_512:.0f} ms per 512x512-slice equivalent, ~{rate:.0f} GFLOP/s"
            f"{' (bf16)' if bf16 else ''}"
        )
    if stats.candidates_in_lung:
        per = 1000 * t.get("classification", 0.0) / stats.candidates_in_lung
        # malignancy ran exactly where p_malignant is a number (see lungcad.pipeline.classify)
        scored = sum(not math.isnan(p) for p in result.store.p_malignant.tolist())
        floor = f"p_nodule {result.min_nodule_threshold:g}"
        mirror_from = min(result.min_nodule_threshold, MIRROR_FLOOR)
        mirrored = f", mirrored from p_nodule {mirror_from:g} up" if mirror_nodule else ""
        print(
            f"classifiers: {per:.1f} ms per candidate in the lung ({stats.candidates_in_lung}: "
            f"one nodule view each{mirrored}; malignancy for the {scored} at or above {floor})"
        )
    th = result.thresholds
    print(
        f"candidates: {stats.candidates} (kept {len(result.candidates)} at segmentation "
        f"{th.segmentation:g}); findings: {len(result.findings)} at thresholds "
        f"{th.segmentation:g}/{th.nodule:g}/{th.malignancy:g}"
    )


def _compare_bf16(ct, models, slices: int, channels_last: bool) -> None:
    """The UNet on ``slices`` canonical slices through the lungs' middle, float32 vs bf16."""
    import numpy as np

    from lungcad.pipeline.canonical import resample_to_canonical
    from lungcad.pipeline.region import Box, lung_box
    from lungcad.pipeline.segment import segment_box

    volume = resample_to_canonical(ct)
    box = lung_box(ct, volume.geometry, align_rc=4)
    middle = (box.start[0] + box.stop[0]) // 2
    part = Box((middle, *box.start[1:]), (min(middle + slices, box.stop[0]), *box.stop[1:]))
    maps, times = [], []
    for bf16 in (False, True):
        t0 = time.perf_counter()
        maps.append(
            segment_box(volume.hu, part, models.segmentation, models.device, bf16=bf16,
                        channels_last=channels_last).astype(np.float32)
        )  # fmt: skip
        times.append(1000 * (time.perf_counter() - t0) / part.shape[0])
    diff = np.abs(maps[0] - maps[1])
    flips = np.mean((maps[0] >= 0.5) != (maps[1] >= 0.5))
    print(
        f"bf16 vs float32 UNet on {part.shape[0]} slices: {times[0]:.0f} vs {times[1]:.0f} ms "
        f"per slice; |p difference| max {diff.max():.4f}, mean {diff.mean():.5f}; "
        f"{100 * flips:.3f}% of voxels change side of 0.5"
    )


def _shape(irc: tuple[int, int, int]) -> str:
    return f"{irc[2]}x{irc[1]}x{irc[0]}"
