"""Write synthetic cases in the LUNA16 layout, with the truth files training and evaluation read.

OUT/subset<k>/<seriesuid>.mhd/.raw       the CT (int16 HU, uncompressed MetaIO like LUNA16)
OUT/subset<k>/<seriesuid>_nodules.nrrd   ground truth: label k = k-th annotation of that case
OUT/annotations.csv                      seriesuid,coordX,coordY,coordZ,diameter_mm
OUT/candidates.csv                       seriesuid,coordX,coordY,coordZ,class
OUT/annotations_with_malignancy.csv      the LIDC-derived layout (mal_bool, reader ratings, bbox)
OUT/phantom_nodules.csv                  per nodule: type, margin, location, malignancy score
OUT/phantom.json                         how the set was made (seed, size, cases, version)

From realism version 2 on, phantom.json also holds ``realism_version`` and, per series,
``contrast`` (bool), ``blood_hu`` (the enhanced blood pool, or null) and
``slice_thickness_mm``; a version-1 manifest is left exactly as it always was (no
``realism_version``: read its absence as 1).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lungcad import __version__
from lungcad.atomic import write_text_atomic
from lungcad.ct import Geometry
from lungcad.ctio import write_ct, write_label_map
from lungcad.errors import LungCADError
from lungcad.geometry import voxel_to_world
from lungcad.phantom.candidates import lookalike_candidates
from lungcad.phantom.cases import _CANDIDATES, PhantomCase, case_rng, make_case
from lungcad.phantom.spec import NoduleSpec, PhantomSize, RealismVersion

log = logging.getLogger(__name__)

ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
CANDIDATE_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "class")
MALIGNANCY_COLUMNS = (
    "seriesuid", "coordX", "coordY", "coordZ", "diameter_mm", "mal_bool", "mal_details",
    "bboxLowX", "bboxLowY", "bboxLowZ", "bboxHighX", "bboxHighY", "bboxHighZ", "len_mal_details",
)  # fmt: skip
NODULE_COLUMNS = (
    "seriesuid", "label", "coordX", "coordY", "coordZ", "diameter_mm", "type", "margin",
    "location", "malignancy_score", "mal_bool", "subset",
)  # fmt: skip
NODULE_TRUTH_FILES = ("annotations.csv", "annotations_with_malignancy.csv", "phantom_nodules.csv")
TRUTH_FILES = (
    "annotations.csv",
    "candidates.csv",
    "annotations_with_malignancy.csv",
    "phantom_nodules.csv",
    "phantom.json",
)


class PhantomOutputExistsError(LungCADError, FileExistsError):
    """The output folder already holds a dataset; refuse rather than overwrite it."""


@dataclass
class CaseRecord:
    series_uid: str
    subset: int
    ct_path: Path
    label_path: Path
    shape_irc: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float]
    n_nodules: int
    seconds: float
    contrast: bool = False
    blood_hu: float | None = None
    slice_thickness_mm: float | None = None


def _fmt(v: float) -> str:
    return f"{v:.3f}"


def label_bbox_world(
    labels: np.ndarray, geometry: Geometry, label: int
) -> tuple[np.ndarray, np.ndarray]:
    """LPS extent of one label's voxels (corners of the voxels, any direction)."""
    idx = np.argwhere(labels == label)
    lo, hi = idx.min(0) - 0.5, idx.max(0) + 0.5
    corners = np.array(
        [[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]
    )
    world = voxel_to_world(corners, geometry)
    return world.min(0), world.max(0)


def nodule_rows(
    uid: str, nodules: Sequence[NoduleSpec], labels: np.ndarray, geometry: Geometry, subset: int
) -> dict[str, list[tuple]]:
    """The rows of annotations.csv, annotations_with_malignancy.csv and phantom_nodules.csv for
    the nodules drawn into one series (``labels``: their label map on ``geometry``)."""
    rows: dict[str, list[tuple]] = {name: [] for name in NODULE_TRUTH_FILES}
    for n in nodules:
        x, y, z = (_fmt(c) for c in n.center_xyz)
        rows["annotations.csv"].append((uid, x, y, z, _fmt(n.diameter_mm)))
        low, high = label_bbox_world(labels, geometry, n.index)
        ratings = "[" + ", ".join(str(r) for r in n.reader_ratings) + "]"
        rows["annotations_with_malignancy.csv"].append(
            (uid, x, y, z, _fmt(n.diameter_mm), str(n.is_malignant), ratings,
             *(_fmt(v) for v in low), *(_fmt(v) for v in high), len(n.reader_ratings))
        )  # fmt: skip
        rows["phantom_nodules.csv"].append(
            (uid, n.index, x, y, z, _fmt(n.diameter_mm), n.kind.value, n.margin.value,
             n.location.value, f"{n.malignancy_score:.4f}", str(n.is_malignant), subset)
        )  # fmt: skip
    return rows


def case_rows(case: PhantomCase, subset: int) -> dict[str, list[tuple]]:
    """The csv rows one case contributes to each truth file."""
    uid = case.spec.series_uid
    rows: dict[str, list[tuple]] = {"candidates.csv": []}
    rows.update(
        nodule_rows(uid, case.spec.nodules, case.rendered.nodule_labels, case.ct.geometry, subset)
    )
    rng = case_rng(case.spec.seed, case.spec.index, _CANDIDATES)
    for cand in lookalike_candidates(case.spec.anatomy, case.spec.nodules, rng):
        x, y, z = (_fmt(c) for c in cand.center_xyz)
        rows["candidates.csv"].append((uid, x, y, z, int(cand.is_nodule)))
    return rows


def write_csv_atomic(path: Path, header: Iterable[str], rows: list[tuple]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def refuse_existing(out_dir: Path, overwrite: bool) -> None:
    if overwrite or not out_dir.exists():
        return
    existing = [name for name in TRUTH_FILES if (out_dir / name).exists()]
    existing += [str(p.relative_to(out_dir)) for p in sorted(out_dir.glob("subset*/*.mhd"))[:3]]
    if existing:
        raise PhantomOutputExistsError(
            f"{out_dir} already holds a dataset ({', '.join(existing[:4])}); "
            "choose another folder or pass --overwrite"
        )


def _write_case(
    out: Path,
    seed: int,
    index: int,
    size: PhantomSize,
    subsets: int,
    overwrite: bool,
    version: RealismVersion = RealismVersion.V1,
) -> tuple[CaseRecord, dict[str, list[tuple]]]:
    """Make case ``index`` and write its CT and label map; its csv rows come back to the caller."""
    started = time.perf_counter()
    case = make_case(seed, index, size, version)
    subset = index % subsets
    folder = out / f"subset{subset}"
    uid = case.spec.series_uid
    ct = case.ct
    ct_path = write_ct(ct, folder / f"{uid}.mhd", overwrite=overwrite)
    label_path = write_label_map(
        case.rendered.nodule_labels,
        ct.geometry,
        folder / f"{uid}_nodules.nrrd",
        overwrite=overwrite,
    )
    record = CaseRecord(
        uid, subset, ct_path, label_path, ct.shape, ct.geometry.spacing_xyz,
        len(case.spec.nodules), time.perf_counter() - started,
        contrast=case.spec.contrast, blood_hu=case.spec.blood_hu,
        slice_thickness_mm=case.rendered.grid.slice_thickness_mm,
    )  # fmt: skip
    return record, case_rows(case, subset)


def write_dataset(
    out_dir: str | Path,
    cases: int,
    seed: int,
    size: PhantomSize,
    subsets: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 1,
    version: RealismVersion | int = RealismVersion.V1,
) -> list[CaseRecord]:
    """Generate ``cases`` phantoms and write them in the LUNA16 layout; returns what was written.

    ``version`` (:class:`RealismVersion`) picks the generator's look; version 1 (the default)
    writes the same bytes it always has, so sets and the weights trained on them reproduce.

    Case i goes to subset i % subsets. Same seed, size and count give the same bytes, whatever
    ``workers`` is: each case has its own random stream and the truth files are assembled in case
    order; ``workers`` > 1 makes cases in parallel processes (on 2 cores no faster than one: the
    renderer's SimpleITK filters already use both).
    """
    if cases < 1:
        raise ValueError(f"cases must be at least 1, got {cases}")
    if not 1 <= subsets <= 10:
        raise ValueError(f"subsets must be between 1 and 10 (as in LUNA16), got {subsets}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    version = RealismVersion(version)
    out = Path(out_dir)
    refuse_existing(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    args = [(out, seed, index, size, subsets, overwrite, version) for index in range(cases)]
    bar = tqdm(total=cases, desc="phantoms", disable=not progress)
    results: list[tuple[CaseRecord, dict[str, list[tuple]]]] = []
    if workers == 1:
        for a in args:
            results.append(_write_case(*a))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=min(workers, cases)) as pool:
            for result in pool.map(_write_case, *zip(*args, strict=True)):
                results.append(result)
                bar.update()
    bar.close()
    all_rows: dict[str, list[tuple]] = {name: [] for name in TRUTH_FILES[:4]}
    records: list[CaseRecord] = []
    for record, rows in results:
        records.append(record)
        for name, case_rows_ in rows.items():
            all_rows[name] += case_rows_
    write_csv_atomic(out / "annotations.csv", ANNOTATION_COLUMNS, all_rows["annotations.csv"])
    write_csv_atomic(out / "candidates.csv", CANDIDATE_COLUMNS, all_rows["candidates.csv"])
    write_csv_atomic(
        out / "annotations_with_malignancy.csv",
        MALIGNANCY_COLUMNS,
        all_rows["annotations_with_malignancy.csv"],
    )
    write_csv_atomic(out / "phantom_nodules.csv", NODULE_COLUMNS, all_rows["phantom_nodules.csv"])
    manifest = _manifest(seed, cases, size, subsets, version, records)
    write_text_atomic(out / "phantom.json", json.dumps(manifest, indent=2) + "\n")
    log.info("wrote %d phantom cases (realism version %d) to %s", len(records), version, out)
    return records


def _manifest(
    seed: int,
    cases: int,
    size: PhantomSize,
    subsets: int,
    version: RealismVersion,
    records: list[CaseRecord],
) -> dict:
    """phantom.json: version 1 exactly as before; later versions add what range checks need."""
    manifest: dict = {
        "generator": "lungcad phantom",
        "lungcad_version": __version__,
        "seed": seed,
        "cases": cases,
        "size": size.value,
        "subsets": subsets,
    }
    if version == RealismVersion.V1:
        manifest["series"] = [
            {"seriesuid": r.series_uid, "subset": r.subset, "nodules": r.n_nodules} for r in records
        ]
        return manifest
    manifest["realism_version"] = int(version)
    manifest["series"] = [
        {
            "seriesuid": r.series_uid,
            "subset": r.subset,
            "nodules": r.n_nodules,
            "contrast": r.contrast,
            "blood_hu": r.blood_hu,
            "slice_thickness_mm": r.slice_thickness_mm,
        }
        for r in records
    ]
    return manifest
