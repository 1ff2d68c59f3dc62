"""The Slicer batch script over the whole bad-input corpus mixed with one good CT (issue 14).

``LungNoduleCADLib.batch.main`` (what ``Scripts/batch.py`` runs) gets every corrupt file and bad
DICOM folder of ``Testing/bad_inputs_support.py`` and one good CT (the 70 mm phantom crop the
other batch tests use, detected for real once per session), against a real MRML scene. Batch
mode is ``lungcad detect`` (Testing/test_batch_bad_inputs.py), so the same holds: it exits 1;
the good case's files and Slicer's own files are written and agree with its row; summary.csv
holds one ``failed`` row per bad input whose error names the file and the problem, with the same
line in the case's error.txt, each under its own case id; no traceback is printed; nothing is
written outside --output; the scene holds no case's nodes afterwards.

Left out of the mixed batch: the symbolic link that loops. For the file system it does not exist,
and a path that does not exist stops the batch at once with exit 2, before any work, by design
(issue 14 allows it; ``--input``'s help says so). The last test shows that refusal.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import pytest
import slicer_phantoms
from LungNoduleCADLib.batch import main
from LungNoduleCADLib.storage import SEGMENTATION_FILE, SLICER_FOLDER, TABLE_FILE

from lungcad.ctio import write_ct
from lungcad.reports import OUTPUT_FILES, read_results

TESTING = Path(__file__).resolve().parents[2] / "Testing"  # the engine's tests: the corpus
if str(TESTING) not in sys.path:
    sys.path.insert(0, str(TESTING))

from bad_inputs_support import POSIX, Case, build_corpus, file_tree  # noqa: E402

REFUSED_AT_ONCE = ("symlink loop",)


@pytest.fixture
def mixed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Case], Path, Path]:
    """The corpus and the good CT under ``tmp_path``; the working directory an empty folder
    inside it, so that a stray relative write would show in the tree."""
    (tmp_path / "corpus").mkdir()
    cases, _ = build_corpus(tmp_path / "corpus")
    crop = slicer_phantoms.nodule_crop(0)
    good = write_ct(crop, tmp_path / "good" / f"{crop.series_uid}.mha")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return cases, good, tmp_path / "out"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_batch_over_every_bad_input_and_one_good_ct(mrml, mixed, capfd) -> None:
    cases, good, out = mixed
    bad = [c for c in cases if c.name not in REFUSED_AT_ONCE]
    assert len(bad) == (24 if POSIX else 21)
    root = out.parent
    before = file_tree(root)
    nodes_before = mrml.scene.GetNumberOfNodes()

    argv = ["--input", *(str(c.path) for c in bad), str(good), "--output", str(out)]
    status = main(
        [*argv, "--device", "cpu", "--quiet"],
        services=mrml,
        runner=slicer_phantoms.CachedRunner(),
    )

    printed = capfd.readouterr()
    assert status == 1, printed.out
    assert "Traceback" not in printed.out + printed.err
    assert f"{len(bad) + 1} cases found" in printed.out
    assert f"1 ok, 0 skipped (done before), {len(bad)} failed" in printed.out
    assert mrml.scene.GetNumberOfNodes() == nodes_before
    assert {e for e in file_tree(root) if not Path(e[0]).is_relative_to(out)} == before

    rows = _rows(out / "summary.csv")
    assert len(rows) == len(bad) + 1
    assert len({r["case_id"] for r in rows}) == len(rows)  # huge.nrrd and huge.nii.gz too
    by_input = {r["input"]: r for r in rows}

    ok = by_input.pop(str(good.resolve()))
    assert (ok["case_id"], ok["status"], ok["error"]) == (good.name.removesuffix(".mha"), "ok", "")
    case = out / ok["case_id"]
    assert sorted(p.name for p in case.iterdir()) == sorted([*OUTPUT_FILES.values(), "slicer"])
    count = int(ok["findings"])
    assert read_results(case / "results.json")["summary"]["finding_count"] == count
    seg = mrml.segmentations.LoadSegmentationFromFile(
        str(case / SLICER_FOLDER / SEGMENTATION_FILE), False
    )
    assert seg.GetSegmentation().GetNumberOfSegments() == count
    table = _rows(case / SLICER_FOLDER / TABLE_FILE)
    assert [int(r["Finding"]) for r in table] == list(range(1, count + 1))

    for bad_case in bad:
        source = bad_case.path.resolve()  # the cohort works on resolved paths
        row = by_input.pop(str(source))
        assert row["status"] == "failed", (bad_case.name, row)
        message = row["error"]
        assert source.name in message, (bad_case.name, message)
        if bad_case.match is not None:
            assert re.search(bad_case.match, message), (bad_case.name, message)
        error_txt = (out / row["case_id"] / "error.txt").read_text(encoding="utf-8")
        assert error_txt.splitlines()[0] == message, bad_case.name
        assert f"FAILED {row['case_id']} ({source}): {message}" in printed.out
    assert by_input == {}


def test_a_path_that_does_not_exist_stops_the_batch_at_once(mrml, mixed, capfd) -> None:
    cases, good, out = mixed
    if not POSIX:
        pytest.skip("the looping link is POSIX")
    loop = next(c for c in cases if c.name == "symlink loop")
    root = out.parent
    before = file_tree(root)

    def no_runner(*args: object) -> None:
        raise AssertionError("detection ran")

    argv = ["--input", str(loop.path), str(good), "--output", str(out)]
    assert main(argv, services=mrml, runner=no_runner) == 2
    printed = capfd.readouterr()
    assert f"LungNoduleCAD batch: error: {loop.path}: no such file or folder" in printed.err
    assert "Traceback" not in printed.out + printed.err
    assert file_tree(root) == before
