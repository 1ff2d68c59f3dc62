"""``lungcad-train``: the whole job on a tiny phantom set, and one-line errors with status 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lungcad.models import Task, load_weights
from lungcad_training.cli import build_parser, main

TINY = [
    "--epochs", "1", "--epoch-length", "16", "--batch-size", "4", "--val-stride", "2",
    "--spacing", "2", "2", "2.5", "--device", "cpu", "--quiet",
]  # fmt: skip


def test_all_trains_and_exports_three_models(
    small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["all", "--data", str(small_dataset), "--out", str(out), *TINY]
    argv += ["--crop-size", "16", "24", "24", "--workers", "1"]
    argv += ["--malignancy-finetune", "--finetune-depth", "1"]
    assert main(argv) == 0
    summary = capsys.readouterr().out
    for task in Task:
        _, card = load_weights(out / "models" / f"{task.value}.safetensors", task)
        assert card.command.startswith("lungcad-train all --data")
        assert card.validation_metrics and task.value in summary
        assert (out / task.value / "metrics.csv").is_file()
        assert (out / "runs" / task.value / "val").is_dir()
    assert "recall_5mm" in summary and "diameter_auc" in summary
    mined = out / "mined_candidates.csv"  # the new UNet's own candidates, for the nodule net
    assert mined.read_text(encoding="utf-8").startswith("seriesuid,coordX,coordY,coordZ,class\n")
    _, nodule = load_weights(out / "models" / "nodule.safetensors", Task.NODULE)
    assert f"candidates.csv and {mined}" in nodule.trained_on
    _, malignancy = load_weights(out / "models" / "malignancy.safetensors", Task.MALIGNANCY)
    assert "Fine-tuned from" in malignancy.trained_on and "nodule/best.pt" in malignancy.trained_on

    assert main(argv) == 2  # a second run into the same folder must say --resume or --overwrite
    assert "--resume" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0  # nothing left to train: re-exports the same models


def test_bad_paths_are_one_line_errors(
    small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing"
    assert main(["nodule", "--data", str(missing), "--out", str(tmp_path / "o"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lungcad-train: error:") and "missing" in err[0]

    data = tmp_path / "no-candidates"
    shutil.copytree(small_dataset, data, ignore=shutil.ignore_patterns("*.raw", "*.mhd", "*.nrrd"))
    (data / "candidates.csv").unlink()
    assert main(["segmentation", "--data", str(data), "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "candidates.csv" in capsys.readouterr().err

    finetune = ["--finetune", str(tmp_path / "nodule.safetensors")]
    out = ["--out", str(tmp_path / "o")]
    assert main(["malignancy", "--data", str(small_dataset), *out, *TINY, *finetune]) == 2
    assert "nodule.json" in capsys.readouterr().err  # the card it looked for


def test_parser_defaults_and_flags() -> None:
    parser = build_parser()
    args = parser.parse_args(["nodule", "--data", "d", "--out", "o"])
    assert (args.device, args.workers, args.val_stride, args.seed, args.ratio) == (
        "auto", 2, 10, 0, 1,
    )  # fmt: skip
    assert args.epochs is None and args.lr is None  # the task's defaults apply
    args = parser.parse_args(["malignancy", "--data", "d", "--out", "o", "--finetune", "n.pt"])
    assert args.finetune == Path("n.pt") and args.finetune_depth == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["nodule", "--data", "d", "--out", "o", "--val-stride", "1"])
    with pytest.raises(SystemExit):
        parser.parse_args(["segmentation", "--data", "d", "--out", "o", "--resume", "--overwrite"])


@pytest.mark.parametrize(("finetune", "mine"), [(False, True), (True, False)])
def test_all_follows_the_recipe_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, finetune: bool, mine: bool
) -> None:
    import lungcad_training.cli as cli
    import lungcad_training.engine as engine
    import lungcad_training.export as export

    configs = {}
    mined = tmp_path / "out" / "mined_candidates.csv"

    def fake_fit(cfg, runtime):  # records what `all` asks for, trains nothing
        configs[cfg.task] = cfg
        best = cfg.out / cfg.task.value / "best.pt"
        return engine.FitResult(cfg.task, None, 1, 1, {"f1": 0.5}, best, best, 0.0)

    def fake_mine(args, unet, command, runtime):
        assert unet == tmp_path / "out" / "segmentation" / "best.pt"
        return mined

    monkeypatch.setattr(engine, "check_data_dir", lambda data: None)
    monkeypatch.setattr(engine, "fit", fake_fit)
    monkeypatch.setattr(export, "export_checkpoint", lambda *a, **k: (tmp_path / "w", None))
    monkeypatch.setattr(cli, "_mine_for_all", fake_mine)
    argv = ["all", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--quiet"]
    argv += ["--malignancy-finetune"] if finetune else []
    argv += [] if mine else ["--no-mine"]
    assert main(argv) == 0
    assert list(configs) == [Task.SEGMENTATION, Task.NODULE, Task.MALIGNANCY]
    nodule_best = tmp_path / "out" / "nodule" / "best.pt"
    assert configs[Task.MALIGNANCY].finetune == (nodule_best if finetune else None)
    assert configs[Task.NODULE].extra_candidates == (mined if mine else None)
    assert configs[Task.SEGMENTATION].extra_candidates is None
    # the defaults are the bundled recipe
    assert (configs[Task.SEGMENTATION].epochs, configs[Task.SEGMENTATION].epoch_length) == (
        12,
        8192,
    )
    assert (configs[Task.MALIGNANCY].epochs, configs[Task.MALIGNANCY].epoch_length) == (8, 1024)
