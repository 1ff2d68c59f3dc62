"""LUNA16 readers: csv records, the joined candidate list, the series split, annotation masks.

Every test writes real files (csv, .mhd/.raw) under tmp_path; nothing is mocked.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lungcad.ct import CT, Geometry
from lungcad.luna16 import (
    Annotation,
    Candidate,
    CandidateInfo,
    DatasetError,
    DatasetFileNotFoundError,
    MalignancyAnnotation,
    annotation_mask_for_ct,
    build_annotation_mask,
    candidate_list,
    clear_candidate_cache,
    find_series,
    join_candidates,
    read_annotations,
    read_candidates,
    read_malignancy_annotations,
    split_by_series,
    validation_series,
)

UID_A = "1.2.3.A"  # on disk (subset0), written with a permuted and flipped direction
UID_B = "1.2.3.B"  # on disk (subset1)
UID_C = "1.2.3.C"  # annotated but not on disk

ANNOTATIONS = """seriesuid,coordX,coordY,coordZ,diameter_mm
1.2.3.A,10,20,30,10
1.2.3.A,16,20,30,8
1.2.3.B,0,0,0,8
1.2.3.C,5,5,5,4
"""

MALIGNANCY = (
    "seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool,mal_details,"
    "bboxLowX,bboxLowY,bboxLowZ,bboxHighX,bboxHighY,bboxHighZ,len_mal_details\n"
    '1.2.3.A,10.5,20,30,10,True,"[4, 5, 4]",5.5,15,25,15.5,25,35,3\n'
    '1.2.3.B,0,0,0.5,8,False,"[1, 2]",-4,-4,-3.5,4,4,4.5,2\n'
)

CANDIDATES = """seriesuid,coordX,coordY,coordZ,class
1.2.3.A,10,20,34.9,1
1.2.3.A,10,20,35.01,0
1.2.3.A,14,20,30,1
1.2.3.A,12.9,20,30,1
1.2.3.A,0,0,0,0
1.2.3.B,0,0,3,1
1.2.3.B,1,0,0,0
1.2.3.B,50,50,50,0
1.2.3.C,5,5,5,1
"""

PERMUTED_FLIPPED = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # col -> -y, row -> +x


def _write_volume(
    path: Path,
    hu: np.ndarray,
    origin=(0.0, 0.0, 0.0),
    spacing=(1.0, 1.0, 1.0),
    direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
) -> sitk.Image:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(hu.astype(np.int16))
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return image


def _read_ct(path: Path, uid: str) -> CT:
    image = sitk.ReadImage(str(path))
    hu = sitk.GetArrayFromImage(image).astype(np.int16)
    geometry = Geometry.from_arrays(
        image.GetOrigin(), image.GetSpacing(), image.GetDirection(), hu.shape
    )
    return CT(hu=hu, geometry=geometry, series_uid=uid, source=path)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A small LUNA16 folder: two series on disk (A, B), one only in the csv files (C)."""
    data = tmp_path / "luna"
    air = np.full((6, 7, 8), -1000, dtype=np.int16)
    _write_volume(data / "subset0" / f"{UID_A}.mhd", air, direction=PERMUTED_FLIPPED)
    _write_volume(data / "subset1" / f"{UID_B}.mhd", air, spacing=(0.7, 0.7, 2.5))
    _write_volume(data / "not_a_subset" / f"{UID_C}.mhd", air)  # outside subset*/: ignored
    (data / "annotations.csv").write_text(ANNOTATIONS)
    (data / "annotations_with_malignancy.csv").write_text(MALIGNANCY)
    (data / "candidates.csv").write_text(CANDIDATES)
    clear_candidate_cache()
    return data


def _info(nod, ann, mal, diam, uid, xyz, ann_xyz):
    return CandidateInfo(nod, ann, mal, diam, uid, xyz, ann_xyz)


A1, A2, B1 = (10.0, 20.0, 30.0), (16.0, 20.0, 30.0), (0.0, 0.0, 0.0)

