"""Batch mode and Export against hostile names, against a real MRML scene (slicer-core).

Series UIDs and volume names come from DICOM headers: ``../../../../tmp/x``, ``/abs/path`` or 403
characters must write nothing outside the output folder. An output folder that is a file stops
the batch before any model; a MemoryError in one case and a summary that cannot be written do not
crash it. Batch mode is ``lungcad detect`` (its own hostile-input tests are in
Testing/test_cohort_hostile_inputs.py); these check the Slicer files it adds.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path

import pytest
import slicer_phantoms
from LungNoduleCADLib.batch import main
from LungNoduleCADLib.logic import LungNoduleCADCore, RunRequest
from LungNoduleCADLib.storage import SEGMENTATION_FILE, SLICER_FOLDER
from LungNoduleCADLib.volume import add_volume_node_from_ct

from lungcad.ct import CT, Geometry
from lungcad.ctio import write_ct
from lungcad.reports import OUTPUT_FILES, read_results
from lungcad.safe_names import OutputRootError

LONG_UID = "1." + "2" * 401
HOSTILE = {"up": "../../../../tmp/x", "absolute": "/abs/path", "long": LONG_UID}


@pytest.fixture(scope="module")
def crop_file(tmp_path_factory) -> Path:
    """The logic tests' CT (its detection is cached for the session) as a file."""
    ct = slicer_phantoms.nodule_crop(0)
    return write_ct(ct, tmp_path_factory.mktemp("hostile-input") / "crop.mha")


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


class FailingRunner:
    """CachedRunner, but one CT (by its first voxel count) raises MemoryError."""

    def __init__(self, fail_on_shape) -> None:
        self.inner = slicer_phantoms.CachedRunner()
        self.fail_on_shape = fail_on_shape
        self.calls = 0

    def __call__(self, ct, request, progress=None, cancel=None):
        self.calls += 1
        if ct.hu.shape == self.fail_on_shape:
            raise MemoryError()
        return self.inner(ct, request, progress, cancel)


def test_batch_keeps_hostile_uids_inside_the_output(mrml, tmp_path, capsys):
    inputs = tmp_path / "in"
    crop = slicer_phantoms.nodule_crop(0)
    for name, uid in (*HOSTILE.items(), ("good", crop.series_uid)):
        write_ct(dataclasses.replace(crop, series_uid=uid), inputs / f"{name}.mha")
    out = tmp_path / "work" / "results"
    before = _tree(tmp_path)
    outside_before = Path("/tmp/x").exists(), Path("/abs/path").exists()
    runner = slicer_phantoms.CachedRunner()
    status = main(["--input", str(inputs), "--output", str(out)], services=mrml, runner=runner)
    text = capsys.readouterr().out
    assert status == 0, text
    after = _tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("work/results/")} == before
    assert (Path("/tmp/x").exists(), Path("/abs/path").exists()) == outside_before
    rows = {r["input"]: r for r in _rows(out / "summary.csv")}
    # a UID that is not a DICOM UID names no folder: the file name does
    expected_ids = {"good": crop.series_uid, "up": "up", "absolute": "absolute", "long": "long"}
    for name, case_id in expected_ids.items():
        row = rows[str(inputs / f"{name}.mha")]
        assert (row["case_id"], row["status"]) == (case_id, "ok")
        assert (out / case_id / SLICER_FOLDER / SEGMENTATION_FILE).is_file()
        doc = read_results(out / case_id / "results.json")
        # read_ct drops what does not look like a UID; the long one is refused when written
        assert doc["input"]["series_uid"] == (crop.series_uid if name == "good" else None)
        uid_warning = (
            f"series UID '{LONG_UID[:80]}... (403 characters)' is not a DICOM UID (digits and "
            "dots, at most 64 characters): not used as one; the case id names the series instead"
        )
        assert (uid_warning in row["warnings"]) == (name == "long")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*expected_ids.values(), "summary.csv", ".summary.lock"]
    )


def test_batch_refuses_an_output_that_is_a_file_before_any_model(mrml, crop_file, tmp_path, capsys):
    out = tmp_path / "results"
    out.write_text("a user's file\n")
    runner = slicer_phantoms.CachedRunner()
    args = ["--input", str(crop_file), "--output", str(out)]
    assert main(args, services=mrml, runner=runner) == 2
    assert capsys.readouterr().err == (
        f"LungNoduleCAD batch: error: {out}: exists and is not a folder (the output must be a "
        "folder)\n"
    )
    assert runner.calls == 0 and out.read_text(encoding="utf-8") == "a user's file\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_batch_refuses_a_read_only_output_before_any_model(mrml, crop_file, tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    runner = slicer_phantoms.CachedRunner()
    try:
        assert main(["--input", str(crop_file), "--output", str(out)], mrml, runner) == 2
    finally:
        out.chmod(0o755)
    assert capsys.readouterr().err == (
        f"LungNoduleCAD batch: error: {out}: the output folder does not take new files "
        "(Permission denied)\n"
    )
    assert runner.calls == 0


