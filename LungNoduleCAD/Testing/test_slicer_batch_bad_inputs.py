"""The Slicer batch script over the whole bad-input corpus mixed with one good CT (issue 14).

``LungNoduleCADLib.batch.main`` (what ``Scripts/batch.py`` runs) gets every corrupt file and bad
DICOM folder of ``Testing/bad_inputs_support.py`` and one good CT (the 70 mm phantom crop the
other batch tests use, detected for real once per session), against a real MRML scene. It exits
1; the good case's segmentation, findings table and markups are written and agree with its row;
summary.csv and summary.json hold one ``failed`` row per bad input whose message names the file
and the problem, each under its own case id; no traceback is printed; nothing is written outside
--output; the scene holds no case's nodes afterwards.

Left out of the mixed batch: the symbolic link that loops. For the file system it does not exist,
and a path that does not exist stops the batch at once with exit 2, before any work, by design
(issue 14 allows it; ``--input``'s help says so). The last test shows that refusal.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import pytest
import slicer_phantoms
from LungNoduleCADLib.batch import main
from LungNoduleCADLib.files import SEGMENTATION_FILE, TABLE_FILE

from lungcad.ctio import write_ct

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
        [*argv, "--device", "cpu"],
        services=mrml,
        runner=slicer_phantoms.CachedRunner(),
    )

    printed = capfd.readouterr()
    assert status == 1, printed.out
    assert "Traceback" not in printed.out + printed.err
    assert f"1 of {len(bad) + 1} cases done" in printed.out
    assert mrml.scene.GetNumberOfNodes() == nodes_before
    assert {e for e in file_tree(root) if not Path(e[0]).is_relative_to(out)} == before

    rows = _rows(out / "summary.csv")
    assert [r["input"] for r in rows] == [str(c.path) for c in bad] + [str(good)]
    assert len({r["case_id"] for r in rows}) == len(rows)  # huge.nrrd and huge.nii.gz too
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [c["case_id"] for c in summary["cases"]] == [r["case_id"] for r in rows]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["summary.csv", "summary.json", rows[-1]["case_id"]]
    )  # no folder for a failed case

    ok = rows[-1]
    assert (ok["case_id"], ok["status"]) == (good.name.removesuffix(".mha"), "done")
    count = int(ok["findings"])
    seg = mrml.segmentations.LoadSegmentationFromFile(
        str(out / ok["case_id"] / SEGMENTATION_FILE), False
    )
    assert seg.GetSegmentation().GetNumberOfSegments() == count
    table = _rows(out / ok["case_id"] / TABLE_FILE)
    assert [int(r["Finding"]) for r in table] == list(range(1, count + 1))

    for case, row in zip(bad, rows[:-1], strict=True):
        assert (row["status"], row["output"], row["findings"]) == ("failed", "", ""), case.name
        message = row["message"]
        assert case.path.name in message, (case.name, message)
        if case.match is not None:
            assert re.search(case.match, message), (case.name, message)
        assert f"{row['case_id']}: FAILED: {message}" in printed.out


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
    assert f"error: {loop.path}: no such file or folder" in printed.out
    assert "Traceback" not in printed.out + printed.err
    assert file_tree(root) == before
