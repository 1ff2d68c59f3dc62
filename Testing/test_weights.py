"""Weights format: safetensors + model card, checked loading, explicit checkpoint import."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from lungcad.errors import LungCADError
from lungcad.models import (
    CandidateClassifier,
    ModelCard,
    SegmentationUNet,
    Task,
    WeightsArchitectureError,
    WeightsCardError,
    WeightsChecksumError,
    WeightsExistsError,
    WeightsFormatError,
    WeightsNotFoundError,
    WeightsTaskError,
    import_checkpoint,
    load_weights,
    read_card,
    save_weights,
    weights_paths,
)

CREATED = "2024-05-01T12:00:00+00:00"


def _card(task: Task = Task.SEGMENTATION, **overrides: object) -> ModelCard:
    fields: dict[str, object] = {
        "task": task,
        "trained_on": "synthetic phantoms, seed 4, 4 cases",
        "command": "python -m lungcad_training.segmentation --epochs 1",
        "created": CREATED,
        "input_spec": {"channels": 7, "context_slices": 3, "hu_window": [-1000, 1000]},
        "validation_metrics": {"recall": 0.8, "precision": 0.25},
    }
    fields.update(overrides)
    return ModelCard(**fields)  # type: ignore[arg-type]


def _trained_unet() -> SegmentationUNet:
    """A UNet whose batch-norm running stats and counters differ from fresh ones."""
    torch.manual_seed(1)
    model = SegmentationUNet().train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 7, 24, 20) * 200 + 50)
    return model.eval()


@pytest.fixture
def saved_unet(tmp_path: Path) -> tuple[SegmentationUNet, Path, Path]:
    model = _trained_unet()
    st_path, card_path = save_weights(model, _card(), tmp_path / "segmentation")
    return model, st_path, card_path


def _edit_card(card_path: Path, **changes: object) -> None:
    data = json.loads(card_path.read_text(encoding="utf-8"))
    data.update(changes)
    card_path.write_text(json.dumps(data))


def test_round_trip_is_bit_exact(saved_unet: tuple[SegmentationUNet, Path, Path]) -> None:
    model, st_path, card_path = saved_unet
    assert st_path.name == "segmentation.safetensors" and card_path.name == "segmentation.json"
    loaded, card = load_weights(st_path, expected_task=Task.SEGMENTATION)
    assert isinstance(loaded, SegmentationUNet) and not loaded.training
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key, tensor in original.items():
        assert torch.equal(tensor, restored[key]), key
        assert tensor.dtype == restored[key].dtype, key
    assert int(restored["input_batchnorm.num_batches_tracked"]) == 2
    x = torch.randn(1, 7, 19, 23) * 300
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert card.sha256 == hashlib.sha256(st_path.read_bytes()).hexdigest()
    assert card.parameter_count == 118_271
    assert card.architecture == "SegmentationUNet"
    assert card.hyperparameters == model.hyperparameters
    assert card.validation_metrics == {"recall": 0.8, "precision": 0.25}
    assert card.created == CREATED
    assert card.torch_version == torch.__version__
    assert card.lungcad_version
    assert read_card(card_path) == card
    assert json.loads(card_path.read_text(encoding="utf-8"))["task"] == "segmentation"


def test_classifier_round_trip_and_path_forms(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = CandidateClassifier().eval()
    save_weights(model, _card(Task.MALIGNANCY), tmp_path / "malignancy.safetensors")
    for form in ("malignancy", "malignancy.json", "malignancy.safetensors"):
        loaded, card = load_weights(tmp_path / form, expected_task=Task.MALIGNANCY)
        assert card.hyperparameters["input_shape"] == [32, 48, 48]
        x = torch.randn(2, 1, 32, 48, 48)
        with torch.no_grad():
            assert torch.equal(model(x)[0], loaded(x)[0])


def test_export_is_reproducible(tmp_path: Path) -> None:
    model = _trained_unet()
    first = save_weights(model, _card(), tmp_path / "a")
    for i in range(4):  # several times: a hash-ordered map in the file would show up here
        again = save_weights(model, _card(), tmp_path / f"b{i}")
        assert again[0].read_bytes() == first[0].read_bytes()
        assert again[1].read_bytes() == first[1].read_bytes()


def test_flipped_byte_is_refused(saved_unet: tuple[SegmentationUNet, Path, Path]) -> None:
    _, st_path, _ = saved_unet
    data = bytearray(st_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    st_path.write_bytes(bytes(data))
    with pytest.raises(WeightsChecksumError, match="SHA-256") as info:
        load_weights(st_path)
    assert info.value.path == st_path
    assert "segmentation.safetensors" in str(info.value)


def test_truncated_file_is_refused(saved_unet: tuple[SegmentationUNet, Path, Path]) -> None:
    _, st_path, _ = saved_unet
    st_path.write_bytes(st_path.read_bytes()[:-1000])
    with pytest.raises(WeightsChecksumError, match="truncated"):
        load_weights(st_path)


def test_hyperparameters_that_do_not_fit_the_tensors(
    saved_unet: tuple[SegmentationUNet, Path, Path],
) -> None:
    _, st_path, card_path = saved_unet
    hp = {
        **json.loads(card_path.read_text(encoding="utf-8"))["hyperparameters"],
        "first_filters": 8,
    }
    _edit_card(card_path, hyperparameters=hp)
    with pytest.raises(WeightsArchitectureError, match="shape mismatch") as info:
        load_weights(st_path)
    message = str(info.value)
    assert "(16, 7, 3, 3) in the file but (8, 7, 3, 3)" in message
    assert "first_filters=8" in message


def test_missing_and_unexpected_keys_are_named(
    saved_unet: tuple[SegmentationUNet, Path, Path],
) -> None:
    _, st_path, card_path = saved_unet
    hp = json.loads(card_path.read_text(encoding="utf-8"))["hyperparameters"]
    _edit_card(card_path, hyperparameters={**hp, "batch_norm": False})
    with pytest.raises(WeightsArchitectureError, match="unexpected keys"):
        load_weights(st_path)
    _edit_card(card_path, hyperparameters={**hp, "depth": 4})
    with pytest.raises(WeightsArchitectureError, match="missing keys"):
        load_weights(st_path)


def test_unknown_architecture_and_bad_kwargs(
    saved_unet: tuple[SegmentationUNet, Path, Path],
) -> None:
    _, st_path, card_path = saved_unet
    _edit_card(card_path, architecture="os.system")
    with pytest.raises(WeightsArchitectureError, match=r"unknown architecture 'os\.system'"):
        load_weights(st_path)
    _edit_card(card_path, architecture="CandidateClassifier")
    with pytest.raises(WeightsArchitectureError, match="does not do the segmentation task"):
        load_weights(st_path)
    _edit_card(card_path, architecture="SegmentationUNet", hyperparameters={"filters": 3})
    with pytest.raises(WeightsArchitectureError, match="cannot build"):
        load_weights(st_path)


def test_wrong_task_is_refused(saved_unet: tuple[SegmentationUNet, Path, Path]) -> None:
    _, st_path, _ = saved_unet
    with pytest.raises(WeightsTaskError, match="segmentation task, expected nodule"):
        load_weights(st_path, expected_task=Task.NODULE)


def test_missing_files(tmp_path: Path, saved_unet: tuple[SegmentationUNet, Path, Path]) -> None:
    with pytest.raises(WeightsNotFoundError, match="model card not found") as info:
        load_weights(tmp_path / "nothing.safetensors")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, LungCADError)
    _, st_path, _ = saved_unet
    st_path.unlink()
    with pytest.raises(WeightsNotFoundError, match="weights file not found"):
        load_weights(st_path)


def test_unparsable_cards(saved_unet: tuple[SegmentationUNet, Path, Path]) -> None:
    _, st_path, card_path = saved_unet
    good = card_path.read_text(encoding="utf-8")
    card_path.write_text("{not json")
    with pytest.raises(WeightsCardError, match="not valid JSON"):
        load_weights(st_path)
    data = json.loads(good)
    del data["sha256"], data["trained_on"]
    card_path.write_text(json.dumps(data))
    with pytest.raises(WeightsCardError, match="trained_on"):
        load_weights(st_path)
    _edit_card(card_path, **{**json.loads(good), "task": "triage"})
    with pytest.raises(WeightsCardError, match="unknown task 'triage'"):
        load_weights(st_path)


def test_overwrite_is_refused_unless_asked(tmp_path: Path) -> None:
    model = _trained_unet()
    save_weights(model, _card(), tmp_path / "w")
    with pytest.raises(WeightsExistsError, match="overwrite=True"):
        save_weights(model, _card(), tmp_path / "w")
    st_path, card_path = weights_paths(tmp_path / "w")
    st_path.unlink()  # a lone card still blocks
    with pytest.raises(WeightsExistsError):
        save_weights(model, _card(), tmp_path / "w")
    save_weights(model, _card(trained_on="again"), tmp_path / "w", overwrite=True)
    assert read_card(card_path).trained_on == "again"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.json", "w.safetensors"]


def test_save_refuses_a_card_that_does_not_describe_the_model(tmp_path: Path) -> None:
    model = _trained_unet()
    with pytest.raises(WeightsArchitectureError, match="CandidateClassifier"):
        save_weights(model, _card(architecture="CandidateClassifier"), tmp_path / "a")
    with pytest.raises(WeightsArchitectureError, match="differ"):
        save_weights(model, _card(hyperparameters={"first_filters": 8}), tmp_path / "b")
    with pytest.raises(WeightsArchitectureError, match="nodule task"):
        save_weights(model, _card(Task.NODULE), tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


def test_model_card_validation_and_dict_round_trip() -> None:
    card = _card(Task.NODULE, sha256="ab", parameter_count=3)
    assert ModelCard.from_dict(card.to_dict()) == card
    assert ModelCard.from_dict(json.loads(json.dumps(card.to_dict()))).task is Task.NODULE
    with pytest.raises(ValueError, match="ISO 8601"):
        _card(created="yesterday")
    with pytest.raises(ValueError, match="finite"):
        _card(validation_metrics={"auc": float("nan")})
    with pytest.raises(ValueError, match="schema_version"):
        ModelCard.from_dict({**card.to_dict(), "schema_version": 99})


def test_load_never_unpickles(
    saved_unet: tuple[SegmentationUNet, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, st_path, _ = saved_unet

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load on the load path")

    monkeypatch.setattr(torch, "load", forbidden)
    model, _ = load_weights(st_path)
    assert isinstance(model, SegmentationUNet)


def test_import_plain_state_dict(tmp_path: Path) -> None:
    model = _trained_unet()
    pt_path = tmp_path / "external.pt"
    torch.save(model.state_dict(), pt_path)
    st_path, _ = import_checkpoint(
        pt_path,
        Task.SEGMENTATION,
        model.hyperparameters,
        tmp_path / "imported",
        trained_on="someone else's LUNA16 run",
        created=CREATED,
    )
    loaded, card = load_weights(st_path, expected_task=Task.SEGMENTATION)
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[key]), key
    assert "external.pt" in card.command
    assert card.trained_on == "someone else's LUNA16 run"


def test_import_seeds_style_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = CandidateClassifier()
    wrapped = {f"module.{k}": v for k, v in model.state_dict().items()}
    pt_path = tmp_path / "seeds.state"
    torch.save(
        {"sys_argv": ["training.py", "--epochs", "5"], "epoch": 5, "model_state": wrapped}, pt_path
    )
    import_checkpoint(
        pt_path,
        Task.NODULE,
        model.hyperparameters,
        tmp_path / "nodule",
        trained_on="LUNA16 subsets 0-8",
        created=CREATED,
    )
    loaded, card = load_weights(tmp_path / "nodule", expected_task=Task.NODULE)
    x = torch.randn(1, 1, 32, 48, 48)
    with torch.no_grad():
        assert torch.equal(model.eval()(x)[1], loaded(x)[1])
    assert "training.py --epochs 5" in card.command


class _Payload:
    """Not on torch's weights-only allow-list: loading it would need full unpickling."""


def test_import_refuses_pickled_objects_and_bad_checkpoints(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"model_state": _Payload()}, evil)
    with pytest.raises(WeightsFormatError, match="weights-only"):
        import_checkpoint(evil, Task.NODULE, {}, tmp_path / "x", trained_on="?", created=CREATED)
    with pytest.raises(WeightsNotFoundError):
        import_checkpoint(
            tmp_path / "none.pt", Task.NODULE, {}, tmp_path / "x", trained_on="?", created=CREATED
        )
    small = tmp_path / "small.pt"
    torch.save(nn.Linear(2, 2).state_dict(), small)
    with pytest.raises(WeightsArchitectureError, match="missing keys"):
        import_checkpoint(small, Task.NODULE, {}, tmp_path / "x", trained_on="?", created=CREATED)
    assert not (tmp_path / "x.json").exists()
