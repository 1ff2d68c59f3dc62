"""The training range a card states, measured on the data: headers, and the phantom's draws."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from lungcad.models import read_card
from lungcad.phantom import PhantomSize, make_spec
from lungcad.pipeline.models import BUNDLED_MODELS
from lungcad_training.cli import main
from lungcad_training.training_range import (
    folder_range,
    phantom_range,
    range_for_data,
    write_range,
)

SEED, CASES = 4, 4  # the small_dataset fixture's recipe


def test_folder_headers_agree_with_the_generator_draws(small_dataset: Path) -> None:
    from_headers = folder_range(small_dataset)
    from_draws = phantom_range(SEED, CASES, "small")
    assert from_headers.series == from_draws.series == CASES
    for name in ("pixel_mm", "slice_spacing_mm", "slice_thickness_mm"):
        assert getattr(from_headers, name) == pytest.approx(getattr(from_draws, name), abs=1e-6)
    assert dataclasses.replace(from_headers, source="") == dataclasses.replace(
        from_draws,
        source="",
        pixel_mm=from_headers.pixel_mm,
        slice_spacing_mm=from_headers.slice_spacing_mm,
        slice_thickness_mm=from_headers.slice_thickness_mm,
    )
    grids = [make_spec(SEED, i).grid(PhantomSize.SMALL) for i in range(CASES)]
    assert from_draws.slice_spacing_mm == (
        min(g.spacing_xyz[2] for g in grids),
        max(g.spacing_xyz[2] for g in grids),
    )
    assert from_draws.contrast == "none" and from_draws.hu_air == (-1000.0, -1000.0)


def test_a_luna16_folder_states_both_contrasts(small_dataset: Path, tmp_path: Path) -> None:
    luna = tmp_path / "luna"
    shutil.copytree(small_dataset, luna, ignore=shutil.ignore_patterns("*.raw", "*.nrrd"))
    (luna / "phantom.json").unlink()
    found = folder_range(luna)  # headers only: the voxels are not read
    assert found.contrast == "both" and found.series == CASES
    assert found.hu_fat == (-100.0, -100.0) and "not measured" in found.source


def test_range_for_data_falls_back_to_the_draws_when_the_folder_is_gone() -> None:
    data = {"data_dir": "/nowhere/phantoms", "phantom": {"seed": SEED, "cases": CASES,
                                                         "size": "small"}}  # fmt: skip
    assert range_for_data(data) == phantom_range(SEED, CASES, "small")
    assert range_for_data({"data_dir": "/nowhere"}) is None


def test_range_command_writes_cards_that_still_load(small_dataset: Path, tmp_path, capsys):
    for suffix in (".json", ".safetensors"):
        shutil.copy(BUNDLED_MODELS / f"nodule{suffix}", tmp_path / f"nodule{suffix}")
    card = tmp_path / "nodule.json"
    assert main(["range", "--data", str(small_dataset), "--card", str(card)]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[: printed.rindex("}") + 1])["series"] == CASES
    updated = read_card(card)
    assert updated.training_range == folder_range(small_dataset)
    before = read_card(BUNDLED_MODELS / "nodule.json")
    assert dataclasses.replace(updated, training_range=before.training_range) == before
    assert write_range(card, before.training_range) == card


def test_a_version_2_set_gives_its_thickness_and_contrast(tmp_path) -> None:
    from lungcad.phantom import PhantomSize, write_dataset
    from lungcad.phantom.spec import RealismVersion
    from lungcad_training.training_range import folder_range

    out = tmp_path / "v2"
    write_dataset(out, cases=4, seed=9, size=PhantomSize.SMALL, subsets=1, progress=False,
                  version=RealismVersion.V2)  # fmt: skip
    manifest = json.loads((out / "phantom.json").read_text(encoding="utf-8"))
    found = folder_range(out)
    enhanced = {s["contrast"] for s in manifest["series"]}
    expected = {frozenset({True, False}): "both", frozenset({True}): "contrast-enhanced",
                frozenset({False}): "none"}[frozenset(enhanced)]  # fmt: skip
    assert found.contrast == expected
    assert "realism version 2" in found.source
