"""The cache of one dataset folder: build an entry atomically, notice a stale one, map it back."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcad import __version__ as lungcad_version
from lungcad.ct import Geometry, geometry_from_json, geometry_to_json
from lungcad.io import read_ct
from lungcad.luna16 import ANNOTATIONS_CSV, Annotation, find_series, read_annotations
from lungcad.preprocess import CANONICAL_SPACING_XYZ, spacing_policy, to_canonical
from lungcad_training.cache.format import (
    CACHE_FORMAT,
    CT_FILE,
    LABEL_SUFFIX,
    LABELS_FILE,
    META_FILE,
    header_geometry,
    policy_hash,
    same_geometry,
)
from lungcad_training.cache.labels import (
    ANNOTATION_THRESHOLD_HU,
    NoduleSummary,
    annotation_rows,
    labels_from_annotations,
    labels_from_nrrd,
    summarise_labels,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedSeries:
    """One cached series: memory-mapped arrays on the canonical grid plus its summary."""

    series_uid: str
    hu: np.ndarray
    labels: np.ndarray
    geometry: Geometry
    nodules: tuple[NoduleSummary, ...]
    meta: dict

    @property
    def nodule_slices(self) -> list[int]:
        """Sorted indices of the slices holding any nodule voxel."""
        return sorted({s[0] for n in self.nodules for s in n.slices})


class SeriesCache:
    """Canonical CTs and label maps of one dataset folder, cached under ``cache_dir``.

    ``data_dir`` (a LUNA16-layout folder) is where missing entries are built from; without it the
    cache is read-only. At most ``max_open`` series stay memory-mapped per process (each mapping
    holds a file descriptor). Pickling drops the open mappings, so DataLoader workers reopen them.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        data_dir: str | Path | None = None,
        spacing_xyz: tuple[float, float, float] = CANONICAL_SPACING_XYZ,
        max_open: int = 32,
    ) -> None:
        self.spacing_xyz = tuple(float(s) for s in spacing_xyz)
        self.policy = spacing_policy(self.spacing_xyz)
        self.root = Path(cache_dir) / policy_hash(self.policy)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.max_open = max_open
        self._reset_state()

    def _reset_state(self) -> None:
        self._open: OrderedDict[str, CachedSeries] = OrderedDict()
        self._checked: set[str] = set()
        self._series_paths: dict[str, Path] | None = None
        self._annotations: dict[str, list[Annotation]] | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_open", "_checked", "_series_paths", "_annotations"):
            state.pop(key)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_state()

    # ---------------------------------------------------------------- sources

    def series_paths(self) -> dict[str, Path]:
        """Series UID -> ``.mhd`` of the dataset folder (empty without one), listed once."""
        if self._series_paths is None:
            self._series_paths = find_series(self.data_dir) if self.data_dir else {}
        return self._series_paths

    def annotations_for(self, series_uid: str) -> list[Annotation]:
        if self._annotations is None:
            self._annotations = {}
            path = self.data_dir / ANNOTATIONS_CSV if self.data_dir else None
            if path is not None and path.is_file():
                for ann in read_annotations(path):
                    self._annotations.setdefault(ann.series_uid, []).append(ann)
        return self._annotations.get(series_uid, [])

    # ---------------------------------------------------------------- entries

    def entry_dir(self, series_uid: str) -> Path:
        return self.root / series_uid

    def is_cached(self, series_uid: str) -> bool:
        return (self.entry_dir(series_uid) / META_FILE).is_file()

    def cached_series(self) -> set[str]:
        """UIDs with a complete entry under this policy (in-progress temp folders excluded)."""
        if not self.root.is_dir():
            return set()
        return {
            p.name
            for p in self.root.iterdir()
            if not p.name.startswith(".") and self.is_cached(p.name)
        }

    def stale_reason(self, series_uid: str) -> str | None:
        """Why a cached entry no longer matches its source, or None (also when it is gone)."""
        ct_path = self.series_paths().get(series_uid)
        if ct_path is None or not self.is_cached(series_uid):
            return None
        meta = json.loads((self.entry_dir(series_uid) / META_FILE).read_text(encoding="utf-8"))
        try:
            source = header_geometry(ct_path)
        except RuntimeError as exc:
            return f"source header unreadable ({exc!s:.80})"
        if not same_geometry(source, geometry_from_json(meta["source"]["geometry"])):
            return f"source grid of {ct_path} changed"
        nrrd = ct_path.with_name(series_uid + LABEL_SUFFIX)
        expected = "nrrd" if nrrd.is_file() else "annotations"
        if meta["labels"]["source"] != expected:
            return f"labels now come from {expected}, cached from {meta['labels']['source']}"
        if expected == "annotations":
            now = annotation_rows(self.annotations_for(series_uid))
            if now != meta["labels"]["annotations"]:
                return "annotations changed"
        return None

    def ensure(self, series_uid: str) -> Path:
        """The entry's folder, built now if missing or stale."""
        self._checked.add(series_uid)
        if not self.is_cached(series_uid):
            return self.build(series_uid)
        reason = self.stale_reason(series_uid)
        if reason is None:
            return self.entry_dir(series_uid)
        log.warning("cache entry %s is stale (%s); rebuilding", series_uid, reason)
        self._open.pop(series_uid, None)
        return self.build(series_uid, replace=True)

    def build(self, series_uid: str, replace: bool = False) -> Path:
        """Read, resample and label one series and write its entry atomically."""
        ct_path = self.series_paths().get(series_uid)
        if ct_path is None:
            where = self.data_dir or "(no data_dir given)"
            raise FileNotFoundError(
                f"series {series_uid} is neither cached under {self.root} nor on disk in {where}"
            )
        started = time.perf_counter()
        ct = read_ct(ct_path)
        if ct.series_uid != series_uid:
            ct.series_uid = series_uid  # file stem is the LUNA16 identity
        canonical = to_canonical(ct, self.spacing_xyz)
        del ct
        nrrd = ct_path.with_name(series_uid + LABEL_SUFFIX)
        if nrrd.is_file():
            labels, n_source = labels_from_nrrd(nrrd, canonical.geometry)
            label_info = {"source": "nrrd", "path": str(nrrd), "annotations": None}
        else:
            annotations = self.annotations_for(series_uid)
            labels = labels_from_annotations(canonical, annotations)
            n_source = len(annotations)
            label_info = {
                "source": "annotations",
                "path": str(self.data_dir / ANNOTATIONS_CSV) if self.data_dir else None,
                "annotations": annotation_rows(annotations),
                "threshold_hu": ANNOTATION_THRESHOLD_HU,
            }
        nodules = summarise_labels(labels)
        if len(nodules) < n_source:
            log.warning(
                "%s: %d of %d nodules left no voxels on the canonical grid",
                series_uid,
                n_source - len(nodules),
                n_source,
            )
        meta = {
            "cache_format": CACHE_FORMAT,
            "series_uid": series_uid,
            "policy": self.policy,
            "policy_hash": self.root.name,
            "geometry": geometry_to_json(canonical.geometry),
            "source": {
                "path": str(ct_path),
                "geometry": geometry_to_json(header_geometry(ct_path)),
            },
            "labels": label_info,
            "nodules": [n.to_json() for n in nodules],
            "lungcad_version": lungcad_version,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        path = self._write_entry(series_uid, canonical.hu, labels, meta, replace)
        log.info(
            "cached %s: %s voxels, %d nodules, %.1f s",
            series_uid,
            canonical.geometry.shape_irc,
            len(nodules),
            time.perf_counter() - started,
        )
        return path

    def _write_entry(
        self, series_uid: str, hu: np.ndarray, labels: np.ndarray, meta: dict, replace: bool
    ) -> Path:
        """Write into a private temporary folder, then rename it into place in one step."""
        final = self.entry_dir(series_uid)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{series_uid}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            np.save(tmp / CT_FILE, np.ascontiguousarray(hu, dtype=np.int16))
            np.save(tmp / LABELS_FILE, np.ascontiguousarray(labels, dtype=np.uint8))
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
            if replace and final.exists():
                stale = self.root / f".stale-{series_uid}-{uuid.uuid4().hex[:8]}"
                os.replace(final, stale)  # readers holding mappings keep the old files
                shutil.rmtree(stale, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.is_cached(series_uid):
                    raise
                log.debug("%s was cached by another process meanwhile; keeping theirs", series_uid)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    # ---------------------------------------------------------------- reading

    def get(self, series_uid: str) -> CachedSeries:
        """The series' memory-mapped entry, building it first when missing (or stale)."""
        series = self._open.get(series_uid)
        if series is not None:
            self._open.move_to_end(series_uid)
            return series
        if not self.is_cached(series_uid) or series_uid not in self._checked:
            self.ensure(series_uid)
        series = self._load(series_uid)
        self._open[series_uid] = series
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)
        return series

    def _load(self, series_uid: str) -> CachedSeries:
        folder = self.entry_dir(series_uid)
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        geometry = geometry_from_json(meta["geometry"])
        hu = np.load(folder / CT_FILE, mmap_mode="r")
        labels = np.load(folder / LABELS_FILE, mmap_mode="r")
        if hu.shape != geometry.shape_irc or labels.shape != geometry.shape_irc:
            raise ValueError(f"{folder}: arrays {hu.shape}/{labels.shape} != {geometry.shape_irc}")
        nodules = tuple(NoduleSummary.from_json(n) for n in meta["nodules"])
        return CachedSeries(series_uid, hu, labels, geometry, nodules, meta)

    def meta(self, series_uid: str) -> dict:
        """An entry's meta.json (building the entry when missing) without mapping its arrays."""
        if not self.is_cached(series_uid) or series_uid not in self._checked:
            self.ensure(series_uid)
        return json.loads((self.entry_dir(series_uid) / META_FILE).read_text(encoding="utf-8"))
