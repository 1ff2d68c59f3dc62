"""The trainers on tiny phantoms: losses, metrics, logs, best epoch, resume and fine-tuning."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from lungcad.models import CandidateClassifier, ModelCard, Task, save_weights
from lungcad_training.checkpoint import load_checkpoint
from lungcad_training.config import TrainConfig
from lungcad_training.engine import fit, make_recipe, make_scaler, train_step
from lungcad_training.errors import TrainingError
from lungcad_training.finetune import finetune_model
from lungcad_training.losses import batch_dice_loss, dice_loss, segmentation_loss
from lungcad_training.metrics import Tally
from lungcad_training.optim import make_optimizer

SPACING = (2.0, 2.0, 2.5)  # a coarse grid keeps the CPU runs short
CROP = (16, 24, 24)
CPU = torch.device("cpu")


def _config(task: str, data: Path, out: Path, cache: Path, **changes: object) -> TrainConfig:
    settings: dict[str, object] = {
        "cache": cache,
        "epochs": 2,
        "epoch_length": 16,
        "batch_size": 8,
        "device": "cpu",
        "workers": 0,
        "val_stride": 2,
        "spacing": SPACING,
        "crop_size": CROP,
        "seg_crop": 32,
        "val_negative_slices": 2,
        "progress": False,
        "command": f"lungcad-train {task} (test)",
    }
    settings.update(changes)
    return TrainConfig(task=Task(task), data=data, out=out, **settings)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _value(text: str) -> float:
    return float("-inf") if text == "" else float(text)


# ---------------------------------------------------------------------------- losses, metrics


def test_dice_losses() -> None:
    label = torch.zeros(2, 1, 8, 8)
    label[:, :, 2:6, 2:6] = 1
    assert torch.allclose(dice_loss(label, label), torch.zeros(2))
    everything = torch.ones_like(label)
    # predicting everything misses nothing: the false-negative term is 0, plain Dice is not
    assert dice_loss(everything * label, label).abs().max() < 1e-6
    assert (dice_loss(everything, label) > 0.5).all()
    assert torch.allclose(
        segmentation_loss(everything, label), dice_loss(everything, label), atol=1e-6
    )
    nothing = torch.zeros_like(label)
    assert torch.allclose(segmentation_loss(nothing, label), 9 * dice_loss(nothing, label))


def test_batch_dice_keeps_pushing_false_positives_in_empty_crops_down() -> None:
    """Per-sample Dice of an empty crop saturates (no gradient); the batch's does not."""
    label = torch.zeros(2, 1, 16, 16)
    label[0, :, 4:12, 4:12] = 1  # one nodule crop (64 px), one empty crop
    prediction = label.clone()
    prediction[1] = 0.9  # the empty crop: 230 false-positive "pixels"
    prediction.requires_grad_(True)
    per_sample = segmentation_loss(prediction, label).mean()
    (grad_sample,) = torch.autograd.grad(per_sample, prediction)
    batch = segmentation_loss(prediction, label, over_batch=True).mean()
    (grad_batch,) = torch.autograd.grad(batch, prediction)
    # exact values: 1 - 1 / (1 + 230.4) per sample; 1 - 129 / (64 + 230.4 + 64 + 1) over the batch
    assert float(dice_loss(prediction[1:].detach(), label[1:])) == pytest.approx(
        1 - 1 / 231.4, rel=1e-5
    )
    assert float(batch_dice_loss(prediction.detach(), label)) == pytest.approx(
        1 - 129 / 359.4, rel=1e-5
    )
    assert float(grad_batch[1].mean()) > 20 * float(grad_sample[1].mean()) > 0
    # the false-negative term stays per sample: the same in both
    assert torch.allclose(
        segmentation_loss(prediction, label, over_batch=True) - batch_dice_loss(prediction, label),
        segmentation_loss(prediction, label) - dice_loss(prediction, label),
    )


