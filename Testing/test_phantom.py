"""Synthetic chest phantoms: layout, determinism, anatomy ranges, nodule population, truth files."""

from __future__ import annotations

import csv
import filecmp
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lungcad.ctio import read_ct
from lungcad.evaluation.roc import roc_auc
from lungcad.geometry import world_to_voxel_index
from lungcad.luna16 import candidate_list, find_series
from lungcad.phantom import (
    NoduleLocation,
    NoduleMargin,
    NoduleType,
    PhantomOutputExistsError,
    PhantomSize,
    Tissue,
    make_case,
    write_dataset,
)
from lungcad.phantom.candidates import LookAlike, lookalike_candidates
from lungcad.phantom.cases import case_rng
from lungcad.phantom.dataset import (
    ANNOTATION_COLUMNS,
    CANDIDATE_COLUMNS,
    MALIGNANCY_COLUMNS,
)
from lungcad.phantom.nodules import malignancy
from lungcad.phantom.stats import dataset_stats


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _header(path: Path) -> tuple[str, ...]:
    with path.open(newline="") as f:
        return tuple(next(csv.reader(f)))


# ---------------------------------------------------------------------------------------------
# layout and determinism


def test_dataset_has_the_luna16_layout_and_columns(small_dataset: Path) -> None:
    assert _header(small_dataset / "annotations.csv") == ANNOTATION_COLUMNS
    assert _header(small_dataset / "candidates.csv") == CANDIDATE_COLUMNS
    assert _header(small_dataset / "annotations_with_malignancy.csv") == MALIGNANCY_COLUMNS
    series = find_series(small_dataset)
    assert len(series) == 4
    assert sorted(p.parent.name for p in series.values()) == [
        "subset0",
        "subset0",
        "subset1",
        "subset1",
    ]
    for uid, mhd in series.items():
        assert mhd.with_suffix(".raw").exists()
        assert (mhd.parent / f"{uid}_nodules.nrrd").exists()


def test_same_seed_gives_the_same_bytes_in_one_process_or_several(tmp_path: Path) -> None:
    first = write_dataset(tmp_path / "a", cases=2, seed=9, size=PhantomSize.SMALL, progress=False)
    write_dataset(
        tmp_path / "b", cases=2, seed=9, size=PhantomSize.SMALL, progress=False, workers=2
    )
    write_dataset(tmp_path / "c", cases=1, seed=10, size=PhantomSize.SMALL, progress=False)
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert len(files) == 5 + 3 * 2  # five truth files, and .mhd/.raw/_nodules.nrrd per case
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert mismatch == [] and errors == []
    other = (tmp_path / "c" / "annotations.csv").read_text(encoding="utf-8")
    assert other != (tmp_path / "a" / "annotations.csv").read_text(encoding="utf-8")
    assert first[0].series_uid not in other


def test_refuses_to_overwrite_an_existing_dataset(tmp_path: Path) -> None:
    write_dataset(tmp_path, cases=1, seed=3, size=PhantomSize.SMALL, progress=False)
    before = (tmp_path / "annotations.csv").read_bytes()
    with pytest.raises(PhantomOutputExistsError, match="already holds a dataset"):
        write_dataset(tmp_path, cases=1, seed=8, size=PhantomSize.SMALL, progress=False)
    assert (tmp_path / "annotations.csv").read_bytes() == before
    write_dataset(tmp_path, cases=1, seed=8, size=PhantomSize.SMALL, overwrite=True, progress=False)
    assert (tmp_path / "annotations.csv").read_bytes() != before


# ---------------------------------------------------------------------------------------------
# geometry and truth maps


def test_ct_and_label_map_load_back_with_one_geometry(small_dataset: Path) -> None:
    orientations = set()
    for uid, mhd in find_series(small_dataset).items():
        ct = read_ct(mhd)
        assert ct.series_uid == uid
        nz, ny, nx = ct.shape
        assert nx <= 160 and ny <= 160 and nz <= 96
        labels = sitk.ReadImage(str(mhd.parent / f"{uid}_nodules.nrrd"))
        assert labels.GetSize() == (nx, ny, nz)
        assert np.allclose(labels.GetOrigin(), ct.geometry.origin_xyz)
        assert np.allclose(labels.GetSpacing(), ct.geometry.spacing_xyz)
        assert np.allclose(labels.GetDirection(), ct.geometry.direction)
        orientations.add(tuple(np.sign(np.diag(ct.geometry.direction_matrix)).astype(int)))
    assert orientations == {(1, 1, 1), (-1, -1, 1), (1, 1, -1)}


