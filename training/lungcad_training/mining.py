"""Hard candidates: the trained UNet's own candidates on the dataset, labelled, as a candidates csv.

The nodule classifier learns from ``candidates.csv`` (LUNA16's, or the phantoms' look-alikes),
but in the cascade it judges what the UNet and grouping propose: vessel cross-sections, pleural
and diaphragm bumps, centres that sit a voxel or two off a nodule's. ``mine_candidates`` runs the
detector's first half (:func:`lungcad.pipeline.propose.propose_candidates`: lung region, UNet,
grouping at ``threshold``, the lung mask) on each cached canonical CT and writes every candidate
centre in the lung (detection never classifies the others) in the LUNA16 candidates layout
(``seriesuid,coordX,coordY,coordZ,class``), class 1 when the centre lies within an annotation's
radius (the evaluation's hit rule). ``lungcad-train nodule --extra-candidates FILE`` trains on
them beside ``candidates.csv``; validation series are mined too, so validation scores the kind
of candidate detection will hand the classifier.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from lungcad.atomic import write_text_atomic
from lungcad.ct import CT
from lungcad.evaluation.matching import hit_matrix
from lungcad.luna16 import CANDIDATES_CSV
from lungcad.luna16.records import CANDIDATE_COLUMNS
from lungcad.lungs import parenchyma_mask
from lungcad.models import Task
from lungcad.pipeline.precision import Precision, resolve_precision
from lungcad.pipeline.propose import propose_candidates
from lungcad.pipeline.region import lung_plan, thin_slices
from lungcad.preprocess import CANONICAL_SPACING_XYZ
from lungcad_training.cache import SeriesCache, geometry_from_json, prefill_cache
from lungcad_training.checkpoint import load_trained_model
from lungcad_training.errors import TrainingError

log = logging.getLogger(__name__)

#: Grouping threshold of mined candidates: the detector's default segmentation threshold.
DEFAULT_MINING_THRESHOLD = 0.5


def load_segmentation(weights: str | Path, device: str = "cpu") -> nn.Module:
    """The UNet of a segmentation ``.safetensors`` (its card beside it), of a weights folder, or
    of a training checkpoint (``.pt``, as ``lungcad-train all`` mines with its best epoch)."""
    weights = Path(weights)
    if weights.is_dir():
        weights = weights / f"{Task.SEGMENTATION.value}.safetensors"
    model = load_trained_model(weights, Task.SEGMENTATION, "mining needs a UNet")
    model = model.to(torch.device(device)).eval()
    model.requires_grad_(False)
    return model.to(memory_format=torch.channels_last)


def mine_candidates(
    data_dir: str | Path,
    cache_dir: str | Path,
    model: nn.Module,
    out_csv: str | Path,
    *,
    threshold: float = DEFAULT_MINING_THRESHOLD,
    device: str = "cpu",
    precision: Precision | str = Precision.AUTO,
    spacing_xyz: tuple[float, float, float] = CANONICAL_SPACING_XYZ,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[int, int]:
    """Write ``model``'s candidates of every series to ``out_csv``; returns (candidates, hits)."""
    out_csv = Path(out_csv)
    if out_csv.exists() and not overwrite:
        raise TrainingError(f"{out_csv} exists; pass --overwrite to replace it")
    if out_csv.resolve() == (Path(data_dir) / CANDIDATES_CSV).resolve():
        raise TrainingError(f"{out_csv} is the dataset's own {CANDIDATES_CSV}; write elsewhere")
    if not 0.0 < threshold <= 1.0:
        raise TrainingError(f"--threshold must lie in (0, 1], got {threshold}")
    target = torch.device(device)
    bf16 = resolve_precision(precision, target) is Precision.BF16
    cache = prefill_cache(data_dir, cache_dir, spacing_xyz=spacing_xyz, progress=progress)
    uids = sorted(cache.series_paths() or cache.cached_series())
    rows: list[tuple] = []
    hits = 0
    for uid in tqdm(uids, desc="mining candidates", disable=not progress):
        found, hit = _series_candidates(cache, uid, model, target, bf16, threshold)
        rows += found
        hits += hit
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CANDIDATE_COLUMNS)
    writer.writerows(rows)
    write_text_atomic(out_csv, buffer.getvalue())
    log.info("%d candidates (%d within a nodule) from %d series -> %s", len(rows), hits,
             len(uids), out_csv)  # fmt: skip
    return len(rows), hits


def _series_candidates(
    cache: SeriesCache, uid: str, model, device: torch.device, bf16: bool, threshold: float
) -> tuple[list[tuple], int]:
    series = cache.get(uid)
    geometry = series.geometry
    ct = CT(hu=series.hu, geometry=geometry, series_uid=uid)
    depth = int(getattr(model, "depth", 1))
    lungs = parenchyma_mask(ct)
    plan = lung_plan(ct, geometry, align_rc=2 ** max(depth - 1, 0), lungs=lungs)
    if lungs.mask.any():  # as detection does: the UNet only on a thick-sliced source's own slices
        plan = thin_slices(plan, geometry_from_json(series.meta["source"]["geometry"]), geometry)
    proposals = propose_candidates(
        series.hu, geometry, plan, lungs, model, device, threshold, bf16=bf16
    )
    centres = proposals.centres_lps[proposals.in_lung]
    if not len(centres):
        return [], 0
    annotations = cache.annotations_for(uid)
    nodule_xyz = np.array([a.center_xyz for a in annotations], dtype=float).reshape(-1, 3)
    diameters = np.array([a.diameter_mm for a in annotations], dtype=float)
    is_nodule = hit_matrix(centres, nodule_xyz, diameters).any(axis=1)
    rows = [
        (uid, f"{x:.3f}", f"{y:.3f}", f"{z:.3f}", int(n))
        for (x, y, z), n in zip(centres, is_nodule, strict=True)
    ]
    return rows, int(is_nodule.sum())
