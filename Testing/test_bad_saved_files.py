"""Crafted weights, model cards and saved detection results: refused cleanly, before any work.

These are files the engine wrote itself and reads back (bundled weights, ``detection.npz``), so
a tampered or odd one (a FIFO, /dev/zero, out-of-range hyperparameters) must fail with the typed
error that names the problem, never by building a huge network or hanging.
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from bad_inputs_support import POSIX

from lungcad.ct import Geometry

# --------------------------------------------------------------------------------------------
# weights and cards


@pytest.fixture
def saved_classifier(tmp_path: Path) -> tuple[Path, Path]:
    from lungcad.models import CandidateClassifier, ModelCard, Task, save_weights

    model = CandidateClassifier(conv_channels=2, n_blocks=2, input_shape=(8, 8, 8))
    card = ModelCard(task=Task.NODULE, trained_on="nothing", command="test", created="2024-01-01")
    return save_weights(model, card, tmp_path / "nodule")


@pytest.mark.parametrize(
    ("change", "match"),
    [({"conv_channels": 30000}, r"conv_channels must be an integer in \[1, 128\]"),
     ({"n_blocks": 40}, r"n_blocks must be an integer in \[1, 6\]"),
     ({"input_shape": [512, 512, 512], "conv_channels": 128, "n_blocks": 1},
      "parameters, more than")],
)  # fmt: skip
def test_card_hyperparameters_out_of_range_are_refused_before_building(
    saved_classifier, change: dict, match: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lungcad.models import WeightsArchitectureError, load_weights
    from lungcad.models import weights as weights_module

    st_path, card_path = saved_classifier
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["hyperparameters"].update(change)
    card_path.write_text(json.dumps(card))  # sha256 still matches the tensors

    def no_build(*args: object) -> None:
        raise AssertionError("a network was built")

    monkeypatch.setattr(weights_module, "build_model", no_build)
    with pytest.raises(WeightsArchitectureError, match=match):
        load_weights(st_path)


def test_unet_depth_40_is_refused() -> None:
    from lungcad.models import SegmentationUNet

    with pytest.raises(ValueError, match=r"depth must be an integer in \[1, 6\]"):
        SegmentationUNet(depth=40)


@pytest.mark.skipif(not POSIX, reason="FIFOs and /dev/zero are POSIX")
def test_a_fifo_card_and_a_dev_zero_weights_file_are_refused_at_once(saved_classifier) -> None:
    from lungcad.models import WeightsCardError, WeightsFormatError, load_weights, read_card

    st_path, card_path = saved_classifier
    outcome: dict[str, BaseException] = {}

    def attempt() -> None:
        try:
            read_card(card_path)
        except BaseException as exc:  # handed to the test thread
            outcome["card"] = exc

    card_path.unlink()
    os.mkfifo(card_path)
    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "reading a FIFO as a model card hung"
    assert isinstance(outcome.get("card"), WeightsCardError)
    assert "pipe" in str(outcome["card"])

    card_path.unlink()
    json_card = {"task": "nodule", "trained_on": "-", "command": "-", "created": "2024-01-01",
                 "architecture": "CandidateClassifier",
                 "hyperparameters": {"conv_channels": 2, "n_blocks": 2, "input_shape": [8, 8, 8]},
                 "sha256": "0" * 64}  # fmt: skip
    card_path.write_text(json.dumps(json_card))
    st_path.unlink()
    st_path.symlink_to("/dev/zero")
    with pytest.raises(WeightsFormatError, match="character device"):
        load_weights(st_path)


# --------------------------------------------------------------------------------------------
# saved detection results


def _saved_result(path: Path) -> Path:
    from lungcad.pipeline import DetectionResult, Thresholds
    from lungcad.pipeline.store import CandidateStore

    canonical = Geometry.from_arrays((0, 0, 0), (0.75, 0.75, 1.25), np.eye(3), (8, 8, 8))
    cube = np.stack(np.meshgrid(*[np.arange(2, 5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    store = CandidateStore(
        canonical=canonical,
        original=canonical,
        floor=0.2,
        p_nodule=np.array([0.9]),
        p_malignant=np.array([0.3]),
        crop_center_irc=np.array([[3, 3, 3]]),
        region_offsets=np.array([0, len(cube)]),
        region_index=np.ravel_multi_index(cube.T, (8, 8, 8)),
        region_prob=np.full(len(cube), 0.8, np.float16),
        region_hu=np.full(len(cube), 40, np.int16),
        nodule_floor=0.1,
    )
    result = DetectionResult.from_store(
        store, Thresholds(), series_uid=None, timings_s={}, model_versions={}
    )
    return result.save(path)


def _rewrite(path: Path, arrays: dict | None = None, meta: dict | None = None) -> None:
    with np.load(path) as npz:
        data = {k: npz[k] for k in npz.files}
    m = json.loads(str(data["meta_json"]))
    m.update(meta or {})
    data.update(arrays or {})
    data["meta_json"] = np.array(json.dumps(m))
    with path.open("wb") as fh:
        np.savez_compressed(fh, **data)


@pytest.mark.parametrize(
    ("arrays", "meta", "match"),
    [({"p_nodule": np.array([7.0])}, None, r"p_nodule must hold probabilities"),
     ({"p_nodule": np.array([np.nan])}, None, r"p_nodule must hold probabilities"),
     ({"p_malignant": np.array([-0.5])}, None, r"p_malignant must hold"),
     ({"region_index": np.array([10**6] * 27)}, None, "region_index"),
     (None, {"min_segmentation_threshold": 7}, "min_segmentation_threshold"),
     (None, {"geometry": {"origin_xyz": [0, 0, 0], "spacing_xyz": [math.nan, 1, 1],
                          "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1], "shape_irc": [8, 8, 8]}},
      "finite")],
)  # fmt: skip
def test_a_crafted_detection_npz_is_refused(
    tmp_path: Path, arrays: dict | None, meta: dict | None, match: str
) -> None:
    from lungcad.pipeline import DetectionResult, DetectionResultError

    path = _saved_result(tmp_path / "detection.npz")
    assert len(DetectionResult.load(path).findings) == 1
    _rewrite(path, arrays, meta)
    with pytest.raises(DetectionResultError, match=match):
        DetectionResult.load(path)


@pytest.mark.skipif(not POSIX, reason="FIFOs are POSIX")
def test_a_fifo_as_detection_npz_is_refused(tmp_path: Path) -> None:
    from lungcad.pipeline import DetectionResult, DetectionResultError

    os.mkfifo(tmp_path / "detection.npz")
    with pytest.raises(DetectionResultError, match="pipe"):
        DetectionResult.load(tmp_path / "detection.npz")