def test_each_annotation_centre_lies_inside_its_own_label(small_dataset: Path) -> None:
    annotations = _rows(small_dataset / "annotations.csv")
    by_series: dict[str, list[dict[str, str]]] = {}
    for row in annotations:
        by_series.setdefault(row["seriesuid"], []).append(row)
    checked = 0
    for uid, mhd in find_series(small_dataset).items():
        ct = read_ct(mhd)
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(mhd.parent / f"{uid}_nodules.nrrd")))
        for k, row in enumerate(by_series.get(uid, []), start=1):
            centre = [float(row[c]) for c in ("coordX", "coordY", "coordZ")]
            assert labels[tuple(world_to_voxel_index(centre, ct.geometry))] == k
            checked += 1
        assert set(np.unique(labels)) == set(range(len(by_series.get(uid, [])) + 1))
    assert checked == len(annotations) > 0


def test_small_cases_have_chest_ct_densities(small_cases) -> None:
    for case in small_cases:
        tissue, hu = case.rendered.tissue, case.rendered.hu
        lung = tissue == Tissue.LUNG
        vessel = tissue == Tissue.VESSEL
        assert -900 <= hu[lung].mean() <= -780
        assert 0 <= hu[tissue == Tissue.SOFT_TISSUE].mean() <= 80
        assert -130 <= hu[tissue == Tissue.FAT].mean() <= -60
        assert hu[tissue == Tissue.BONE].mean() > 200
        assert 0.01 <= vessel.sum() / (lung.sum() + vessel.sum()) <= 0.08


def test_a_full_case_is_a_clinical_grid_with_chest_densities() -> None:
    case = make_case(4, 1, PhantomSize.FULL)  # x/y-flipped storage
    nz, ny, nx = case.ct.shape
    assert (ny, nx) == (512, 512) and 120 <= nz <= 400
    sx, sy, sz = case.ct.geometry.spacing_xyz
    assert 0.5 <= sx == sy <= 0.9 and 0.6 <= sz <= 2.5
    assert np.allclose(np.diag(case.ct.geometry.direction_matrix), (-1, -1, 1))
    tissue, hu = case.rendered.tissue, case.rendered.hu
    lung, vessel = tissue == Tissue.LUNG, tissue == Tissue.VESSEL
    assert -900 <= hu[lung].mean() <= -780
    assert 0 <= hu[tissue == Tissue.SOFT_TISSUE].mean() <= 80
    assert 0.01 <= vessel.sum() / (lung.sum() + vessel.sum()) <= 0.08
    for n in case.spec.nodules:
        idx = tuple(world_to_voxel_index(n.center_xyz, case.ct.geometry))
        assert case.rendered.nodule_labels[idx] == n.index
    # a solid nodule is soft-tissue dense at its centre, a ground-glass one is not
    for n in case.spec.nodules:
        idx = tuple(world_to_voxel_index(n.center_xyz, case.ct.geometry))
        if n.kind is NoduleType.SOLID and n.diameter_mm >= 6:
            assert hu[idx] > -200


# ---------------------------------------------------------------------------------------------
# population over 20 cases


def test_twenty_cases_cover_sizes_types_margins_and_locations(twenty_specs) -> None:
    nodules = [n for spec in twenty_specs for n in spec.nodules]
    assert all(len(spec.nodules) >= 1 for spec in twenty_specs)
    diameters = np.array([n.diameter_mm for n in nodules])
    assert diameters.min() >= 3.0 and diameters.max() <= 30.0
    assert diameters.min() < 4.5 and diameters.max() > 25.0
    assert {n.kind for n in nodules} == set(NoduleType)
    assert {n.margin for n in nodules} == set(NoduleMargin)
    assert {n.location for n in nodules} == set(NoduleLocation)


def test_twenty_cases_have_the_documented_malignancy_balance(twenty_specs) -> None:
    nodules = [n for spec in twenty_specs for n in spec.nodules]
    malignant = np.array([n.is_malignant for n in nodules])
    diameters = np.array([n.diameter_mm for n in nodules])
    assert 0.2 <= malignant.mean() <= 0.4
    auc = roc_auc(diameters, malignant)
    assert auc is not None and 0.75 <= auc <= 0.95


def test_twenty_full_grids_vary_like_clinical_scans(twenty_specs) -> None:
    grids = [spec.full_grid for spec in twenty_specs]
    for g in grids:
        nz, ny, nx = g.shape_irc
        assert (ny, nx) == (512, 512) and 120 <= nz <= 400
        assert 0.5 <= g.spacing_xyz[0] <= 0.9 and 0.6 <= g.spacing_xyz[2] <= 2.5
    assert len({g.spacing_xyz[2] for g in grids}) >= 4
    assert len({g.axis_signs_xyz for g in grids}) >= 2
    small = twenty_specs[0].grid(PhantomSize.SMALL)
    full = twenty_specs[0].full_grid
    assert small.shape_irc[1:] == (160, 160) and small.shape_irc[0] <= 96
    for axis in range(3):  # the same field of view, edge to edge
        n_full, n_small = full.shape_irc[2 - axis], small.shape_irc[2 - axis]
        lo_full = full.canonical_origin_xyz[axis] - full.spacing_xyz[axis] / 2
        lo_small = small.canonical_origin_xyz[axis] - small.spacing_xyz[axis] / 2
        assert lo_small == pytest.approx(lo_full, abs=1e-3)
        assert n_small * small.spacing_xyz[axis] == pytest.approx(
            n_full * full.spacing_xyz[axis], abs=1e-2
        )