EXPECTED_ALL = [
    # nodules, larger diameter first, then uid, then x, y, z
    _info(True, True, True, 10.0, UID_A, (10.0, 20.0, 34.9), A1),  # 4.9 mm from A1 (r 5)
    _info(True, True, True, 10.0, UID_A, (12.9, 20.0, 30.0), A1),  # in both; A1 nearer
    _info(True, True, None, 8.0, UID_A, (14.0, 20.0, 30.0), A2),  # in both; A2 nearer
    _info(True, True, False, 8.0, UID_B, (0.0, 0.0, 3.0), B1),
    _info(True, True, None, 4.0, UID_C, (5.0, 5.0, 5.0), (5.0, 5.0, 5.0)),  # no malignancy row
    # non-nodules
    _info(False, True, False, 8.0, UID_B, (1.0, 0.0, 0.0), B1),
    _info(False, False, None, 0.0, UID_A, (0.0, 0.0, 0.0), None),  # B1's spot, other series
    _info(False, False, None, 0.0, UID_A, (10.0, 20.0, 35.01), None),  # just outside A1
    _info(False, False, None, 0.0, UID_B, (50.0, 50.0, 50.0), None),
]


# --- csv records -------------------------------------------------------------------------------


def test_read_annotations_and_candidates(dataset: Path) -> None:
    annotations = read_annotations(dataset / "annotations.csv")
    assert annotations[0] == Annotation(UID_A, (10.0, 20.0, 30.0), 10.0)
    assert len(annotations) == 4
    candidates = read_candidates(dataset / "candidates.csv")
    assert len(candidates) == 9
    assert candidates[1] == Candidate(UID_A, (10.0, 20.0, 35.01), False)
    assert candidates[0].is_nodule is True
    with pytest.raises(AttributeError):
        candidates[0].is_nodule = False  # frozen


def test_read_malignancy_annotations(dataset: Path) -> None:
    rows = read_malignancy_annotations(dataset / "annotations_with_malignancy.csv")
    assert rows == [
        MalignancyAnnotation(
            UID_A, (10.5, 20.0, 30.0), 10.0, True, (4, 5, 4), (5.5, 15.0, 25.0), (15.5, 25.0, 35.0)
        ),
        MalignancyAnnotation(
            UID_B, (0.0, 0.0, 0.5), 8.0, False, (1, 2), (-4.0, -4.0, -3.5), (4.0, 4.0, 4.5)
        ),
    ]


def test_malignancy_details_variants_and_count_mismatch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "mal.csv"
    path.write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool,mal_details,"
        "bboxLowX,bboxLowY,bboxLowZ,bboxHighX,bboxHighY,bboxHighZ,len_mal_details\n"
        "s,1,2,3,4,false,[3 4],0,0,0,1,1,1,2\n"
        's,1,2,3,4,TRUE,"[5]",0,0,0,1,1,1,3\n'
    )
    with caplog.at_level(logging.WARNING, logger="lungcad.luna16"):
        rows = read_malignancy_annotations(path)
    assert [(r.mal_bool, r.mal_details) for r in rows] == [(False, (3, 4)), (True, (5,))]
    assert "len_mal_details" in caplog.text and "line 3" in caplog.text


def test_annotations_excluded_uses_the_annotation_reader(tmp_path: Path) -> None:
    path = tmp_path / "annotations_excluded.csv"
    path.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\ns,-1.5,2,3e1,-1\n")
    with pytest.raises(DatasetError, match=r"line 2: column diameter_mm: '-1' is not positive"):
        read_annotations(path)
    path.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\ns,-1.5,2,3e1,0.5\n")
    assert read_annotations(path) == [Annotation("s", (-1.5, 2.0, 30.0), 0.5)]


def test_missing_file_is_a_dataset_error(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "candidates.csv"
    with pytest.raises(DatasetFileNotFoundError, match="file not found") as info:
        read_candidates(path)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)
    assert str(path) in str(info.value)


