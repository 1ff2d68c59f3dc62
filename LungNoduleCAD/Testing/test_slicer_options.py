"""Slicer batch mode and the GUI's worker take the shared options (lungcad.cli.options): the same
names, old spellings and checks as ``lungcad detect``."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from LungNoduleCADLib import batch, worker
from LungNoduleCADLib.parameters import LungNoduleCADParameters

from lungcad.devices import DEVICES, Device
from lungcad.pipeline import Thresholds


@pytest.mark.parametrize("spelling", ["--out", "--output"])
def test_batch_output_folder_takes_both_spellings(spelling):
    args = batch.build_parser().parse_args(["--input", "a.mha", spelling, "res"])
    assert args.out == Path("res") and args.input == [Path("a.mha")]


def test_batch_takes_detect_run_options_with_their_defaults_and_aliases():
    args = batch.build_parser().parse_args(["--input", "a.mha", "--out", "o", "--weights", "w"])
    assert args.models == Path("w") and args.device is Device.AUTO
    defaults = Thresholds()
    assert (args.segmentation_threshold, args.nodule_threshold, args.malignancy_threshold) == (
        defaults.segmentation,
        defaults.nodule,
        defaults.malignancy,
    )


def test_batch_refuses_an_unknown_device_before_any_work(tmp_path, capsys):
    argv = ["--input", str(tmp_path), "--out", str(tmp_path / "o"), "--device", "tpu"]
    assert batch.main(argv) == 2
    assert (
        "argument --device: invalid choice: 'tpu' (choose from auto, cpu, cuda)"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "o").exists()


def test_worker_parses_the_shared_options_and_checks_its_thresholds(capsys):
    parser = worker.build_parser()
    args = parser.parse_args(["--input", "i.mha", "--output", "r.npz", "--thresholds", "0.3,0.6,1"])
    assert (args.out, args.device, args.models) == (Path("r.npz"), Device.AUTO, None)
    assert args.thresholds == (0.3, 0.6, 1.0)
    for bad, why in (("0.3,0.6", "needs three numbers S,N,M, got '0.3,0.6'"),
                     ("0.3,0.6,1.2", "must be a finite number in [0, 1], got 1.2")):  # fmt: skip
        with pytest.raises(SystemExit):
            parser.parse_args(["--input", "i.mha", "--out", "r.npz", "--thresholds", bad])
        assert f"argument --thresholds: {why}" in capsys.readouterr().err


def test_the_panel_offers_the_engine_devices():
    hints = typing.get_type_hints(LungNoduleCADParameters, include_extras=True)
    (choice,) = hints["device"].__metadata__
    assert choice.choices == DEVICES == ("auto", "cpu", "cuda")
    assert LungNoduleCADParameters.device == "auto"