def test_malignancy_augmentation_keeps_the_size() -> None:
    """Scaling would blur the diameter, malignancy's strongest cue; the nodule model keeps it."""
    from lungcad_training.classification import MalignancyRecipe, NoduleRecipe

    assert NoduleRecipe.augmentation.scale and NoduleRecipe.augmentation.scale_range == 0.2
    assert not MalignancyRecipe.augmentation.scale
    others = ("mirror", "shift", "rotate", "noise")
    assert all(getattr(MalignancyRecipe.augmentation, name) for name in others)


def test_tally_definitions() -> None:
    tally = Tally(CPU)
    tally.add_loss(torch.tensor([1.0, 3.0]))
    tally.add_binary(torch.tensor([1, 1, 0, 0, 1]), torch.tensor([1, 0, 1, 0, 1]))
    tally.add_big_nodules(torch.tensor([1, 0, 1]), torch.tensor([1, 1, 0]))
    tally.add_scores(
        torch.tensor([0.9, 0.1, 0.6]), torch.tensor([1, 0, 0]), torch.tensor([9, 3, 12])
    )
    m = tally.summary(("recall_5mm", "auc", "diameter_auc"))
    assert m["loss"] == 2.0
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["recall_5mm"] == 0.5
    assert m["auc"] == 1.0 and m["diameter_auc"] == 0.5
    empty = Tally(CPU).summary(("auc",))
    assert empty["precision"] == 0.0 and empty["recall"] is None and empty["auc"] is None


# ---------------------------------------------------------------------------- training loss falls


@pytest.mark.parametrize(
    ("task", "batch_size"), [("segmentation", 8), ("nodule", 16), ("malignancy", 12)]
)
def test_training_loss_falls(
    task: str, batch_size: int, small_dataset: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """Fit one fixed, unaugmented batch with the task's default optimiser: the loss must fall.

    The segmentation batch holds nodule crops only: a batch of background crops alone has a
    Dice loss of ~1 that no prediction can lower much (nothing to overlap).
    """
    no_background = {"seg_background_ratio": 0.0, "seg_region_ratio": 0.0, "seg_dense_ratio": 0.0}
    extra = no_background if task == "segmentation" else {}
    cfg = _config(task, small_dataset, tmp_path, cache_dir, augment=False, **extra)
    recipe = make_recipe(cfg)
    train, _ = recipe.datasets(progress=False)
    batch = default_collate([train[i] for i in range(batch_size)])
    torch.manual_seed(0)
    model = recipe.build_model()
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum)
    scaler = make_scaler(CPU, None)
    losses = [train_step(model, recipe, batch, optimizer, scaler, CPU).item() for _ in range(20)]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.8 * first, losses


# ---------------------------------------------------------------------------- fit: logs, best


def _best_epoch(rows: list[dict[str, str]], keys: tuple[str, ...]) -> int:
    best_epoch, best_score = 0, None
    for row in rows:
        if row["phase"] != "val":
            continue
        score = tuple(_value(row[k]) for k in keys)
        if best_score is None or score > best_score:
            best_epoch, best_score = int(row["epoch"]), score
    return best_epoch


@pytest.mark.parametrize(
    ("task", "keys", "extras"),
    [
        ("segmentation", ("recall", "f1"), ["recall_5mm"]),
        ("nodule", ("f1",), []),
        ("malignancy", ("auc",), ["auc", "diameter_auc"]),
    ],
)
def test_fit_logs_metrics_and_keeps_the_best_epoch(
    task: str,
    keys: tuple[str, ...],
    extras: list[str],
    small_dataset: Path,
    cache_dir: Path,
    tmp_path: Path,
) -> None:
    epochs = 3
    result = fit(_config(task, small_dataset, tmp_path, cache_dir, epochs=epochs))

    rows = _rows(tmp_path / task / "metrics.csv")
    assert list(rows[0]) == ["epoch", "phase", "loss", "precision", "recall", "f1", *extras]
    assert [(int(r["epoch"]), r["phase"]) for r in rows] == [
        (e, p) for e in range(1, epochs + 1) for p in ("train", "val")
    ]
    for row in rows:
        assert float(row["loss"]) >= 0 and 0 <= float(row["precision"]) <= 1
    for phase in ("train", "val"):
        assert list((tmp_path / "runs" / task / phase).glob("events.out.tfevents.*"))
    if task == "malignancy":
        assert all(r["diameter_auc"] for r in rows if r["phase"] == "val")

    last = load_checkpoint(tmp_path / task / "last.pt")
    best = load_checkpoint(tmp_path / task / "best.pt")
    assert last["epoch"] == epochs and last["task"] == task
    expected = _best_epoch(rows, keys)
    assert best["epoch"] == expected == result.best_epoch == last["best"]["epoch"]
    assert best["metrics"]["val"] == result.best_metrics
    assert set(last) >= {"model_state", "optimizer_state", "rng", "args", "commands", "created"}
    assert last["args"]["task"] == task and last["args"]["epochs"] == epochs