def test_missing_column_names_it(tmp_path: Path) -> None:
    path = tmp_path / "annotations.csv"
    path.write_text("seriesuid,coordX,coordY,coordZ\ns,1,2,3\n")
    with pytest.raises(
        DatasetError, match=r"annotations.csv, line 1: missing column\(s\) diameter_mm"
    ):
        read_annotations(path)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("s,1,2,3,0\n\ns,1,abc,3,1\n", r"line 4: column coordY: 'abc' is not a number"),
        ("s,1,2,3,0\ns,nan,2,3,1\n", r"line 3: column coordX: 'nan' is not a finite number"),
        ("s,1,2,3,2\n", r"line 2: column class: '2' is neither 0 nor 1"),
        ("s,1,2,3,1\ns,1,2\n", r"line 3: expected 5 fields, found 3"),
        ("s,1,2,3,1\n   \ns,1,2,3,x\n", r"line 4: column class: 'x' is not a number"),
        (",1,2,3,1\n", r"line 2: empty seriesuid"),
    ],
)
def test_bad_rows_name_their_line(tmp_path: Path, rows: str, message: str) -> None:
    path = tmp_path / "candidates.csv"
    path.write_text("seriesuid,coordX,coordY,coordZ,class\n" + rows)
    with pytest.raises(DatasetError, match=message) as info:
        read_candidates(path)
    assert info.value.path == path and info.value.line is not None


@pytest.mark.parametrize(
    ("mal_bool", "details", "message"),
    [
        ("maybe", '"[3]"', r"column mal_bool: 'maybe' is neither True nor False"),
        ("True", '"[3, 7]"', r"column mal_details: '7' is not a rating from 1 to 5"),
        ("True", "3", r"column mal_details: '3' is not a list"),
    ],
)
def test_bad_malignancy_rows(tmp_path: Path, mal_bool: str, details: str, message: str) -> None:
    path = tmp_path / "annotations_with_malignancy.csv"
    path.write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool,mal_details,"
        "bboxLowX,bboxLowY,bboxLowZ,bboxHighX,bboxHighY,bboxHighZ\n"
        f"s,1,2,3,4,{mal_bool},{details},0,0,0,1,1,1\n"
    )
    with pytest.raises(DatasetError, match="line 2: " + message):
        read_malignancy_annotations(path)


def test_irregular_but_valid_file_reads_the_same(dataset: Path, tmp_path: Path) -> None:
    """A whitespace-only line and a BOM take the csv-module path; the records must not change."""
    path = tmp_path / "candidates.csv"
    lines = CANDIDATES.splitlines(keepends=True)
    path.write_text("\ufeff" + "".join(lines[:3]) + "  \n" + "".join(lines[3:]), encoding="utf-8")
    assert read_candidates(path) == read_candidates(dataset / "candidates.csv")


def test_header_only_file_reads_empty(tmp_path: Path) -> None:
    path = tmp_path / "candidates.csv"
    path.write_text("seriesuid,coordX,coordY,coordZ,class\n")
    assert read_candidates(path) == []
    path.write_text("")
    with pytest.raises(DatasetError, match="line 1: file is empty"):
        read_candidates(path)


# --- series on disk and the joined list ----------------------------------------------------------


def test_find_series_only_looks_in_subsets(dataset: Path) -> None:
    assert find_series(dataset) == {
        UID_A: dataset / "subset0" / f"{UID_A}.mhd",
        UID_B: dataset / "subset1" / f"{UID_B}.mhd",
    }
    with pytest.raises(DatasetFileNotFoundError, match="dataset folder not found"):
        find_series(dataset / "missing")


def test_candidate_list_join_and_order(dataset: Path) -> None:
    assert candidate_list(dataset, require_on_disk=False) == EXPECTED_ALL


def test_candidate_list_drops_series_not_on_disk(dataset: Path) -> None:
    expected = [c for c in EXPECTED_ALL if c.series_uid != UID_C]
    assert candidate_list(dataset) == expected
    assert candidate_list(dataset, require_on_disk=True) == expected


def test_candidate_list_without_malignancy_file(dataset: Path) -> None:
    (dataset / "annotations_with_malignancy.csv").unlink()
    got = candidate_list(dataset, require_on_disk=False)
    assert [c.is_malignant for c in got] == [None] * len(EXPECTED_ALL)
    assert [c.diameter_mm for c in got] == [c.diameter_mm for c in EXPECTED_ALL]


