"""Disk cache of canonical CTs and nodule label maps, so epochs after the first never re-read CTs.

Layout, one folder per scale policy and series::

    CACHE/<policy-hash>/<seriesuid>/ct.npy      int16 HU on the canonical grid (index, row, col)
    CACHE/<policy-hash>/<seriesuid>/labels.npy  uint8 nodule labels (k = k-th annotation), same grid
    CACHE/<policy-hash>/<seriesuid>/meta.json   canonical geometry, source, policy, nodule summary

Arrays are opened with ``np.load(mmap_mode="r")`` so a crop reads only the pages it touches. An
entry is written into a temporary folder and renamed into place in one step, so DataLoader workers
or DDP ranks that build the same series at once cannot leave a half-written entry: the first rename
wins and the others discard their copy. Labels come from ``<uid>_nodules.nrrd`` beside the ``.mhd``
when present (phantoms), otherwise from the annotations (real LUNA16, the seeds' mask builder run
on the canonical CT). An entry whose source header or annotations changed is rebuilt.
"""

from lungcad.ct import geometry_from_json, geometry_to_json
from lungcad_training.cache.format import (
    CACHE_FORMAT,
    CT_FILE,
    LABEL_SUFFIX,
    LABELS_FILE,
    META_FILE,
    policy_hash,
)
from lungcad_training.cache.labels import NoduleSummary, summarise_labels
from lungcad_training.cache.prefill import prefill_cache
from lungcad_training.cache.series import CachedSeries, SeriesCache

__all__ = [
    "CACHE_FORMAT",
    "CT_FILE",
    "LABELS_FILE",
    "LABEL_SUFFIX",
    "META_FILE",
    "CachedSeries",
    "NoduleSummary",
    "SeriesCache",
    "geometry_from_json",
    "geometry_to_json",
    "policy_hash",
    "prefill_cache",
    "summarise_labels",
]