def test_selection_metrics(small_dataset: Path, tmp_path: Path) -> None:
    """>= 5 mm recall up to its target, then F1 (segmentation), F1 (nodule), AUC (malignancy);
    a missing value loses."""

    def score(task: str, **metrics: float | None) -> tuple[float, ...]:
        return make_recipe(_config(task, small_dataset, tmp_path, tmp_path)).score(metrics)

    def seg(recall_5mm: float, f1: float) -> tuple[float, ...]:
        return score("segmentation", recall_5mm=recall_5mm, f1=f1, recall=0.5)

    assert seg(0.9, 0.1) > seg(0.8, 0.9)  # below the 0.9 target, recall decides
    assert seg(0.85, 0.1) > seg(0.8, 0.9)
    assert seg(0.9, 0.2) > seg(1.0, 0.1)  # both reach the target: F1 decides
    assert seg(0.95, 0.2) == seg(0.9, 0.2)
    assert seg(0.0, 0.0) > score("segmentation", recall_5mm=None, f1=0.9)
    assert score("nodule", f1=0.5, recall=0.1) > score("nodule", f1=0.4, recall=1.0)
    assert score("malignancy", auc=0.7, f1=0.0) > score("malignancy", auc=0.6, f1=1.0)
    assert score("malignancy", auc=0.0) > score("malignancy", auc=None)