def test_candidate_list_is_cached_but_follows_file_changes(dataset: Path) -> None:
    first = candidate_list(dataset, require_on_disk=False)
    second = candidate_list(dataset, require_on_disk=False)
    assert first == second and first is not second
    assert all(a is b for a, b in zip(first, second, strict=True))  # parsed once
    first.clear()  # callers own their list
    assert candidate_list(dataset, require_on_disk=False) == second
    (dataset / "candidates.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,class\n1.2.3.B,0,0,1,1\n"
    )
    assert candidate_list(dataset, require_on_disk=False) == [
        _info(True, True, False, 8.0, UID_B, (0.0, 0.0, 1.0), B1)
    ]


def test_join_candidates_on_records_matches_the_file_join(dataset: Path) -> None:
    joined = join_candidates(
        read_candidates(dataset / "candidates.csv"),
        read_annotations(dataset / "annotations.csv"),
        read_malignancy_annotations(dataset / "annotations_with_malignancy.csv"),
    )
    assert joined == EXPECTED_ALL
    assert join_candidates([], []) == []
    lonely = [Candidate("x", (0.0, 0.0, 0.0), True)]
    assert join_candidates(lonely, []) == [_info(True, False, None, 0.0, "x", (0.0,) * 3, None)]


def test_radius_boundary_is_inclusive() -> None:
    annotation = Annotation("s", (0.0, 0.0, 0.0), 6.0)
    on_edge = Candidate("s", (3.0, 0.0, 0.0), True)
    beyond = Candidate("s", (0.0, 3.0001, 0.0), True)
    by_center = {c.center_xyz: c for c in join_candidates([on_edge, beyond], [annotation])}
    assert by_center[on_edge.center_xyz].diameter_mm == 6.0
    assert by_center[beyond.center_xyz].has_annotation is False


# --- split ---------------------------------------------------------------------------------------


def test_split_by_series_is_disjoint_and_complete(dataset: Path) -> None:
    items = [Candidate(f"uid{n % 10}", (float(n), 0.0, 0.0), n % 3 == 0) for n in range(57)]
    val = split_by_series(items, val_stride=3, is_validation=True)
    train = split_by_series(items, val_stride=3, is_validation=False)
    val_uids, train_uids = {c.series_uid for c in val}, {c.series_uid for c in train}
    assert val_uids == {"uid0", "uid3", "uid6", "uid9"}  # sorted index % 3 == 0
    assert not val_uids & train_uids
    assert val_uids | train_uids == {c.series_uid for c in items}
    assert sorted(val + train, key=items.index) == items
    assert val == [c for c in items if c.series_uid in val_uids]  # input order kept
    assert validation_series([c.series_uid for c in items], 3) == val_uids

    infos = candidate_list(dataset, require_on_disk=False)
    v = split_by_series(infos, 2, True)
    t = split_by_series(infos, 2, False)
    assert {c.series_uid for c in v} == {UID_A, UID_C}
    assert {c.series_uid for c in t} == {UID_B}
    assert len(v) + len(t) == len(infos)


@pytest.mark.parametrize("stride", [1, 0, -2, True, 2.5])
def test_split_rejects_bad_stride(stride) -> None:
    with pytest.raises(ValueError, match="val_stride must be an integer >= 2"):
        split_by_series([], stride, True)


def test_split_needs_series_uid() -> None:
    with pytest.raises(TypeError, match="series_uid"):
        split_by_series([(1, 2)], 2, True)


# --- annotation masks ----------------------------------------------------------------------------


def _ball(shape, center, radius) -> np.ndarray:
    grid = np.indices(shape)
    d2 = sum((g - c) ** 2 for g, c in zip(grid, center, strict=True))
    return d2 <= radius**2


def test_mask_is_the_bright_ball_and_not_its_neighbour() -> None:
    shape = (24, 26, 28)
    hu = np.full(shape, -1000, dtype=np.int16)
    ball = _ball(shape, (10, 12, 14), 4)
    hu[ball] = 40
    hu[10, 12, 20:26] = 60  # a vessel beyond the ball's box: not part of the nodule
    mask = build_annotation_mask(hu, [(10, 12, 14)])
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, ball)


