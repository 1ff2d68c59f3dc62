"""``lungcad bench --target cascade`` prints every stage and the memory budget."""

from __future__ import annotations

import re

import pytest
import torch
from pipeline_support import tiny_ct

from lungcad.cli import main
from lungcad.ctio import write_ct
from lungcad.pipeline import STAGES


def test_cascade_bench_prints_stages_and_memory(tmp_path, capsys):
    path = tmp_path / "tiny.mhd"
    write_ct(tiny_ct(size_mm=56.0), path)
    threads = torch.get_num_threads()
    try:
        assert main(["bench", "--ct", str(path), "--threads", "1", "--compare-bf16", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    for stage in STAGES:
        assert re.search(rf"^  {stage} +\d+\.\d\d s", out, re.MULTILINE), stage
    assert re.search(r"UNet: \d+ ms per canonical slice run", out)
    assert re.search(r"refilter: [\d.]+ ms per threshold change", out)
    assert re.search(r"bf16 vs float32 UNet on 1 slices: .* max [\d.]+", out)
    assert re.search(r"peak memory \(RSS\): \d+ MB .* budget 3 x 0 MB \+ 1536 MB", out)
    assert "1 threads" in out
    assert "nodule classifier unmirrored" not in out


def test_cascade_bench_can_run_the_nodule_classifier_unmirrored(tmp_path, capsys, monkeypatch):
    seen = {}

    def fake_detect(ct, models, thresholds, options, **kwargs):
        seen["options"] = options
        raise SystemExit(0)

    monkeypatch.setattr("lungcad.pipeline.detect", fake_detect)
    path = tmp_path / "tiny.mhd"
    write_ct(tiny_ct(size_mm=56.0), path)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit):
            main(["bench", "--ct", str(path), "--threads", "1", "--no-mirror"])
    finally:
        torch.set_num_threads(threads)
    assert seen["options"].mirror_nodule is False
    assert "nodule classifier unmirrored" in capsys.readouterr().out