def test_batch_survives_a_memory_error_and_an_unwritable_summary(mrml, crop_file, tmp_path, capsys):
    other = slicer_phantoms.nodule_crop(0)
    g = other.geometry
    hu = other.hu[:-2].copy()
    geometry = Geometry.from_arrays(g.origin_xyz, g.spacing_xyz, g.direction, hu.shape)
    small = CT(hu=hu, geometry=geometry, series_uid="1.2.3.4.5")
    huge = write_ct(small, tmp_path / "in" / "huge.mha")
    out = tmp_path / "results"
    (out / "summary.csv").mkdir(parents=True)  # replacing it fails, as a read-only folder would
    runner = FailingRunner(small.hu.shape)
    status = main(
        ["--input", str(huge), str(crop_file), "--output", str(out)], services=mrml, runner=runner
    )
    lines = capsys.readouterr().out.splitlines()
    assert status == 1 and runner.calls == 2
    assert any(": 1 ok, 0 skipped (done before), 1 failed" in line for line in lines)
    assert lines[-2] == f"  FAILED 1.2.3.4.5 ({huge}): MemoryError: MemoryError"
    assert lines[-1] == (
        f"outputs: {out}/<case_id>/; summary NOT written: IsADirectoryError: [Errno 21] Is a "
        f"directory: '{out / 'summary.csv'}'"
    )
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
    assert (out / other.series_uid / SEGMENTATION_FILE).is_file()


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("../../../../tmp/x", "tmp_x-6e26be7d"),
        ("/abs/path", "abs_path-6d80187b"),
        ("Chest CT: DOE^JOHN", "Chest_CT_DOE_JOHN-c8058338"),
        ("n" * 403, "n" * 91 + "-"),
    ],
)
def test_export_without_a_series_uid_names_the_folder_after_the_volume_made_safe(
    mrml, tmp_path, name, folder
):
    core = LungNoduleCADCore(mrml, runner=slicer_phantoms.CachedRunner())
    ct = dataclasses.replace(slicer_phantoms.nodule_crop(0), series_uid=None)
    volume = add_volume_node_from_ct(mrml.scene, ct, name=name)
    core.run(volume, RunRequest())
    root = tmp_path / "export"
    saved = core.export(root)
    case = saved.folder
    assert case.parent == root.resolve()
    assert case.name.startswith(folder)
    assert len(case.name) <= 100
    # not loaded from DICOM: the report without a SEG or SR (see test_slicer_dicom_export.py)
    expected = [*OUTPUT_FILES.values(), "report.pdf", "slicer"]
    assert sorted(p.name for p in case.iterdir()) == sorted(expected)
    assert read_results(saved.results)["case_id"] == case.name
    assert [p for p in tmp_path.rglob("*") if p.is_file() and case not in p.parents] == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputRootError, match="exists and is not a folder"):
        core.export(tmp_path / "file")


def test_export_names_the_folder_as_lungcad_detect_does(mrml, tmp_path):
    """The series UID where it is a DICOM UID (whatever the volume is called), else the name;
    exporting again replaces the case's files."""
    core = LungNoduleCADCore(mrml, runner=slicer_phantoms.CachedRunner())
    crop = slicer_phantoms.nodule_crop(0)
    volume = add_volume_node_from_ct(mrml.scene, crop, name="3: CHEST W/O")
    core.run(volume, RunRequest())
    saved = core.export(tmp_path)
    assert saved.folder == tmp_path.resolve() / crop.series_uid
    doc = read_results(saved.results)
    assert (doc["case_id"], doc["input"]["series_uid"]) == (crop.series_uid, crop.series_uid)
    with (saved.candidates).open(newline="") as fh:
        assert {row["seriesuid"] for row in csv.DictReader(fh)} <= {crop.series_uid}
    again = core.export(tmp_path)
    assert again.folder == saved.folder
    assert sorted(p.name for p in saved.folder.iterdir()) == sorted(
        [*OUTPUT_FILES.values(), "report.pdf", "slicer"]
    )
    # a result that does not know the series (a run on a volume without one) gets the volume's
    core.show_result(volume, dataclasses.replace(core.result, series_uid=None))
    assert read_results(core.export(tmp_path).results)["input"]["series_uid"] == crop.series_uid
    long = add_volume_node_from_ct(
        mrml.scene, dataclasses.replace(crop, series_uid=LONG_UID), name="Chest"
    )
    core.run(long, RunRequest())
    assert core.export(tmp_path).folder.name == "Chest"
