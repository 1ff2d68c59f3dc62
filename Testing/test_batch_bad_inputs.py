"""``lungcad detect`` over the whole bad-input corpus mixed with one good CT (issue 14).

Every corrupt file and bad DICOM folder of :func:`bad_inputs_support.build_corpus` is named on
the command line next to one good CT (a 12 x 28 x 28 crop of a small phantom) that the bundled
weights really run on. The run exits 1; the good case's results.json loads back with the findings
its detection.npz holds; summary.csv has one ``failed`` row per bad input whose error names the
file and the problem, with the same line in the case's error.txt; no traceback is printed;
nothing is written outside --out (the working directory included).

Left out of the mixed batch: the symbolic link that loops. For the file system it does not
exist, and a path on the command line that does not exist stops ``lungcad detect`` at once with
exit 2, before any work, by design (issue 14 allows it; ``--help`` says so): a typo in a cohort
list should not cost a night of computing. The last test shows that refusal.
"""

from __future__ import annotations

import csv
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from bad_inputs_support import GOOD_UID, POSIX, Case, build_corpus, file_tree, good_crop_ct

import lungcad.errors
from lungcad.cli import main
from lungcad.pipeline import DetectionResult
from lungcad.reports import OUTPUT_FILES, read_results

#: Corpus cases that stop a run at argument time (see the module docstring).
REFUSED_AT_ONCE = ("symlink loop",)
CPU = ["--device", "cpu", "--precision", "float32", "--quiet"]
#: Far more than the run needs (seconds): a FIFO opened by a header reader blocks for ever.
HANG_S = 300


def within(seconds: float, run: Callable[[], int]) -> int:
    """``run()``'s exit status, or a failed test (not a hung suite) if it has not returned."""
    outcome: dict[str, int | BaseException] = {}

    def target() -> None:
        try:
            outcome["code"] = run()
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    assert not thread.is_alive(), f"the batch still runs after {seconds} s (a blocking read?)"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["code"]


@pytest.fixture
def mixed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Case], Path, Path]:
    """The corpus and the good CT under ``tmp_path``; the working directory an empty folder
    inside it, so that a stray relative write would show in the tree."""
    (tmp_path / "corpus").mkdir()
    cases, _ = build_corpus(tmp_path / "corpus")
    good = good_crop_ct(tmp_path / "good" / "crop.nrrd")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return cases, good, tmp_path / "out"


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "summary.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _outside(root: Path, out: Path) -> set[tuple[str, int]]:
    return {entry for entry in file_tree(root) if not Path(entry[0]).is_relative_to(out)}


def test_detect_over_every_bad_input_and_one_good_ct(mixed, one_torch_thread, capfd) -> None:
    cases, good, out = mixed
    bad = [c for c in cases if c.name not in REFUSED_AT_ONCE]
    assert len(bad) == (24 if POSIX else 21)
    root = out.parent
    before = file_tree(root)

    argv = ["detect", *(str(c.path) for c in bad), str(good), "--out", str(out), *CPU]
    code = within(HANG_S, lambda: main(argv))

    printed = capfd.readouterr()
    assert code == 1, printed.out
    assert "Traceback" not in printed.out + printed.err
    assert f"{len(bad) + 1} cases found" in printed.out
    assert f"1 ok, 0 skipped (done before), {len(bad)} failed" in printed.out
    assert _outside(root, out) == before

    rows = _rows(out)
    assert len(rows) == len(bad) + 1
    assert len({r["case_id"] for r in rows}) == len(rows)
    by_input = {r["input"]: r for r in rows}

    ok = by_input.pop(str(good.resolve()))
    assert (ok["case_id"], ok["status"], ok["error"]) == (GOOD_UID, "ok", "")
    folder = out / GOOD_UID
    assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUT_FILES.values())
    doc = read_results(folder / "results.json")
    saved = DetectionResult.load(folder / "detection.npz")
    assert doc["input"]["shape_irc"] == [12, 28, 28]
    assert [f["number"] for f in doc["findings"]] == [f.number for f in saved.findings]
    assert int(ok["findings"]) == doc["summary"]["finding_count"] == len(saved.findings)

    for case in bad:
        source = case.path.resolve()  # the cohort works on resolved paths (/dev/zero for a link)
        row = by_input.pop(str(source))
        assert row["status"] == "failed", (case.name, row)
        kind, _, message = row["error"].partition(": ")
        assert issubclass(getattr(lungcad.errors, kind), case.error), (case.name, row["error"])
        assert source.name in message, (case.name, message)  # the header, not only its .raw
        if case.match is not None:
            assert re.search(case.match, message), (case.name, message)
        error_txt = (out / row["case_id"] / "error.txt").read_text(encoding="utf-8")
        assert error_txt.splitlines()[0] == row["error"], case.name
        assert f"FAILED {row['case_id']} ({source}): {row['error']}" in printed.out
    assert by_input == {}


def test_a_path_that_does_not_exist_stops_detect_at_once(mixed, capfd) -> None:
    cases, good, out = mixed
    if not POSIX:
        pytest.skip("the looping link is POSIX")
    loop = next(c for c in cases if c.name == "symlink loop")
    root = out.parent
    before = file_tree(root)
    assert main(["detect", str(loop.path), str(good), "--out", str(out), *CPU]) == 2
    printed = capfd.readouterr()
    assert f"{loop.path}: no such file or folder" in printed.err
    assert "Traceback" not in printed.out + printed.err
    assert file_tree(root) == before  # not even --out was made
