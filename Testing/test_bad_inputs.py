"""A corpus of hostile and careless inputs: each is refused cleanly and cheaply.

The corpus is built from code by ``bad_inputs_support.build_corpus`` (shared with the batch tests).

For every file: ``read_ct`` raises the project's typed error naming the file; ``lungcad info``
exits 2 with one line on stderr and no traceback; reading the whole corpus in one subprocess
stays under :data:`PEAK_BUDGET_MB` of resident memory (measured with ``os.wait4`` / ``ru_maxrss``)
and adds less than :data:`READ_BUDGET_MB` over the interpreter's own footprint; nothing is written
anywhere. A good CT read in the same run succeeds. The canonical grid and the CLI's argument
checks have their own cases below (weights and saved results: ``test_bad_saved_files.py``).
Everything is tiny: the corpus runs in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from bad_inputs_support import (
    SERIES_UID,
    Case,
    build_corpus,
    file_tree,
    hu_block,
    strip_preambles,
    write_series,
)

from lungcad.ct import CT, Geometry
from lungcad.errors import (
    CTFormatError,
    CTTooLargeError,
    DicomGeometryError,
)
from lungcad.io import read_ct

#: Peak resident memory of the process that reads the whole corpus (the interpreter with torch
#: and SimpleITK is ~350 MB; one crafted header trusted would ask for 4-17 GB).
PEAK_BUDGET_MB = 1024
#: What reading every corpus file may add on top of the interpreter's footprint.
READ_BUDGET_MB = 256


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case], Path]:
    root = tmp_path_factory.mktemp("bad_inputs")
    cases, good = build_corpus(root)
    return root, cases, good


# --------------------------------------------------------------------------------------------
# read_ct: the typed error, naming the file


def test_each_bad_file_raises_a_typed_error_naming_it(corpus) -> None:
    _, cases, good = corpus
    for case in cases:
        with pytest.raises(case.error, match=case.match) as info:
            read_ct(case.path)
        message = str(info.value)
        assert str(case.path) in message or case.path.name in message, (case.name, message)
        assert "\n" not in message and "itk::" not in message, (case.name, message)
    assert read_ct(good).shape == (6, 16, 16)


def test_refusing_a_data_file_elsewhere_says_nothing_about_it(corpus) -> None:
    _, cases, _ = corpus
    for case in cases:
        if "../" in case.name or "absolute" in case.name:
            with pytest.raises(CTFormatError) as info:
                read_ct(case.path)
            assert "12345" not in str(info.value) and "bytes" not in str(info.value)


def test_the_gap_message_lists_the_positions_that_disagree(corpus) -> None:
    _, cases, _ = corpus
    gap = next(c for c in cases if c.name == "missing slice")
    with pytest.raises(DicomGeometryError) as info:
        read_ct(gap.path)
    assert "most are 2.92 mm apart" in str(info.value)
    assert "002.dcm" in str(info.value) and "003.dcm" in str(info.value)


# --------------------------------------------------------------------------------------------
# lungcad info over the whole corpus in one subprocess: exit 2, one line, memory, no writes

_DRIVER = r"""
import contextlib, io, json, logging, sys, traceback

class _Stderr:  # logging follows each case's redirected stderr
    def write(self, s): return sys.stderr.write(s)
    def flush(self): sys.stderr.flush()

logging.basicConfig(stream=_Stderr(), level=logging.WARNING)
from lungcad.cli import main

def peak_mb():
    try:
        import resource
    except ImportError:
        return None
    kb = 1024.0 if sys.platform == "darwin" else 1.0  # macOS counts bytes, Linux kilobytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kb / 1024.0

base = peak_mb()
results = []
for path in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["info", path])
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        code, _ = "traceback", err.write(traceback.format_exc())
    results.append({"path": path, "code": code, "stderr": err.getvalue()})
print(json.dumps({"base_mb": base, "results": results}))
"""


def _run_measured(args: list[str], timeout: float = 240) -> tuple[int, str, float | None]:
    """Run a child; its exit code, stdout and peak RSS in MB (os.wait4 where it exists)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (
        open(os.devnull, "rb") as stdin,
        subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE, env=env) as proc,
    ):
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            stdout = proc.stdout.read().decode()
            if hasattr(os, "wait4"):
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                peak = usage.ru_maxrss / (1024.0 if sys.platform != "darwin" else 1024.0**2)
            else:
                proc.wait()
                peak = None
        finally:
            timer.cancel()
    return proc.returncode, stdout, peak


def test_lungcad_info_exits_2_cleanly_within_the_memory_budget(corpus, tmp_path: Path) -> None:
    root, cases, good = corpus
    before = file_tree(root)
    paths = [str(c.path) for c in cases] + [str(good)]
    code, stdout, peak = _run_measured(
        [sys.executable, "-c", _DRIVER, json.dumps(paths)], timeout=240
    )
    assert code == 0, stdout
    report = json.loads(stdout.strip().splitlines()[-1])
    by_path = {r["path"]: r for r in report["results"]}
    for case in cases:
        r = by_path[str(case.path)]
        assert r["code"] == 2, (case.name, r)
        assert "Traceback" not in r["stderr"], (case.name, r["stderr"])
        errors = [line for line in r["stderr"].splitlines() if "error:" in line]
        assert len(errors) == 1 and case.path.name in errors[0], (case.name, r["stderr"])
    assert by_path[str(good)]["code"] == 0, by_path[str(good)]
    assert file_tree(root) == before  # nothing written, nothing removed
    if peak is not None:
        assert peak < PEAK_BUDGET_MB, f"peak {peak:.0f} MB"
    if report["base_mb"] is not None and peak is not None:
        assert peak - report["base_mb"] < READ_BUDGET_MB, (peak, report["base_mb"])


