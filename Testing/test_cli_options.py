"""The shared options (lungcad.cli.options) in every ``lungcad`` command: names, old spellings,
checks with their messages, defaults from the engine's types, and the case outcomes in
summary.csv."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from lungcad.cli.app import build_parser
from lungcad.cohort import CaseStatus, read_summary, write_summary
from lungcad.cohort_status import Outcome
from lungcad.devices import DEVICES, Device
from lungcad.pipeline import Thresholds

#: One valid command line per command that takes an output folder or file (--out).
WITH_OUT = {
    "detect": ["detect", "ct.mhd"],
    "demo": ["demo"],
    "evaluate": ["evaluate", "--data", "d", "--results", "r"],
    "implant": ["implant", "host.mhd"],
    "show": ["show", "ct.mhd", "--at", "1,2,3"],
}
EVALUATE = ["evaluate", "--data", "d", "--results", "r", "--out", "o"]
#: ... and per command that takes --device.
WITH_DEVICE = {"detect": ["detect", "ct.mhd", "--out", "o"], "demo": ["demo"], "bench": ["bench"]}


def parse(argv: list[str]):
    return build_parser().parse_args(argv)


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The last line argparse printed for a usage error (exit status 2)."""
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("command", sorted(WITH_OUT))
@pytest.mark.parametrize("spelling", ["--out", "--output"])
def test_out_and_its_old_spelling_output_fill_the_same_option(command, spelling):
    args = parse([*WITH_OUT[command], spelling, "somewhere"])
    assert args.out == Path("somewhere")


@pytest.mark.parametrize("command", ["detect", "bench"])
@pytest.mark.parametrize("spelling", ["--models", "--weights"])
def test_models_and_its_old_spelling_weights_fill_the_same_option(command, spelling):
    base = WITH_DEVICE[command]
    assert parse([*base, spelling, "w"]).models == Path("w")
    assert parse(base).models is None  # the bundled weights


@pytest.mark.parametrize("command", sorted(WITH_DEVICE))
def test_device_is_a_device_enum_and_anything_else_is_a_usage_error(command, capsys):
    base = WITH_DEVICE[command]
    assert parse(base).device is Device.AUTO
    assert parse([*base, "--device", "cpu"]).device is Device.CPU
    line = usage_error([*base, "--device", "tpu"], capsys)
    assert line.endswith("argument --device: invalid choice: 'tpu' (choose from auto, cpu, cuda)")


def test_device_names_are_the_enum_values_and_print_as_them():
    assert DEVICES == ("auto", "cpu", "cuda")
    assert f"{Device.CUDA}" == "cuda" and Device("cpu") is Device.CPU


def test_detect_threshold_defaults_are_the_engine_thresholds():
    args = parse(["detect", "ct.mhd", "--out", "o"])
    defaults = Thresholds()
    assert (args.segmentation_threshold, args.nodule_threshold, args.malignancy_threshold) == (
        defaults.segmentation,
        defaults.nodule,
        defaults.malignancy,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["detect", "ct.mhd", "--out", "o", "--nodule-threshold", "1.5"],
            "argument --nodule-threshold: must be a finite number in [0, 1], got 1.5",
        ),
        (
            ["detect", "ct.mhd", "--out", "o", "--segmentation-threshold", "0"],
            "argument --segmentation-threshold: must be a finite number in (0, 1], got 0",
        ),
        (
            [*EVALUATE, "--malignancy-threshold", "nan"],
            "argument --malignancy-threshold: must be a finite number in [0, 1], got nan",
        ),
        (
            [*EVALUATE, "--nodule-threshold", "x"],
            "argument --nodule-threshold: not a number: 'x'",
        ),
        (
            ["bench", "--threads", "0"],
            "argument --threads: must be an integer from 1 to 1024, got 0",
        ),
        (
            ["phantom", "o", "--cases", "0"],
            "argument --cases: must be an integer at least 1, got 0",
        ),
        (
            ["thicken", "a", "b", "--slab-mm", "-5"],
            "argument --slab-mm: must be a finite number in (0, inf), got -5",
        ),
    ],
)
def test_thresholds_and_counts_are_checked_the_same_way_in_every_command(argv, message, capsys):
    assert usage_error(argv, capsys).endswith(message)


def test_evaluate_thresholds_default_to_the_results_own():
    args = parse(EVALUATE)
    assert args.nodule_threshold is None and args.malignancy_threshold is None
    assert not hasattr(args, "segmentation_threshold")


def test_seed_overwrite_quiet_and_series_uid_keep_their_names_and_defaults():
    assert parse(["demo"]).seed == 2023
    assert parse(["implant", "h.mhd", "--out", "o"]).seed == 9000
    args = parse(["phantom", "o", "--overwrite", "--quiet"])
    assert (args.seed, args.overwrite, args.quiet) == (0, True, True)
    assert parse(["info", "ct", "--series-uid", "1.2"]).series_uid == "1.2"
    assert parse(["demo"]).out == Path("demo-output")


def test_python_m_lungcad_cli_still_runs_the_command_line():
    done = subprocess.run(
        [sys.executable, "-m", "lungcad.cli", "detect", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--models PATH, --weights PATH" in done.stdout
    assert "--out OUT, --output OUT" in done.stdout


# --- case outcomes in summary.csv ------------------------------------------------------------


def _status(case_id: str, outcome: Outcome) -> CaseStatus:
    return CaseStatus(case_id, f"{case_id}.mhd", outcome, findings=1, seconds=2.0)


def test_outcomes_are_written_as_the_strings_summary_csv_always_had(tmp_path):
    statuses = [
        _status("a", Outcome.OK),
        _status("b", Outcome.FAILED),
        _status("c", Outcome.SKIPPED),
    ]
    write_summary(tmp_path, statuses)
    with (tmp_path / "summary.csv").open(newline="", encoding="utf-8") as fh:
        cells = {row["case_id"]: row["status"] for row in csv.DictReader(fh)}
    assert cells == {"a": "ok", "b": "failed", "c": "ok"}  # skipped: the run that made it was ok
    assert {type(v) for v in cells.values()} == {str}


def test_an_old_summary_csv_reads_back_into_outcomes(tmp_path):
    (tmp_path / "summary.csv").write_text(
        "case_id,input,status,findings,highest_malignancy,suspicious,seconds,error,warnings,"
        "rerun_reason\nold,old.mhd,ok,2,0.1000,0,3.0,,,\nbad,bad.mhd,failed,,,,1.0,boom,,\n",
        encoding="utf-8",
    )
    rows = read_summary(tmp_path / "summary.csv")
    assert {k: Outcome(r["status"]) for k, r in rows.items()} == {
        "old": Outcome.OK,
        "bad": Outcome.FAILED,
    }
    # a skipped case keeps the old row; the others are merged in
    write_summary(tmp_path, [_status("old", Outcome.SKIPPED), _status("new", Outcome.OK)])
    rows = read_summary(tmp_path / "summary.csv")
    assert rows["old"]["findings"] == "2" and rows["new"]["status"] == "ok"
    assert rows["bad"]["error"] == "boom"