def test_segmentation_recall_5mm_counts_big_nodules(
    small_dataset: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """A model that flags every pixel has recall 1, and recall_5mm 1 when big nodules exist."""
    cfg = _config("segmentation", small_dataset, tmp_path, cache_dir)
    recipe = make_recipe(cfg)
    _, val = recipe.datasets(progress=False)
    view = recipe.validation_view(val)
    tally = Tally(CPU)

    class Everything(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ones_like(x[:, :1])

    big_pixels = 0
    for indices in recipe.validation_batches(view, 4):
        batch = default_collate([view[i] for i in indices])
        big_pixels += int(batch[2].sum())
        assert batch[2].sum() <= batch[1].sum()  # big-nodule pixels are label pixels
        recipe.validate_batch(Everything(), batch, CPU, tally)
    metrics = tally.summary(recipe.extras)
    assert metrics["recall"] == 1.0
    assert big_pixels > 0 and metrics["recall_5mm"] == 1.0


# ---------------------------------------------------------------------------- resume, overwrite


def test_resume_continues_exactly(small_dataset: Path, cache_dir: Path, tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    fit(_config("nodule", small_dataset, straight, cache_dir, epochs=3))
    fit(_config("nodule", small_dataset, split, cache_dir, epochs=1))
    assert load_checkpoint(split / "nodule" / "last.pt")["epoch"] == 1
    resumed = fit(_config("nodule", small_dataset, split, cache_dir, epochs=3, resume=True))

    a = load_checkpoint(straight / "nodule" / "last.pt")
    b = load_checkpoint(split / "nodule" / "last.pt")
    assert b["epoch"] == 3 and resumed.epochs_done == 3
    for key, tensor in a["model_state"].items():
        assert torch.equal(tensor, b["model_state"][key]), key
    for key, state in a["optimizer_state"]["state"].items():
        for name, value in state.items():  # Adam's step and both moments
            assert torch.equal(value, b["optimizer_state"]["state"][key][name]), (key, name)
    assert len(b["commands"]) == 2
    rows = _rows(split / "nodule" / "metrics.csv")
    assert [(int(r["epoch"]), r["phase"]) for r in rows] == [
        (e, p) for e in (1, 2, 3) for p in ("train", "val")
    ]
    assert rows == _rows(straight / "nodule" / "metrics.csv")


def test_an_existing_run_is_not_overwritten_silently(
    small_dataset: Path, cache_dir: Path, tmp_path: Path
) -> None:
    cfg = _config("nodule", small_dataset, tmp_path, cache_dir, epochs=1)
    fit(cfg)
    with pytest.raises(TrainingError, match="--resume"):
        fit(cfg)
    fit(cfg.replace(overwrite=True))
    assert [r["epoch"] for r in _rows(tmp_path / "nodule" / "metrics.csv")] == ["1", "1"]


# ---------------------------------------------------------------------------- fine-tuning


def _nodule_weights(path: Path) -> CandidateClassifier:
    torch.manual_seed(7)
    model = CandidateClassifier(input_shape=CROP)
    card = ModelCard(task=Task.NODULE, trained_on="test", command="test", created="2025-01-01")
    save_weights(model, card, path)
    return model


@pytest.mark.parametrize(
    ("depth", "trained"), [(1, {"head_linear"}), (2, {"head_linear", "block4"})]
)
def test_finetune_trains_only_the_last_blocks(
    depth: int, trained: set[str], small_dataset: Path, cache_dir: Path, tmp_path: Path
) -> None:
    source = _nodule_weights(tmp_path / "nodule")
    cfg = _config(
        "malignancy",
        small_dataset,
        tmp_path / "run",
        cache_dir,
        epochs=1,
        crop_size=None,
        finetune=tmp_path / "nodule.safetensors",
        finetune_depth=depth,
    )
    result = fit(cfg)
    after = result.model.state_dict()
    before = source.state_dict()
    for key, tensor in before.items():
        block = key.split(".")[0]
        if block in trained:
            assert not torch.equal(tensor, after[key]), f"{key} should have trained"
        else:  # parameters and batch-norm statistics of frozen blocks stay the nodule model's
            assert torch.equal(tensor, after[key]), f"{key} should be frozen"
    frozen = load_checkpoint(tmp_path / "run" / "malignancy" / "last.pt")["frozen"]
    assert {k.split(".")[0] for k in frozen} == {
        "tail_batchnorm",
        "block1",
        "block2",
        "block3",
        "block4",
    } - trained


def test_finetune_reinitialises_the_head_and_checks_depth() -> None:
    torch.manual_seed(3)
    source = CandidateClassifier(input_shape=CROP)
    model, frozen = finetune_model(source, 1)
    assert not torch.equal(model.head_linear.weight, source.head_linear.weight)
    assert torch.equal(model.block4.conv2.weight, source.block4.conv2.weight)
    assert frozen == ["tail_batchnorm", "block1", "block2", "block3", "block4"]
    with pytest.raises(TrainingError, match="between 1 and 6"):
        finetune_model(source, 7)


def test_finetune_from_a_checkpoint(small_dataset: Path, cache_dir: Path, tmp_path: Path) -> None:
    fit(_config("nodule", small_dataset, tmp_path, cache_dir, epochs=1))
    nodule = load_checkpoint(tmp_path / "nodule" / "best.pt")
    result = fit(
        _config(
            "malignancy",
            small_dataset,
            tmp_path,
            cache_dir,
            epochs=1,
            crop_size=None,
            finetune=tmp_path / "nodule" / "best.pt",
            finetune_depth=1,
        )
    )
    after = result.model.state_dict()
    assert torch.equal(after["block1.conv1.weight"], nodule["model_state"]["block1.conv1.weight"])
    with pytest.raises(TrainingError, match="nodule classifier"):
        fit(
            _config(
                "malignancy",
                small_dataset,
                tmp_path / "again",
                cache_dir,
                crop_size=None,
                finetune=tmp_path / "malignancy" / "best.pt",
            )
        )
    shutil.rmtree(tmp_path / "again", ignore_errors=True)
