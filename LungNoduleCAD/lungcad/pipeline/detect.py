"""The cascade: lungs -> canonical grid -> UNet -> grouping -> both classifiers -> original voxels.

The models were trained on the canonical grid (:mod:`lungcad.preprocess`), so detection runs there
and maps its regions back to the CT's own voxels at the end. Candidates are grouped once at a
floor threshold (``min_segmentation_threshold``, or the requested segmentation threshold when that
is lower) and the classifiers score the candidates in the lung down to a nodule floor
(``min_nodule_threshold``, or the requested nodule threshold when that is lower: one view for
every candidate, mirrors and malignancy from the floor up; see :mod:`lungcad.pipeline.classify`),
so the result can re-threshold anything at or above both floors later without a network
(:meth:`DetectionResult.refilter`). Candidates whose centre lies outside the lung mask
(:func:`lungcad.lungs.parenchyma_mask`) are kept, marked, and never classified: on real CT the
mediastinum and the chest wall are a main source of false findings.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from lungcad.ct import CT
from lungcad.lungs import parenchyma_mask
from lungcad.peak_memory import peak_rss_mb
from lungcad.pipeline.canonical import resample_to_canonical
from lungcad.pipeline.classify import CROP_BATCH, MIRROR_FLOOR, NODULE_MIRRORS, classify
from lungcad.pipeline.findings import Thresholds
from lungcad.pipeline.footprint import VoxelMapper
from lungcad.pipeline.input_checks import check_input
from lungcad.pipeline.models import CascadeModels
from lungcad.pipeline.progress import CASCADE_STAGES, Monitor, ProgressCallback, Stage
from lungcad.pipeline.propose import propose_candidates
from lungcad.pipeline.region import LUNG_MARGIN_MM, Box, UNetPlan, lung_plan, thin_slices
from lungcad.pipeline.result import DetectionResult
from lungcad.pipeline.segment import SLICE_BATCH
from lungcad.pipeline.store import CandidateStore, empty_store
from lungcad.preprocess import canonical_geometry

log = logging.getLogger(__name__)

#: Batches on a GPU, where one slice or a few crops per call would leave it idle.
GPU_SLICE_BATCH = 16
GPU_CROP_BATCH = 128

#: Default floor: candidates are grouped at 0.2 so the segmentation slider can go down to it.
MIN_SEGMENTATION_THRESHOLD = 0.2

#: Default nodule floor: the nodule slider goes down to 0.1, and only candidates whose p_nodule
#: reaches it get the mirrored views and the malignancy classifier. Lower is no usable operating
#: point (at 0.5 the bundled weights already report ~9 false positives per phantom scan; see the
#: README's *Evaluation*), and on real scans with hundreds of candidates in the lung those extra
#: passes on candidates nobody sees were most of the classification time.
MIN_NODULE_THRESHOLD = 0.1

DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class DetectionOptions:
    """How :func:`detect` runs; none of these changes which findings a threshold gives, except
    through the floors (what can be refiltered to) and the mirrors (p_nodule itself).

    ``min_segmentation_threshold`` (or ``thresholds.segmentation`` when lower) is the floor the
    candidates are grouped at: the result refilters to segmentation thresholds at or above it.
    ``min_nodule_threshold`` (or ``thresholds.nodule`` when lower) is the nodule floor: mirrors
    and malignancy run only for candidates whose p_nodule reaches it, and the result refilters
    to nodule thresholds at or above it; 0 scores every candidate in the lung with everything.
    ``lung_region`` runs the UNet only on the canonical pixels near the lungs (each slice's lung
    box plus ``lung_margin_mm``, see :mod:`lungcad.pipeline.region`); elsewhere the map is 0.
    ``slice_batch`` / ``crop_batch`` default (None) to 1 / 8 on the CPU (fastest there) and
    16 / 128 on a GPU. ``bf16`` runs the networks under bfloat16 autocast; None takes
    ``models.precision`` (see :mod:`lungcad.pipeline.precision`). ``mirror_nodule`` averages
    p_nodule over the crop's in-plane mirrors (:mod:`lungcad.pipeline.classify`); the result's
    model versions say so. ``interpolate_thick_slices`` runs the UNet only on the canonical
    slices at a thick-sliced scan's own slices and interpolates its map between them (see
    :func:`lungcad.pipeline.region.thin_slices`).
    """

    min_segmentation_threshold: float = MIN_SEGMENTATION_THRESHOLD
    min_nodule_threshold: float = MIN_NODULE_THRESHOLD
    lung_region: bool = True
    lung_margin_mm: float = LUNG_MARGIN_MM
    slice_batch: int | None = None
    crop_batch: int | None = None
    bf16: bool | None = None
    channels_last: bool = True
    mirror_nodule: bool = True
    interpolate_thick_slices: bool = True


DEFAULT_OPTIONS = DetectionOptions()

#: The stage names detect reports, in order (the values of lungcad.stages.CASCADE_STAGES).
STAGES = tuple(stage.value for stage in CASCADE_STAGES)


@dataclass
class DetectionStats:
    """What a run did, for benchmarks and logs (filled in by :func:`detect` when passed)."""

    original_shape: tuple[int, int, int] = (0, 0, 0)
    canonical_shape: tuple[int, int, int] = (0, 0, 0)
    unet_box_shape: tuple[int, int, int] = (0, 0, 0)
    slices_run: int = 0
    unet_pixels: int = 0  # pixels the UNet ran on, over all slices
    candidates: int = 0
    candidates_in_lung: int = 0  # the ones the classifiers ran on
    lung_volume_ml: float = 0.0  # the lung mask's volume
    stored_voxels: int = 0
    peak_rss_mb: dict[str, float] = field(default_factory=dict)  # after each stage
    cpu_s: dict[str, float] = field(default_factory=dict)  # process CPU time, all threads
    timings_s: dict[str, float] = field(default_factory=dict)


def detect(
    ct: CT,
    models: CascadeModels,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    options: DetectionOptions = DEFAULT_OPTIONS,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    stats: DetectionStats | None = None,
) -> DetectionResult:
    """Find and score nodules in ``ct``; returns findings at ``thresholds`` plus the refilter cache.

    Each finding reports: centre of mass in LPS mm and in the CT's own (continuous) voxels;
    volume (canonical voxel count x voxel volume); diameter = the equivalent-sphere diameter of
    that volume (not the largest extent); mean HU of the CT's own voxels nearest to the region's
    canonical voxels; p_nodule, p_malignant; its mask on the CT's own voxels (see
    :mod:`lungcad.pipeline.store` and :mod:`lungcad.pipeline.footprint`). Regions larger than
    :data:`lungcad.pipeline.grouping.MAX_REGION_ML` at every level are dropped (masses, not
    nodules; see :mod:`lungcad.pipeline.grouping`).

    ``progress(stage, fraction)`` is called as each stage advances (stages: :data:`STAGES`);
    setting ``cancel`` stops the run between two batches with
    :class:`~lungcad.pipeline.DetectionCancelled`; ``stats``, when given, is filled in with
    what the run did. How the run goes (floors, lung region, batches, precision, mirrors, thick
    slices) is ``options``: see :class:`DetectionOptions`.
    """
    monitor = Monitor(progress, cancel)
    bf16 = models.bf16 if options.bf16 is None else bool(options.bf16)
    on_gpu = models.device.type != "cpu"
    slice_batch = options.slice_batch or (GPU_SLICE_BATCH if on_gpu else SLICE_BATCH)
    crop_batch = options.crop_batch or (GPU_CROP_BATCH if on_gpu else CROP_BATCH)
    mirror_nodule = options.mirror_nodule
    stats = stats if stats is not None else DetectionStats()
    timings: dict[str, float] = {}
    floor = min(float(options.min_segmentation_threshold), thresholds.segmentation)
    if not 0.0 < floor <= 1.0:
        raise ValueError(f"min_segmentation_threshold must lie in (0, 1], got {floor}")
    nodule_floor = min(float(options.min_nodule_threshold), thresholds.nodule)
    if not 0.0 <= nodule_floor <= 1.0:
        raise ValueError(f"min_nodule_threshold must lie in [0, 1], got {nodule_floor}")
    started = clock = time.perf_counter()
    cpu_clock = time.process_time()

    def lap(stage: Stage) -> None:
        nonlocal clock, cpu_clock
        name = Stage(stage).value  # plain-string keys in timings and stats
        now, cpu_now = time.perf_counter(), time.process_time()
        timings[name] = now - clock
        stats.cpu_s[name] = cpu_now - cpu_clock
        clock, cpu_clock = now, cpu_now
        peak = peak_rss_mb()
        if peak is not None:  # unknown without resource and psutil: the figure is left out
            stats.peak_rss_mb[name] = peak
        monitor.report(stage, 1.0)

    monitor.check()
    canonical = canonical_geometry(ct.geometry)
    depth = int(getattr(models.segmentation, "depth", 1))
    lungs = parenchyma_mask(ct)
    if not lungs.mask.any():
        # nothing outside the lung is ever classified: with no lung there is nothing to run
        log.warning("%s: no lung found; no candidate can be a finding", ct.series_uid or "CT")
        plan = UNetPlan.of_box(Box((0, 0, 0), (0, 0, 0)))
    elif options.lung_region:
        plan = lung_plan(ct, canonical, options.lung_margin_mm, 2 ** max(depth - 1, 0), lungs)
    else:
        plan = UNetPlan.of_box(Box.whole(canonical.shape_irc))
    if options.interpolate_thick_slices and lungs.mask.any():
        plan = thin_slices(plan, ct.geometry, canonical)
    box = plan.box
    lap(Stage.LUNGS)

    volume = resample_to_canonical(ct, monitor)
    lap(Stage.RESAMPLE)

    proposals = propose_candidates(
        volume.hu, canonical, plan, lungs, models.segmentation, models.device, floor,
        batch=slice_batch, bf16=bf16, channels_last=options.channels_last, monitor=monitor,
        on_stage=lap,
    )  # fmt: skip
    groups, centres, in_lung = proposals.groups, proposals.crop_centres_irc, proposals.in_lung

    p_nodule = np.zeros(len(groups), dtype=np.float64)
    p_malignant = np.full(len(groups), np.nan, dtype=np.float64)  # outside the lung: unscored
    p_nodule[in_lung], p_malignant[in_lung] = classify(
        volume.hu, centres[in_lung], models.nodule, models.malignancy, models.device,
        floor=nodule_floor, batch=crop_batch, bf16=bf16, mirror=mirror_nodule, monitor=monitor,
    )  # fmt: skip
    del volume
    lap(Stage.CLASSIFICATION)

    store = _build_store(groups, centres, p_nodule, p_malignant, in_lung, canonical, ct,
                         (floor, nodule_floor), monitor)  # fmt: skip
    lap(Stage.MAPPING)
    timings["total"] = time.perf_counter() - started

    result = DetectionResult.from_store(
        store, thresholds, series_uid=ct.series_uid, timings_s=timings,
        model_versions=_versions(models, mirror_nodule, nodule_floor),
        warnings=check_input(ct, models.cards),  # outside the training range, partial lungs
    )  # fmt: skip
    stats.original_shape = tuple(ct.geometry.shape_irc)
    stats.canonical_shape = tuple(canonical.shape_irc)
    stats.unet_box_shape = box.shape
    stats.slices_run = int(np.count_nonzero(plan.areas[plan.run_slices]))
    stats.unet_pixels = plan.pixels
    stats.candidates = store.count
    stats.candidates_in_lung = int(in_lung.sum())
    stats.lung_volume_ml = lungs.volume_ml
    stats.stored_voxels = len(store.region_index)
    stats.timings_s = dict(timings)
    log.info(
        "%s: %d candidates, %d findings in %.1f s (%s)",
        ct.series_uid or "CT", store.count, len(result.findings), timings["total"],
        ", ".join(f"{k} {v:.2f} s" for k, v in timings.items() if k != "total"),
    )  # fmt: skip
    return result


def _versions(models: CascadeModels, mirror_nodule: bool, nodule_floor: float) -> dict[str, str]:
    """The models' versions, saying which candidates had their nodule views averaged and which
    got the malignancy classifier (those at or above the nodule floor)."""
    versions = models.versions()
    at_floor = f"p_nodule >= {nodule_floor:g}"
    if mirror_nodule and "nodule" in versions:
        versions["nodule"] += f", mean of {len(NODULE_MIRRORS)} in-plane mirrors"
        mirror_from = min(nodule_floor, MIRROR_FLOOR)
        if mirror_from > 0:
            versions["nodule"] += f" where one view gives p_nodule >= {mirror_from:g}"
    if nodule_floor > 0 and "malignancy" in versions:
        versions["malignancy"] += f", where {at_floor}"
    return versions


def _build_store(groups, centres, p_nodule, p_malignant, in_lung, canonical, ct, floors, monitor):
    """The candidate store: floor regions, the CT's HU there, the scores, in the lung or not;
    ``floors`` = (segmentation floor, nodule floor)."""
    floor, nodule_floor = floors
    if not groups:
        return empty_store(canonical, ct.geometry, floor, nodule_floor)
    mapper = VoxelMapper(canonical, ct.geometry)
    offsets = np.zeros(len(groups) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(g.region_index) for g in groups])
    index = np.concatenate([g.region_index for g in groups])
    monitor.report(Stage.MAPPING, 0.5)
    return CandidateStore(
        canonical=canonical,
        original=ct.geometry,
        floor=floor,
        p_nodule=p_nodule,
        p_malignant=p_malignant,
        crop_center_irc=centres,
        region_offsets=offsets,
        region_index=index,
        region_prob=np.concatenate([g.region_prob for g in groups]),
        region_hu=mapper.sample(index, ct.hu),
        in_lung=in_lung,
        nodule_floor=nodule_floor,
    )