def test_mask_walk_is_symmetric_and_box_is_anded_with_threshold() -> None:
    hu = np.full((20, 15, 15), -1000, dtype=np.int16)
    hu[5:14, 5:10, 5:10] = 0  # index 5..13 around centre 8: 3 below, 5 above
    mask = build_annotation_mask(hu, np.array([[8, 7, 7]]))
    expected = np.zeros_like(mask)
    # index walk stops at r=4 (hu[4] is air): box 4..12, so 13 is left out
    expected[5:13, 5:10, 5:10] = True
    np.testing.assert_array_equal(mask, expected)


def test_mask_minimum_radius_is_two() -> None:
    hu = np.zeros((9, 9, 9), dtype=np.int16)  # all soft tissue
    hu[4, 4, 6] = hu[4, 4, 2] = -1000  # the col walk stops at once (r = 2)
    hu[6, 4, 4] = -1000  # the index walk stops at once too (one side suffices)
    mask = build_annotation_mask(hu, [(4, 4, 4)])
    expected = np.zeros_like(mask)
    expected[2:7, :, 2:7] = True  # rows reach both edges: r = 4, the whole axis
    expected &= hu > -700
    np.testing.assert_array_equal(mask, expected)


def test_mask_at_volume_edge_does_not_crash() -> None:
    hu = np.full((8, 8, 8), -1000, dtype=np.int16)
    hu[0:4, 0:4, 0:4] = 100
    mask = build_annotation_mask(hu, [(0, 0, 0), (7, 7, 7)])
    expected = np.zeros_like(mask)
    expected[0:3, 0:3, 0:3] = True  # minimum radius 2, clipped at the edge; (7,7,7) is air
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(build_annotation_mask(hu, []), np.zeros_like(mask))


def test_mask_walk_stops_at_the_edge_with_the_last_inside_radius() -> None:
    hu = np.full((20, 9, 9), -1000, dtype=np.int16)
    hu[0:11, 2:7, 2:7] = 50  # dense from the first slice to index 10
    mask = build_annotation_mask(hu, [(3, 4, 4)])
    expected = np.zeros_like(mask)
    expected[0:7, 2:7, 2:7] = True  # r = 3 (index 0 is the edge), so 7..10 stay out
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize(
    ("centers", "message"),
    [([(8, 0, 0)], "outside the volume"), ([(1.5, 2, 3)], "integer"), ([(1, 2)], "triples")],
)
def test_mask_rejects_bad_centres(centers, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_annotation_mask(np.zeros((8, 8, 8), dtype=np.int16), centers)


def test_annotation_mask_through_permuted_flipped_geometry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shape = (12, 20, 24)
    center_irc = (5, 13, 7)
    hu = np.full(shape, -1000, dtype=np.int16)
    ball = _ball(shape, center_irc, 3)
    hu[ball] = 30
    path = tmp_path / "subset0" / f"{UID_A}.mhd"
    image = _write_volume(
        path, hu, origin=(100.0, -50.0, 30.0), spacing=(0.7, 0.8, 2.0), direction=PERMUTED_FLIPPED
    )
    ct = _read_ct(path, UID_A)
    # ITK itself says where the ball's centre voxel is in LPS mm (index order is col, row, index)
    world = image.TransformIndexToPhysicalPoint(tuple(int(v) for v in center_irc[::-1]))
    annotations = [
        Annotation(UID_A, world, 5.0),
        Annotation(UID_A, (1000.0, 1000.0, 1000.0), 5.0),  # outside: skipped with a warning
        Annotation(UID_B, world, 5.0),  # another series: ignored
    ]
    with caplog.at_level(logging.WARNING, logger="lungcad.luna16"):
        mask = annotation_mask_for_ct(ct, annotations)
    np.testing.assert_array_equal(mask, ball)
    assert "outside the volume" in caplog.text and caplog.text.count("skipped") == 1
    # the same point read as if the direction were identity lands elsewhere: the test has teeth
    naive = np.rint((np.array(world) - image.GetOrigin()) / image.GetSpacing())[::-1]
    assert tuple(naive.astype(int)) != center_irc
    assert not annotation_mask_for_ct(ct, []).any()
