"""The lungcad command line, run as a user would: real files in, real files and text out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from lungcad.cli import main
from lungcad.luna16 import find_series


def test_phantom_command_writes_a_dataset_and_prints_its_statistics(tmp_path: Path, capsys) -> None:
    out = tmp_path / "set"
    args = ["phantom", str(out), "--cases", "2", "--seed", "3", "--size", "small", "--quiet"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "wrote 2 small phantom cases" in text
    assert "diameter-only ROC AUC" in text and "types:" in text
    assert len(find_series(out)) == 2


def test_phantom_command_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "set"
    args = ["phantom", str(out), "--cases", "1", "--seed", "3", "--size", "small", "--quiet"]
    assert main(args) == 0
    before = (out / "annotations.csv").read_bytes()
    assert main([*args[:-1], "--seed", "5", "--quiet"]) == 2
    assert "already holds a dataset" in capsys.readouterr().err
    assert (out / "annotations.csv").read_bytes() == before


def test_show_accepts_negative_coordinates_and_writes_a_png(
    small_dataset: Path, tmp_path: Path
) -> None:
    uid, mhd = sorted(find_series(small_dataset).items())[0]
    row = next(
        line.split(",")
        for line in (small_dataset / "annotations.csv").read_text(encoding="utf-8").splitlines()[1:]
        if line.startswith(uid)
    )
    x, y, z = row[1:4]
    out = tmp_path / "view.png"
    assert main(["show", str(mhd), "--at", f"{x},{y},{z}", "--out", str(out)]) == 0
    assert mpimg.imread(out).shape[:2] == (450, 1600)
    negative = tmp_path / "neg.png"
    assert main(["show", str(mhd), "--at", "-20,0,0", "--out", str(negative)]) == 0
    assert negative.exists()


def test_show_names_a_missing_file(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope.mhd"
    assert main(["show", str(missing), "--at", "0,0,0", "--out", str(tmp_path / "v.png")]) == 2
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "v.png").exists()


def test_info_prints_size_spacing_and_geometry(small_dataset: Path, capsys) -> None:
    uid, mhd = sorted(find_series(small_dataset).items())[0]
    assert main(["info", str(mhd)]) == 0
    text = capsys.readouterr().out
    assert uid in text and "spacing" in text and "direction" in text


def test_bench_prints_generation_time_and_memory(capsys) -> None:
    assert main(["bench", "--size", "small", "--cases", "1"]) == 0
    text = capsys.readouterr().out
    assert "generation per case" in text and "peak memory" in text


def test_console_script_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lungcad.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("lungcad ")


@pytest.mark.parametrize("bad", ["1,2", "a,b,c", ""])
def test_show_rejects_a_malformed_point(
    small_dataset: Path, tmp_path: Path, bad: str, capsys
) -> None:
    _, mhd = sorted(find_series(small_dataset).items())[0]
    assert main(["show", str(mhd), "--at", bad, "--out", str(tmp_path / "v.png")]) == 2
    assert "error" in capsys.readouterr().err
