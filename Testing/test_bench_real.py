"""``lungcad bench --target real``: rows per scan, the realism table and the held-out scan."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from lungcad.benchmark_real import (
    HELD_OUT_REAL_SCANS,
    REAL_DATA_ENV,
    REAL_SCANS,
    default_real_dir,
)
from lungcad.cli import main

# name, voxels, spacing, findings, candidates, litres, cand/L, <5mm, total s, classify s, note
ROW = re.compile(
    r"^(?P<name>.{24}) +(?P<voxels>\d+x\d+x\d+) +(?P<spacing>[\d.]+x[\d.]+x[\d.]+) +"
    r"(?P<findings>\d+) +(?P<candidates>\d+) +(?P<litres>[\d.]+) +(?P<per>[\d.]+|n/a) +"
    r"(?P<small>\d+) +(?P<total>[\d.]+) +(?P<classify>[\d.]+)(?P<note>  \(.*\))?$",
    re.MULTILINE,
)


def _rows(out: str) -> dict[str, re.Match]:
    return {m["name"].strip(): m for m in ROW.finditer(out)}


def _check_per_litre(row: re.Match) -> None:
    assert float(row["per"]) == pytest.approx(
        int(row["candidates"]) / float(row["litres"]), rel=0.01, abs=0.06
    )


def test_bench_real_runs_the_cascade_on_a_real_dicom_series(real_data, capsys, one_torch_thread):
    args = ["bench", "--target", "real", "--real-dir", str(real_data)]
    assert main([*args, "--scans", "dicom_lungmask", "--phantoms", "0"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert list(rows) == ["dicom_lungmask"]
    row = rows["dicom_lungmask"]
    assert row["voxels"] == "512x512x2" and row["spacing"] == "0.62x0.62x1.00"
    assert 0.01 < float(row["litres"]) < 0.1  # two 1 mm slices through both lungs
    _check_per_litre(row)
    assert int(row["small"]) <= int(row["findings"]) <= int(row["candidates"])
    assert "held out of all training: chest_cta_totalseg" in out
    realism = re.search(r"^dicom_lungmask +([-\d.]+) +", out.split("realism (")[1], re.MULTILINE)
    assert realism and 0.0 < float(realism[1]) < 100.0  # dense %
    assert re.search(r"^dicom_lungmask +0\.0$", out, re.MULTILINE)  # its own histogram distance


def test_bench_real_prints_phantoms_beside_and_divides_candidates_by_litres(
    real_data, small_dataset, capsys, monkeypatch
):
    """The cascade is replaced by a fixed answer, so the arithmetic is checked, not the models."""

    def fake_detect(ct, models, thresholds, *, stats, **kwargs):
        stats.candidates, stats.candidates_in_lung, stats.lung_volume_ml = 50, 37, 2500.0
        stats.timings_s.update(total=1.5, classification=0.5)
        sizes = (3.0, 4.9, 5.0, 12.0)
        return SimpleNamespace(findings=[SimpleNamespace(diameter_mm=d) for d in sizes])

    monkeypatch.setattr("lungcad.pipeline.detect", fake_detect)
    args = ["bench", "--target", "real", "--real-dir", str(real_data), "--scans", "dicom_lungmask"]
    assert main([*args, "--phantom-dir", str(small_dataset), "--phantoms", "1"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert len(rows) == 2 and "dicom_lungmask" in rows
    phantom = next(r for name, r in rows.items() if name.startswith("phantom 0"))
    assert phantom["note"].strip() == "(phantom)"
    for row in rows.values():
        assert (row["findings"], row["candidates"], row["small"]) == ("4", "37", "2")
        assert (row["total"], row["classify"]) == ("1.5", "0.5")
        assert row["litres"] == "2.500"  # the lung mask's volume, from the stats
        _check_per_litre(row)
    assert re.search(r"^phantom mean \(n=1\) +[\d.]+ ", out, re.MULTILINE)
    assert re.search(r"^phantom 0 \(subset\d\) +[\d.]+$", out, re.MULTILINE)  # its distance


def test_the_held_out_scan_and_its_thick_version_say_so():
    notes = {scan.name: scan.note() for scan in REAL_SCANS}
    assert HELD_OUT_REAL_SCANS == ("chest_cta_totalseg",)
    assert notes["chest_cta_totalseg"] == "(held out of training)"
    assert "derived" in notes["chest_cta_totalseg_5mm"]
    assert "held out of training" in notes["chest_cta_totalseg_5mm"]
    assert notes["dicom_totalseg"] == notes["dicom_lungmask"] == ""


def test_the_real_data_folder_is_beside_the_checkout_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv(REAL_DATA_ENV, raising=False)
    checkout = Path(__file__).resolve().parents[1]
    assert default_real_dir() == checkout.parent / "shared" / "data" / "real"
    monkeypatch.setenv(REAL_DATA_ENV, "/somewhere/else")
    assert default_real_dir() == Path("/somewhere/else")


def test_an_unknown_real_scan_is_refused(real_data, capsys):
    args = ["bench", "--target", "real", "--real-dir", str(real_data), "--scans", "nope"]
    assert main([*args, "--phantoms", "0"]) == 2
    assert "unknown real scan nope" in capsys.readouterr().err
