"""Mining the UNet's own candidates: labelled like the evaluation, read back by the nodule set."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from pipeline_support import FakeUNet

from lungcad.luna16 import read_annotations, validation_series
from lungcad.models import ModelCard, SegmentationUNet, Task, save_weights
from lungcad_training.cli import main
from lungcad_training.datasets import NoduleClassificationDataset
from lungcad_training.errors import TrainingError
from lungcad_training.mining import mine_candidates

SPACING = (2.0, 2.0, 2.5)
VAL_STRIDE = 2


@pytest.fixture(scope="module")
def mined(small_dataset: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("mined") / "unet_candidates.csv"
    found, hits = mine_candidates(
        small_dataset, cache_dir, FakeUNet(), out, spacing_xyz=SPACING, precision="float32",
        progress=False,
    )  # fmt: skip
    return out, found, hits


def test_mined_candidates_are_labelled_by_the_evaluation_hit_rule(small_dataset: Path, mined):
    out, found, hits = mined
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["seriesuid", "coordX", "coordY", "coordZ", "class"]
    assert len(rows) == found and sum(int(r["class"]) for r in rows) == hits
    assert 0 < hits < found  # the fake UNet finds nodules and some vessels
    annotations = read_annotations(small_dataset / "annotations.csv")
    for row in rows:
        centre = np.array([float(row[k]) for k in ("coordX", "coordY", "coordZ")])
        inside = any(
            a.series_uid == row["seriesuid"]
            and np.linalg.norm(centre - np.asarray(a.center_xyz)) < a.diameter_mm / 2
            for a in annotations
        )
        assert int(row["class"]) == int(inside)


def test_nodule_dataset_trains_and_validates_on_mined_candidates(
    small_dataset: Path, cache_dir: Path, mined
):
    out, found, _ = mined
    kwargs = {"val_stride": VAL_STRIDE, "spacing_xyz": SPACING, "ratio": 0}
    plain = NoduleClassificationDataset(small_dataset, cache_dir, **kwargs)
    extra = NoduleClassificationDataset(small_dataset, cache_dir, extra_candidates=out, **kwargs)
    val_plain = NoduleClassificationDataset(small_dataset, cache_dir, is_validation=True, **kwargs)
    val_extra = NoduleClassificationDataset(
        small_dataset, cache_dir, is_validation=True, extra_candidates=out, **kwargs
    )
    added = len(extra.items) - len(plain.items)
    added_val = len(val_extra.items) - len(val_plain.items)
    assert added > 0 and added_val > 0 and added + added_val == found
    uids = {i.series_uid for i in val_extra.items}
    held_out = validation_series({i.series_uid for i in extra.items} | uids, VAL_STRIDE)
    assert uids == held_out and not {i.series_uid for i in extra.items} & held_out


def test_mining_refuses_to_overwrite(small_dataset: Path, cache_dir: Path, mined):
    out, _, _ = mined
    with pytest.raises(TrainingError, match="exists"):
        mine_candidates(small_dataset, cache_dir, FakeUNet(), out, spacing_xyz=SPACING)
    with pytest.raises(TrainingError, match=r"dataset's own candidates\.csv"):
        mine_candidates(
            small_dataset, cache_dir, FakeUNet(), small_dataset / "candidates.csv",
            spacing_xyz=SPACING, overwrite=True,
        )  # fmt: skip


def test_mine_command_loads_the_weights_and_writes_the_csv(
    small_dataset: Path, cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(3)
    card = ModelCard(
        task=Task.SEGMENTATION, trained_on="test", command="test", created="2025-01-01"
    )
    (tmp_path / "models").mkdir()
    save_weights(SegmentationUNet(), card, tmp_path / "models" / "segmentation")
    out = tmp_path / "mined.csv"
    spacing = [str(v) for v in SPACING]
    argv = ["mine", "--data", str(small_dataset), "--cache", str(cache_dir), "--out", str(out)]
    argv += ["--spacing", *spacing, "--device", "cpu", "--precision", "float32", "--quiet"]
    assert main([*argv, "--weights", str(tmp_path / "models")]) == 0
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    printed = capsys.readouterr().out
    assert f"wrote {out}: {len(rows)} candidates" in printed
    assert {r["seriesuid"] for r in rows} <= {a.series_uid for a in _annotations(small_dataset)}

    missing = tmp_path / "elsewhere"
    assert main([*argv, "--overwrite", "--weights", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0]


def _annotations(data: Path):
    return read_annotations(data / "annotations.csv")