def test_show_with_a_bad_ct_writes_nothing(corpus, tmp_path: Path) -> None:
    from lungcad.cli import main

    _, cases, _ = corpus
    out = tmp_path / "out"
    out.mkdir()
    for case in cases[:6]:
        assert main(["show", str(case.path), "--at", "0,0,0", "--out", str(out / "v.png")]) == 2
    assert list(out.iterdir()) == []


def test_a_header_beyond_the_voxel_budget_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "giant.nrrd"
    path.write_bytes(
        b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4096 4096 1024\nencoding: raw\n"
        b"endian: little\n\n"
    )
    with pytest.raises(CTTooLargeError, match=r"4096x4096x1024 voxels.*2048x2048x2048"):
        read_ct(path)


def test_a_ct_that_memory_cannot_hold_is_refused_before_reading(
    corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lungcad import budget

    _, _, good = corpus
    monkeypatch.setattr(budget, "available_memory_bytes", lambda: 4096)
    with pytest.raises(CTTooLargeError, match=r"16x16x6 voxels.*available now"):
        read_ct(good)


# --------------------------------------------------------------------------------------------
# discovery: a DICOM folder whatever its files are called


def test_a_dicom_folder_without_suffixes_is_discovered_and_read(tmp_path: Path) -> None:
    from lungcad.cohort import collect_inputs

    folder = write_series(tmp_path / "in" / "scan", [0, 2.5, 5.0], names="CT.1.2.3.{k}")
    assert collect_inputs([tmp_path / "in"]) == [folder.resolve()]
    assert read_ct(folder).shape == (3, 8, 8)


def test_a_dicom_folder_without_preambles_is_discovered_and_read(tmp_path: Path) -> None:
    from lungcad.cohort import assign_case_ids, collect_inputs

    folder = write_series(tmp_path / "in" / "scan", [0, 2.5, 5.0], names="IM{k}")
    strip_preambles(folder)
    (tmp_path / "in" / "notes").mkdir()
    (tmp_path / "in" / "notes" / "log").write_bytes(b"\x08\x00 starts like DICOM, is not")
    assert sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) == (SERIES_UID,)
    assert collect_inputs([tmp_path / "in"]) == [folder.resolve()]
    assert [c.case_id for c in assign_case_ids([folder])] == [SERIES_UID]
    ct = read_ct(folder)
    assert (ct.shape, ct.series_uid) == ((3, 8, 8), SERIES_UID)
    np.testing.assert_array_equal(ct.hu, hu_block((3, 8, 8)))


def test_a_dicom_series_without_preambles_is_held_to_the_memory_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lungcad import budget

    folder = write_series(tmp_path / "scan", [0, 2.5, 5.0], names="IM{k}")
    strip_preambles(folder)
    monkeypatch.setattr(budget, "available_memory_bytes", lambda: 1024)
    with pytest.raises(CTTooLargeError, match=r"the series' 3 files declare 8x8x3 voxels"):
        read_ct(folder)  # judged from the first file's header, before any voxel is read


def test_an_evenly_spaced_dicom_series_with_rounded_positions_is_read(tmp_path: Path) -> None:
    # positions written to 0.1 mm: steps of 0.6 and 0.7 for 0.625 mm slices are no gap
    z = [round(k * 0.625, 1) for k in range(8)]
    assert read_ct(write_series(tmp_path / "s", z)).shape == (8, 8, 8)


# --------------------------------------------------------------------------------------------
# the canonical grid, checked before resampling


def test_a_40_mm_voxel_ct_is_refused_before_resampling() -> None:
    from lungcad.preprocess import to_canonical

    g = Geometry.from_arrays((0, 0, 0), (40.0, 40.0, 40.0), np.eye(3), (4, 32, 32))
    with pytest.raises(CTTooLargeError, match=r"1280 x 1280 x 160 mm.*1707x1707x128"):
        to_canonical(CT(hu_block((4, 32, 32)), g))


# --------------------------------------------------------------------------------------------
# command-line values: argparse errors (exit 2), never tracebacks


@pytest.mark.parametrize(
    "argv",
    [["show", "x.nrrd", "--at", "0,0,0", "--out", "v.png", "--crop-mm", "1e-9"],
     ["bench", "--threads", "-3"],
     ["bench", "--slice-batch", "-1"],
     ["bench", "--crop-batch", "0"],
     ["evaluate", "--data", "d", "--results", "r", "--out", "o", "--min-diameter-mm", "nan"],
     ["evaluate", "--data", "d", "--results", "r", "--out", "o", "--nodule-threshold", "2"],
     ["detect", "x.nrrd", "--out", "o", "--segmentation-threshold", "0"]],
)  # fmt: skip
def test_bad_option_values_are_usage_errors(argv: list[str], capsys) -> None:
    from lungcad.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err


def test_show_refuses_an_existing_out_without_overwrite(corpus, tmp_path: Path, capsys) -> None:
    from lungcad.cli import main

    _, _, good = corpus
    out = tmp_path / "mine.png"
    out.write_bytes(b"a user's picture")
    assert main(["show", str(good), "--at", "1,1,1", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"a user's picture"
    assert main(["show", str(good), "--at", "1,1,1", "--out", str(out), "--overwrite"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
