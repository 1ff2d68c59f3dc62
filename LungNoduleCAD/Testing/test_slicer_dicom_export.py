"""Slicer's Export writes what ``lungcad detect --dicom-out`` writes (issue 17), on slicer-core.

A small phantom is written as a DICOM series, shown as a volume that carries the SOP Instance
UIDs as Slicer's DICOM loader leaves them ("DICOM.instanceUIDs"), and the DICOM database's
``fileForInstance`` is stood in for by a lookup over the series' files. The findings are the
phantom's two balls (no network).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from LungNoduleCADLib.logic import INSTANCE_UIDS_ATTRIBUTE, LungNoduleCADCore, volume_dicom_files
from LungNoduleCADLib.volume import add_volume_node_from_ct, ct_from_volume_node

from lungcad.dicom_out.case import NOT_DICOM_NOTE
from lungcad.models import read_card
from lungcad.pipeline.models import BUNDLED_MODELS

TESTING = Path(__file__).resolve().parents[2] / "Testing"  # the engine's DICOM test helpers
if str(TESTING) not in sys.path:
    sys.path.insert(0, str(TESTING))

from dicom_out_support import SERIES_UID, phantom_result, write_phantom_series  # noqa: E402

DICOM_FILES = {"dicom_seg": "nodules.seg.dcm", "dicom_sr": "nodules.sr.dcm"}


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The phantom series on disk: SOP Instance UID -> file, in slice order."""
    folder = tmp_path_factory.mktemp("dicom") / "series"
    write_phantom_series(folder)
    files = {}
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        files[(int(ds.InstanceNumber), ds.SOPInstanceUID)] = path
    return {uid: path for (_, uid), path in sorted(files.items())}


def _shown(mrml, series: dict[str, Path], dicom: bool) -> LungNoduleCADCore:
    from lungcad.ctio import read_ct

    ct = read_ct(next(iter(series.values())).parent)
    volume = add_volume_node_from_ct(mrml.scene, ct, name="Chest")
    if dicom:  # what Slicer's DICOMScalarVolumePlugin leaves on the volume
        volume.SetAttribute(INSTANCE_UIDS_ATTRIBUTE, " ".join(series))
    lookup = {uid: str(path) for uid, path in series.items()}
    core = LungNoduleCADCore(mrml, runner=None, dicom_file_for=lambda uid: lookup.get(uid, ""))
    core.show_result(volume, phantom_result(ct_from_volume_node(volume)))
    return core


def test_export_of_a_dicom_volume_writes_seg_sr_and_pdf_on_its_series(mrml, series, tmp_path):
    core = _shown(mrml, series, dicom=True)
    saved = core.export(tmp_path)
    assert saved.folder == tmp_path / SERIES_UID
    assert core.dicom_note is None
    assert {k: p.name for k, p in saved.extra.items() if k in DICOM_FILES} == DICOM_FILES
    assert saved.extra["report_pdf"].read_bytes()[:5] == b"%PDF-"

    seg = hd.seg.segread(saved.folder / "nodules.seg.dcm")
    assert seg.number_of_segments == len(core.result.findings) == 2
    assert [d.SegmentLabel for d in seg.SegmentSequence] == [
        f.label() for f in core.result.findings
    ]
    referenced = {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0]
                  .ReferencedInstanceSequence}  # fmt: skip
    assert referenced == set(series)
    nodule_sha = read_card(BUNDLED_MODELS / "nodule.json").sha256
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert f"nodule_sha256={nodule_sha}" in algorithm.AlgorithmParameters
    assert seg.StudyInstanceUID == pydicom.dcmread(next(iter(series.values()))).StudyInstanceUID

    sr = hd.sr.srread(saved.folder / "nodules.sr.dcm")
    report = hd.sr.MeasurementReport.from_sequence([sr])
    groups = report.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == ["Nodule 1", "Nodule 2"]
    assert {g.referenced_segment.referenced_sop_instance_uid for g in groups} == {
        seg.SOPInstanceUID
    }
    results = json.loads(saved.results.read_text(encoding="utf-8"))
    assert results["dicom"]["seg"]["sop_instance_uid"] == seg.SOPInstanceUID
    assert results["dicom"]["series_instance_uid"] == SERIES_UID
    assert results["dicom"]["note"] is None
    assert {"dicom_seg", "dicom_sr", "report_pdf"} <= set(results["outputs"])


def test_export_of_a_volume_not_loaded_from_dicom_writes_the_pdf_and_a_note(mrml, series, tmp_path):
    core = _shown(mrml, series, dicom=False)
    saved = core.export(tmp_path)
    assert core.dicom_note == NOT_DICOM_NOTE
    assert sorted(k for k in saved.extra if k in (*DICOM_FILES, "report_pdf")) == ["report_pdf"]
    assert saved.extra["report_pdf"].read_bytes()[:5] == b"%PDF-"
    assert not any((saved.folder / name).exists() for name in DICOM_FILES.values())
    assert json.loads(saved.results.read_text(encoding="utf-8"))["dicom"]["note"] == NOT_DICOM_NOTE


def test_a_dicom_volume_whose_files_are_not_in_the_database_gets_the_pdf_and_a_note(
    mrml, series, tmp_path
):
    core = _shown(mrml, series, dicom=True)
    core.dicom_file_for = lambda uid: ""  # the study was removed from the database
    assert volume_dicom_files(core.volume_node, core.dicom_file_for) == []
    saved = core.export(tmp_path)
    assert core.dicom_note == (
        "DICOM headers not usable (no DICOM files given): report.pdf only, no DICOM SEG or SR"
    )
    assert not (saved.folder / "nodules.seg.dcm").exists()
    assert saved.extra["report_pdf"].is_file()


def test_the_files_are_looked_up_per_instance_uid_in_the_volume_order(mrml, series):
    core = _shown(mrml, series, dicom=True)
    asked = []

    def lookup(uid: str) -> str:
        asked.append(uid)
        return str(series[uid])

    assert volume_dicom_files(core.volume_node, lookup) == list(series.values())
    assert asked == list(series)


def test_export_refuses_weights_other_than_those_the_result_names(mrml, series, tmp_path):
    core = _shown(mrml, series, dicom=True)
    core.result = dataclasses.replace(
        core.result, model_versions={"nodule": "ResNet sha256:000000000000 created 2026"}
    )
    with pytest.raises(ValueError, match=r"the nodule weights in .* are not those the result"):
        core.export(tmp_path)
    assert not (tmp_path / SERIES_UID).exists()


def test_the_seg_and_sr_go_into_an_open_dicom_database_only(mrml, series, tmp_path, monkeypatch):
    import types

    import slicer
    from LungNoduleCADLib import widget

    imported = []
    utils = types.SimpleNamespace(importDicom=lambda folder: imported.append(folder) or True)
    monkeypatch.setitem(sys.modules, "DICOMLib", types.SimpleNamespace(DICOMUtils=utils))
    with_dicom = _shown(mrml, series, dicom=True).export(tmp_path / "a")
    without = _shown(mrml, series, dicom=False).export(tmp_path / "b")

    monkeypatch.setattr(slicer, "dicomDatabase", types.SimpleNamespace(isOpen=False), raising=False)
    assert widget._add_to_dicom_database(with_dicom) is False
    monkeypatch.setattr(slicer, "dicomDatabase", types.SimpleNamespace(isOpen=True))
    assert widget._add_to_dicom_database(without) is False
    assert imported == []
    assert widget._add_to_dicom_database(with_dicom) is True
    assert imported == [str(with_dicom.folder)]
