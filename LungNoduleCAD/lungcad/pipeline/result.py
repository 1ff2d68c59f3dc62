"""What :func:`lungcad.pipeline.detect` returns: findings plus the cache that re-thresholds them.

A :class:`DetectionResult` answers a threshold change with :meth:`DetectionResult.refilter`
(milliseconds, no network, no CT) and saves to / loads from one ``.npz`` file: the candidate store's
arrays plus one JSON string for everything else, so loading never unpickles anything.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lungcad.atomic import write_bytes_atomic
from lungcad.characteristics import Characteristics, NoduleMargin, NoduleType
from lungcad.ct import Geometry, geometry_from_json, geometry_to_json
from lungcad.errors import LungCADError
from lungcad.pipeline.findings import CandidateScore, Finding, PatientSummary, Thresholds
from lungcad.pipeline.store import STORE_ARRAY_DEFAULTS, STORE_ARRAYS, CandidateStore

log = logging.getLogger(__name__)

RESULT_FORMAT = "lungcad-detection"
#: 2: the nodule floor (``min_nodule_threshold``; p_malignant NaN below it). Version 1 files load
#: with floor 0 (every candidate in the lung was scored); lungcad versions that read only 1
#: refuse version 2 files rather than show NaN scores below the floor.
RESULT_FORMAT_VERSION = 2
_META_KEY = "meta_json"


class DetectionResultError(LungCADError, ValueError):
    """A saved detection result could not be read; the message names the file and why."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True, eq=False)