def test_malignancy_rule_favours_large_spiculated_and_spares_calcified() -> None:
    rng = np.random.default_rng(0)
    big = [malignancy(25.0, NoduleType.SOLID, NoduleMargin.SPICULATED, rng)[2] for _ in range(200)]
    calcified = [
        malignancy(5.0, NoduleType.CALCIFIED, NoduleMargin.ROUND, rng)[2] for _ in range(200)
    ]
    small_round = [
        malignancy(4.0, NoduleType.SOLID, NoduleMargin.ROUND, rng)[2] for _ in range(200)
    ]
    assert np.mean(big) > 0.9
    assert np.mean(calcified) == 0.0
    assert np.mean(small_round) < 0.05
    for _ in range(50):
        _, ratings, malignant = malignancy(
            float(rng.uniform(3, 30)), NoduleType.SOLID, NoduleMargin.ROUND, rng
        )
        high = sum(r >= 4 for r in ratings)
        assert malignant == (high >= min(2, len(ratings)))
        assert all(1 <= r <= 5 for r in ratings) and 1 <= len(ratings) <= 4


# ---------------------------------------------------------------------------------------------
# candidates and malignancy files


def test_candidates_hold_every_nodule_and_lookalikes_of_each_kind(small_cases) -> None:
    kinds: Counter = Counter()
    for case in small_cases:
        spec = case.spec
        cands = lookalike_candidates(spec.anatomy, spec.nodules, case_rng(spec.seed, spec.index, 4))
        positives = [c for c in cands if c.is_nodule]
        assert [c.center_xyz for c in positives] == [n.center_xyz for n in spec.nodules]
        negatives = np.array([c.center_xyz for c in cands if not c.is_nodule])
        assert len(negatives) >= 100
        for n in spec.nodules:
            assert (
                np.linalg.norm(negatives - np.asarray(n.center_xyz), axis=1).min()
                > n.radius_mm + 3.0
            )
        kinds.update(c.kind for c in cands)
    assert set(kinds) == set(LookAlike) - {LookAlike.ATELECTASIS}  # version 2 only


def test_luna16_reader_joins_phantom_nodules_with_malignancy(small_dataset: Path) -> None:
    infos = candidate_list(small_dataset)
    annotations = _rows(small_dataset / "annotations_with_malignancy.csv")
    nodules = [i for i in infos if i.is_nodule]
    assert len(nodules) == len(annotations)
    truth = {(r["seriesuid"], float(r["coordX"])): r for r in annotations}
    for info in nodules:
        row = truth[(info.series_uid, info.center_xyz[0])]
        assert info.has_annotation and info.diameter_mm == float(row["diameter_mm"])
        assert info.is_malignant == (row["mal_bool"] == "True")
    assert sum(not i.is_nodule for i in infos) >= 400


def test_malignancy_file_rows_are_consistent(small_dataset: Path) -> None:
    for row in _rows(small_dataset / "annotations_with_malignancy.csv"):
        ratings = [int(v) for v in row["mal_details"].strip("[]").split(",")]
        assert len(ratings) == int(row["len_mal_details"])
        assert (row["mal_bool"] == "True") == (sum(r >= 4 for r in ratings) >= min(2, len(ratings)))
        centre = np.array([float(row[c]) for c in ("coordX", "coordY", "coordZ")])
        low = np.array([float(row[c]) for c in ("bboxLowX", "bboxLowY", "bboxLowZ")])
        high = np.array([float(row[c]) for c in ("bboxHighX", "bboxHighY", "bboxHighZ")])
        assert np.all(low <= centre) and np.all(centre <= high)


def test_dataset_stats_summarise_the_written_set(small_dataset: Path) -> None:
    stats = dataset_stats(small_dataset)
    rows = _rows(small_dataset / "phantom_nodules.csv")
    assert stats.cases == 4 and stats.nodules == len(rows)
    assert sum(stats.by_type.values()) == len(rows)
    assert stats.malignancy_rate == pytest.approx(np.mean([r["mal_bool"] == "True" for r in rows]))
    assert any("diameter-only ROC AUC" in line for line in stats.lines())
