"""``lungcad-train segmentation --init`` and ``--domain-randomization`` on the tiny phantoms."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lungcad.models import CandidateClassifier, ModelCard, Task, load_weights, save_weights
from lungcad_training.augment import augment_2d
from lungcad_training.checkpoint import load_checkpoint, save_checkpoint
from lungcad_training.cli import build_parser, main
from lungcad_training.config import TrainConfig
from lungcad_training.engine import make_recipe
from lungcad_training.errors import TrainingError
from lungcad_training.export import export_checkpoint
from lungcad_training.metrics import Tally
from lungcad_training.segmentation import SEGMENTATION_AUGMENT

SPACING = ["--spacing", "2", "2", "2.5"]  # the session cache's grid (conftest.CACHE_SPACING)
TINY = [
    "--epochs", "1", "--epoch-length", "8", "--batch-size", "4", "--val-stride", "2",
    "--crop", "32", "--val-negative-slices", "1", "--device", "cpu", "--workers", "0",
    "--quiet", *SPACING,
]  # fmt: skip


def _argv(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["segmentation", "--data", str(data), "--out", str(out), "--cache", str(cache),
            *TINY, *extra]  # fmt: skip


def _config(tmp_path: Path, **changes: object) -> TrainConfig:
    return TrainConfig(task=Task.SEGMENTATION, data=tmp_path, out=tmp_path, seg_crop=32,
                       device="cpu", command="test", **changes)  # fmt: skip


class _Recorder(torch.nn.Module):
    """Stands in for the UNet: keeps what it was fed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.clone()
        return torch.full_like(x[:, :1], 0.5)


def _fed(cfg: TrainConfig, stacks: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    recorder = _Recorder()
    generator = torch.Generator().manual_seed(11)
    make_recipe(cfg).train_loss(recorder, (stacks, masks), torch.device("cpu"), generator,
                                Tally(torch.device("cpu")))  # fmt: skip
    return recorder.seen


def test_domain_randomization_is_off_by_default_and_the_augmentation_unchanged(
    tmp_path: Path,
) -> None:
    """Flag off: the UNet sees exactly SEGMENTATION_AUGMENT's output; on: a different domain."""
    g = torch.Generator().manual_seed(0)
    stacks = torch.randn(4, 7, 32, 32, generator=g) * 300
    masks = (torch.rand(4, 1, 32, 32, generator=g) > 0.8).float()
    args = build_parser().parse_args(["segmentation", "--data", "d", "--out", "o"])
    assert args.domain_randomization is False and args.init is None
    assert _config(tmp_path).domain_randomization is False
    off = _fed(_config(tmp_path), stacks, masks)
    seeds, _ = augment_2d(stacks, masks, SEGMENTATION_AUGMENT, torch.Generator().manual_seed(11))
    assert torch.equal(off, seeds)
    on = _fed(_config(tmp_path, domain_randomization=True), stacks, masks)
    assert on.shape == off.shape and not torch.equal(on, off)
    assert on.min() >= -1000 and on.max() <= 1000


def test_init_starts_from_the_weights_and_records_it(
    small_dataset: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """A tiny run, then a second one from its best.pt: the model built for training is the
    source, it trains, and checkpoint and card record the options."""
    first = tmp_path / "first"
    assert main(_argv(small_dataset, first, cache_dir)) == 0
    best = first / "segmentation" / "best.pt"
    source = load_checkpoint(best)["model_state"]

    second = tmp_path / "second"
    argv = _argv(small_dataset, second, cache_dir, "--init", str(best), "--domain-randomization")
    cfg = TrainConfig(task=Task.SEGMENTATION, data=small_dataset, out=second, init=best,
                      domain_randomization=True, seg_crop=32)  # fmt: skip
    model = make_recipe(cfg).build_model()  # what fit() trains: the source's weights
    assert model.state_dict().keys() == source.keys()
    for key, tensor in source.items():
        assert torch.equal(model.state_dict()[key], tensor), key
    assert all(p.requires_grad for p in model.parameters())

    assert main(argv) == 0
    last = load_checkpoint(second / "segmentation" / "last.pt")
    assert last["args"]["init"] == str(best) and last["args"]["domain_randomization"] is True
    assert last["frozen"] == []
    assert any(not torch.equal(last["model_state"][k], source[k]) for k in source)

    st, _ = export_checkpoint(second / "segmentation" / "best.pt", tmp_path / "m" / "seg")
    _, card = load_weights(st, Task.SEGMENTATION)
    assert f"Started from the weights of {best}." in card.trained_on
    assert "Domain randomisation: slice thickness (averaged over the context slices)" in (
        card.trained_on
    )

    # the same weights as exported .safetensors load too
    model = make_recipe(cfg.replace(init=st)).build_model()
    exported, _ = load_weights(st, Task.SEGMENTATION)
    for key, tensor in exported.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor), key

    # another context width: the channels do not fit
    with pytest.raises(TrainingError, match=r"7 input channels .* this run has 5"):
        make_recipe(cfg.replace(context_slices=2))


def _nodule_safetensors(path: Path) -> Path:
    card = ModelCard(task=Task.NODULE, trained_on="test", command="test", created="2025-01-01")
    st, _ = save_weights(CandidateClassifier(input_shape=(16, 24, 24)), card, path)
    return st


def _nodule_checkpoint(path: Path) -> Path:
    model = CandidateClassifier(input_shape=(16, 24, 24))
    save_checkpoint({"task": "nodule", "architecture": type(model).__name__,
                     "hyperparameters": model.hyperparameters,
                     "model_state": model.state_dict()}, path)  # fmt: skip
    return path


@pytest.mark.parametrize("kind", ["safetensors", "checkpoint", "missing"])
def test_init_refuses_what_is_not_a_unet(
    kind: str, small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if kind == "safetensors":
        weights, why = _nodule_safetensors(tmp_path / "nodule"), "for the nodule task"
    elif kind == "checkpoint":
        weights, why = _nodule_checkpoint(tmp_path / "best.pt"), "a nodule checkpoint"
    else:
        weights, why = tmp_path / "none.pt", "not found"
    with pytest.raises(TrainingError, match=why):
        make_recipe(_config(tmp_path, init=weights))
    out = tmp_path / "out"
    assert main(_argv(small_dataset, out, tmp_path / "cache", "--init", str(weights))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and why in err[0] and weights.stem in err[0]
    if kind != "missing":
        assert "segmentation" in err[0]
    assert not out.exists()  # refused before anything was written or cached