class DetectionResult:
    """The cascade's output for one CT at one set of thresholds.

    ``findings`` are numbered 1.. by p_malignant descending; ``candidates`` lists every candidate
    whose region survives the segmentation threshold (kept or not, by p_nodule descending) with
    the finding number of the kept ones. ``min_segmentation_threshold`` is the floor the
    candidates were grouped at: :meth:`refilter` can move the segmentation threshold anywhere at
    or above it; :attr:`min_nodule_threshold` is the same for the nodule threshold.
    ``store`` is the compact cache behind refiltering (see :mod:`lungcad.pipeline.store`);
    readers of findings never need it. ``characteristics`` holds the nodule type and margin
    given for some candidates (by store candidate index; :meth:`with_characteristics`): they
    follow a candidate through refiltering and saving, and its Lung-RADS category reads them.
    """

    geometry: Geometry
    series_uid: str | None
    thresholds: Thresholds
    findings: tuple[Finding, ...]
    candidates: tuple[CandidateScore, ...]
    summary: PatientSummary
    timings_s: dict[str, float]
    model_versions: dict[str, str]
    min_segmentation_threshold: float
    store: CandidateStore = field(repr=False)
    #: Where the scan lies outside what the models know (:mod:`lungcad.pipeline.input_checks`).
    warnings: tuple[str, ...] = ()
    characteristics: Mapping[int, Characteristics] = field(default_factory=dict)

    @property
    def min_nodule_threshold(self) -> float:
        """The nodule floor: :meth:`refilter` accepts nodule thresholds at or above it (below it
        candidates have no malignancy score; 0 for results saved before the floor)."""
        return self.store.nodule_floor

    @classmethod
    def from_store(
        cls,
        store: CandidateStore,
        thresholds: Thresholds,
        *,
        series_uid: str | None,
        timings_s: dict[str, float],
        model_versions: dict[str, str],
        warnings: tuple[str, ...] = (),
        characteristics: Mapping[int, Characteristics] | None = None,
    ) -> DetectionResult:
        characteristics = dict(characteristics or {})
        findings, candidates = store.build(thresholds, characteristics)
        return cls(
            geometry=store.original,
            series_uid=series_uid,
            thresholds=thresholds,
            findings=findings,
            candidates=candidates,
            summary=PatientSummary.of(findings, thresholds),
            timings_s=dict(timings_s),
            model_versions=dict(model_versions),
            min_segmentation_threshold=store.floor,
            store=store,
            warnings=tuple(warnings),
            characteristics=characteristics,
        )

    def refilter(self, thresholds: Thresholds) -> DetectionResult:
        """The same detection at other thresholds; never runs a network.

        Raises ValueError when ``thresholds.segmentation`` is below
        ``min_segmentation_threshold`` (that part of the map was not kept), or
        ``thresholds.nodule`` below ``min_nodule_threshold`` (no malignancy score there).
        """
        started = time.perf_counter()
        result = DetectionResult.from_store(
            self.store,
            thresholds,
            series_uid=self.series_uid,
            timings_s=self.timings_s,
            model_versions=self.model_versions,
            warnings=self.warnings,
            characteristics=self.characteristics,
        )
        log.debug(
            "refiltered %d candidates in %.1f ms", self.store.count,
            1000 * (time.perf_counter() - started),
        )  # fmt: skip
        return result

    def with_characteristics(self, given: Mapping[int, Characteristics]) -> DetectionResult:
        """The same result with the type and margin of some findings given (by finding number,
        e.g. a reader's call); their Lung-RADS categories and the exam's are read again.

        A finding given again replaces what it had; ``Characteristics()`` makes it unknown.
        Raises ValueError for a number that is not a finding of this result.
        """
        candidates = self.store.finding_candidates(self.thresholds)
        unknown = sorted(n for n in given if not 1 <= n <= len(candidates))
        if unknown:
            raise ValueError(
                f"no finding {', '.join(map(str, unknown))} in this result "
                f"(it has {len(candidates)} findings)"
            )
        merged = dict(self.characteristics)
        merged.update({candidates[n - 1]: c for n, c in given.items()})
        merged = {k: c for k, c in merged.items() if c != Characteristics()}
        return DetectionResult.from_store(
            self.store,
            self.thresholds,
            series_uid=self.series_uid,
            timings_s=self.timings_s,
            model_versions=self.model_versions,
            warnings=self.warnings,
            characteristics=merged,
        )

    # --- files ----------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write a compressed ``.npz`` (arrays + one JSON string; no pickle), atomically."""
        path = Path(path)
        meta = {
            "format": RESULT_FORMAT,
            "format_version": RESULT_FORMAT_VERSION,
            "series_uid": self.series_uid,
            "thresholds": dataclasses.asdict(self.thresholds),
            "timings_s": self.timings_s,
            "model_versions": self.model_versions,
            "min_segmentation_threshold": self.min_segmentation_threshold,
            "min_nodule_threshold": self.min_nodule_threshold,
            "geometry": geometry_to_json(self.geometry),
            "canonical_geometry": geometry_to_json(self.store.canonical),
            "warnings": list(self.warnings),
            "characteristics": {
                str(k): {
                    "type": None if c.nodule_type is None else c.nodule_type.value,
                    "margin": None if c.margin is None else c.margin.value,
                }
                for k, c in sorted(self.characteristics.items())
            },
        }
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            **{_META_KEY: np.array(json.dumps(meta, allow_nan=False))},
            **self.store.arrays(),
        )
        write_bytes_atomic(path, buffer.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> DetectionResult:
        """Read a file written by :meth:`save`; findings are rebuilt exactly from the store.

        A crafted file cannot make it misbehave: only a regular file of at most 1 GiB is read
        (no FIFO, no device), its arrays may inflate to at most 4 GiB in all (the zip directory
        is checked first), and every number is checked for range (probabilities in [0, 1],
        p_malignant NaN only where unscored, finite geometry, voxel indices on the grid).
        """
        import zipfile

        from lungcad.safefile import UnsafeFileError, read_bounded

        path = Path(path)
        max_file, max_inflated = 1024**3, 4 * 1024**3
        try:
            data = read_bounded(path, max_file)
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                inflated = sum(info.file_size for info in archive.infolist())
            if inflated > max_inflated:
                raise DetectionResultError(
                    path, f"its arrays would inflate to {inflated} bytes (at most {max_inflated})"
                )
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except FileNotFoundError:
            raise DetectionResultError(path, "file not found") from None
        except UnsafeFileError as exc:
            raise DetectionResultError(path, str(exc)) from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DetectionResultError(path, f"not a readable .npz file: {exc}") from None
        try:
            meta = json.loads(str(arrays.pop(_META_KEY)))
        except KeyError:
            raise DetectionResultError(path, "not a lungcad detection result (no meta)") from None
        except json.JSONDecodeError as exc:
            raise DetectionResultError(path, f"metadata is not valid JSON: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != RESULT_FORMAT:
            raise DetectionResultError(path, "not a lungcad detection result")
        version = meta.get("format_version")
        if not isinstance(version, int) or version > RESULT_FORMAT_VERSION:
            raise DetectionResultError(
                path, f"format version {version!r} is newer than this lungcad reads"
            )
        missing = sorted(set(STORE_ARRAYS) - set(arrays) - set(STORE_ARRAY_DEFAULTS))
        if missing:
            raise DetectionResultError(path, f"arrays missing: {', '.join(missing)}")

        def refuse_unless(ok: bool, problem: str) -> None:
            if not ok:
                raise DetectionResultError(path, f"inconsistent content: {problem}")

        def probabilities(name: str, nan_ok: bool = False) -> None:
            values = np.asarray(arrays[name], dtype=np.float64)
            known = values[~np.isnan(values)] if nan_ok else values
            refuse_unless(
                values.ndim == 1 and bool(np.all((known >= 0.0) & (known <= 1.0))),
                f"{name} must hold probabilities in [0, 1]"
                + (" (NaN where unscored)" if nan_ok else ""),
            )

        for name in ("p_nodule", "region_prob"):
            probabilities(name)
        probabilities("p_malignant", nan_ok=True)
        for key in ("min_segmentation_threshold", "min_nodule_threshold"):
            value = meta.get(key, 0.0)
            refuse_unless(
                isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0,
                f"{key} must lie in [0, 1], got {value!r}",
            )
        try:
            canonical_shape = [int(n) for n in meta["canonical_geometry"]["shape_irc"]]
            shape_ok = len(canonical_shape) == 3 and min(canonical_shape) >= 1
        except (KeyError, TypeError, ValueError):
            shape_ok = False
        refuse_unless(shape_ok, "the canonical grid has no valid shape_irc")
        index = np.asarray(arrays["region_index"])
        offsets = np.asarray(arrays["region_offsets"])
        refuse_unless(
            index.ndim == 1
            and np.issubdtype(index.dtype, np.integer)
            and (index.size == 0 or (index.min() >= 0 and index.max() < np.prod(canonical_shape))),
            "region_index must hold voxel indices on the canonical grid",
        )
        refuse_unless(
            offsets.ndim == 1
            and offsets.size >= 1
            and np.issubdtype(offsets.dtype, np.integer)
            and offsets[0] == 0
            and bool(np.all(np.diff(offsets) >= 0)),
            "region_offsets must start at 0 and never decrease",
        )
        centres = np.asarray(arrays["crop_center_irc"])
        refuse_unless(
            np.issubdtype(centres.dtype, np.integer) or bool(np.isfinite(centres).all()),
            "crop_center_irc must be finite",
        )
        try:
            store = CandidateStore(
                canonical=geometry_from_json(meta["canonical_geometry"]),
                original=geometry_from_json(meta["geometry"]),
                floor=float(meta["min_segmentation_threshold"]),
                # absent: version 1, every candidate in the lung was scored
                nodule_floor=float(meta.get("min_nodule_threshold", 0.0)),
                **{name: arrays[name] for name in STORE_ARRAYS if name in arrays},
            )
            return cls.from_store(
                store,
                Thresholds(**meta["thresholds"]),
                series_uid=meta["series_uid"],
                timings_s={str(k): float(v) for k, v in meta["timings_s"].items()},
                model_versions={str(k): str(v) for k, v in meta["model_versions"].items()},
                warnings=tuple(str(w) for w in meta.get("warnings", [])),  # absent: older file
                characteristics=_characteristics_from_json(meta.get("characteristics", {}), store),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise DetectionResultError(path, f"inconsistent content: {exc!r}") from None


def _characteristics_from_json(
    data: dict[str, Any], store: CandidateStore
) -> dict[int, Characteristics]:
    """Given types and margins by candidate index (absent in files saved before them)."""
    if not isinstance(data, dict):
        raise ValueError(f"characteristics must be an object, got {type(data).__name__}")
    out = {}
    for key, value in data.items():
        k = int(key)
        if not 0 <= k < store.count:
            raise ValueError(f"characteristics name candidate {k} of {store.count}")
        kind, margin = value["type"], value["margin"]
        out[k] = Characteristics(
            nodule_type=None if kind is None else NoduleType(kind),
            margin=None if margin is None else NoduleMargin(margin),
        )
    return out
