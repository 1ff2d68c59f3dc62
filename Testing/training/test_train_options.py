"""``lungcad-train``'s options come from TrainConfig's fields: the parser's defaults are the
dataclass's, every field a user may set has an option, and the enums (device, AMP mode,
optimizer) parse, check and go into checkpoints as the strings old checkpoints hold."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from lungcad.devices import Device
from lungcad.models import Task
from lungcad_training.checkpoint import load_checkpoint, save_checkpoint
from lungcad_training.cli import build_parser
from lungcad_training.cli_parser import config_from_args
from lungcad_training.config import DEFAULTS, TrainConfig
from lungcad_training.optim import Optimizer
from lungcad_training.runtime import AmpMode

TRAIN = ["segmentation", "nodule", "malignancy", "all"]
REQUIRED = {
    **{c: ["--data", "d", "--out", "o"] for c in TRAIN},
    "mine": ["--data", "d", "--models", "w", "--out", "o.csv", "--cache", "c"],
    "calibrate": ["--weights", "w", "--data", "d", "--cache", "c", "--out", "o"],
}
#: Fields no option sets: what the run is, and how it was started.
NOT_OPTIONS = {"task", "command"}
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def field_actions(command: str) -> dict[str, argparse.Action]:
    actions = subparser(command)._actions
    return {a.dest: a for a in actions if a.dest in FIELDS and a.dest not in NOT_OPTIONS}


def dataclass_default(name: str):
    field = FIELDS[name]
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()


@pytest.mark.parametrize("command", [*TRAIN, "mine", "calibrate"])
def test_every_option_that_fills_a_field_defaults_to_the_dataclass_default(command):
    actions = field_actions(command)
    assert actions  # each command sets some fields
    for name, action in actions.items():
        if action.required:
            continue
        assert action.default == dataclass_default(name), (command, name)


def test_every_field_a_user_may_set_has_an_option():
    reachable = set()
    for command in TRAIN:
        reachable |= set(field_actions(command))
    assert reachable == set(FIELDS) - NOT_OPTIONS


@pytest.mark.parametrize("task", [Task.SEGMENTATION, Task.NODULE, Task.MALIGNANCY])
def test_no_options_give_the_dataclass_config(task):
    args = build_parser().parse_args([task.value, *REQUIRED[task.value]])
    built = config_from_args(args, task, "cmd")
    assert built == TrainConfig(task=task, data=Path("d"), out=Path("o"), command="cmd")
    assert (built.epochs, built.optimizer, built.lr) == (
        DEFAULTS[task].epochs,
        DEFAULTS[task].optimizer,
        DEFAULTS[task].lr,
    )


def test_options_reach_their_fields():
    argv = ["segmentation", *REQUIRED["segmentation"], "--crop", "48", "--background-ratio"]
    argv += ["0.5", "--no-augment", "--quiet", "--amp", "bf16", "--optimizer", "sgd"]
    argv += ["--device", "cpu", "--spacing", "1", "1", "2", "--recall-target", "0.8"]
    cfg = config_from_args(build_parser().parse_args(argv), Task.SEGMENTATION, "cmd")
    assert (cfg.seg_crop, cfg.seg_background_ratio, cfg.augment, cfg.progress) == (
        48,
        0.5,
        False,
        False,
    )
    assert (cfg.amp, cfg.optimizer, cfg.device) == (AmpMode.BF16, Optimizer.SGD, Device.CPU)
    assert (cfg.spacing, cfg.seg_recall_target) == ((1.0, 1.0, 2.0), 0.8)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--amp", "fp8"],
            "argument --amp: invalid choice: 'fp8' (choose from auto, off, fp16, bf16)",
        ),
        (
            ["--optimizer", "lbfgs"],
            "argument --optimizer: invalid choice: 'lbfgs' (choose from adam, sgd)",
        ),
        (
            ["--device", "tpu"],
            "argument --device: invalid choice: 'tpu' (choose from auto, cpu, cuda)",
        ),
        (["--val-stride", "1"], "argument --val-stride: must be an integer at least 2, got 1"),
        (["--workers", "-1"], "argument --workers: must be an integer at least 0, got -1"),
        (["--lr", "0"], "argument --lr: must be a finite number in (0, inf), got 0"),
        (["--momentum", "1.5"], "argument --momentum: must be a finite number in [0, 1], got 1.5"),
    ],
)
def test_bad_values_are_usage_errors_with_the_allowed_values(extra, message, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["nodule", *REQUIRED["nodule"], *extra])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(message)


def test_mine_takes_models_and_the_old_spelling_weights(capsys):
    args = build_parser().parse_args(["mine", *REQUIRED["mine"]])
    assert args.models == Path("w") and args.threshold == 0.5 and args.progress is True
    old = ["mine", "--data", "d", "--weights", "w2", "--out", "o.csv", "--cache", "c"]
    assert build_parser().parse_args(old).models == Path("w2")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["mine", *REQUIRED["mine"], "--threshold", "2"])
    assert "--threshold: must be a finite number in (0, 1], got 2" in capsys.readouterr().err


def test_the_output_option_takes_its_old_spelling_too():
    argv = ["export", "--checkpoint", "c.pt", "--output", "w.safetensors"]
    assert build_parser().parse_args(argv).out == Path("w.safetensors")


def test_enums_go_into_checkpoints_as_strings_and_old_checkpoints_read_back(tmp_path):
    cfg = TrainConfig(
        task=Task.NODULE, data="d", out="o", amp=AmpMode.OFF, optimizer=Optimizer.SGD,
        device=Device.CPU, command="cmd",
    )  # fmt: skip
    stored = cfg.to_dict()
    assert (stored["task"], stored["amp"], stored["optimizer"], stored["device"]) == (
        "nodule",
        "off",
        "sgd",
        "cpu",
    )
    assert all(type(stored[k]) is str for k in ("task", "amp", "optimizer", "device"))
    save_checkpoint({"args": stored}, tmp_path / "last.pt")  # weights-only loadable
    assert TrainConfig.from_dict(load_checkpoint(tmp_path / "last.pt")["args"]) == cfg
    # a checkpoint written before the enums: plain strings, read into the same config
    old = {**stored, "amp": "off", "optimizer": "sgd", "device": "cpu"}
    loaded = TrainConfig.from_dict(old)
    assert loaded == cfg and loaded.amp is AmpMode.OFF and loaded.optimizer is Optimizer.SGD
