"""Background detection: a real child process running the cascade, its progress, and Cancel."""

from __future__ import annotations

import time

import numpy as np
import pytest
import slicer_phantoms
from LungNoduleCADLib.logic import LungNoduleCADCore, RunRequest
from LungNoduleCADLib.process import (
    DetectionProcess,
    DetectionProcessError,
    State,
    SubprocessRunner,
    overall_fraction,
)
from LungNoduleCADLib.volume import add_volume_node_from_ct
from LungNoduleCADLib.worker import WORKER_STAGES

from lungcad.ct import CT, Geometry
from lungcad.pipeline import STAGES, DetectionCancelled, Thresholds

THRESHOLDS = (0.5, 0.5, 0.5)


def _wait(process: DetectionProcess, until, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not until(process):
        assert time.monotonic() < deadline, f"timed out in state {process.state}, {process.stage}"
        process.poll()
        time.sleep(0.05)


def test_overall_progress_grows_through_the_stages():
    fractions = [overall_fraction(stage, f) for stage in STAGES for f in (0.0, 0.5, 1.0)]
    assert fractions == sorted(fractions)
    assert 0.0 < fractions[0] < fractions[-1] == pytest.approx(1.0)
    assert overall_fraction("not a stage", 0.5) == 0.0


def test_child_process_gives_the_in_process_result_and_cleans_up(mrml):
    ct = slicer_phantoms.nodule_crop(0)
    expected = slicer_phantoms.CachedRunner()(ct, RunRequest())
    process = DetectionProcess(ct, THRESHOLDS, device="cpu").start()
    folder = process.folder
    assert folder.is_dir() and (folder / "input.mha").is_file()
    _wait(process, lambda p: p.state is not State.RUNNING)
    assert process.state is State.FINISHED, process.error
    assert process.fraction == 1.0
    assert process.stages_seen == [*WORKER_STAGES, *STAGES]
    result = process.result()
    assert not folder.exists(), "the temporary folder is removed once the result is read"
    assert len(result.findings) == len(expected.findings)
    assert [f.p_nodule for f in result.findings] == pytest.approx(
        [f.p_nodule for f in expected.findings], abs=1e-5
    )
    np.testing.assert_allclose(
        [f.center_irc for f in result.findings],
        [f.center_irc for f in expected.findings],
        atol=1e-4,
    )
    for got, want in zip(result.findings, expected.findings, strict=True):
        np.testing.assert_array_equal(got.mask.paste(ct.shape), want.mask.paste(ct.shape))


def test_cancel_kills_the_child_and_leaves_the_scene_as_it_was(mrml):
    ct = slicer_phantoms.nodule_crop(1)
    volume = add_volume_node_from_ct(mrml.scene, ct)
    nodes_before = mrml.scene.GetNumberOfNodes()
    process = DetectionProcess(ct, THRESHOLDS, device="cpu").start()
    folder = process.folder
    _wait(process, lambda p: p.stage != "loading CT" or p.state is not State.RUNNING)
    assert process.state is State.RUNNING, process.error
    process.cancel()
    assert process.state is State.CANCELLED
    assert process.returncode is not None, "the child process is gone"
    assert not folder.exists()
    assert process.poll() is State.CANCELLED
    with pytest.raises(DetectionProcessError, match="cancelled"):
        process.result()
    assert mrml.scene.GetNumberOfNodes() == nodes_before
    assert volume.GetImageData() is not None


def test_subprocess_runner_cancel_event_raises_and_scene_is_untouched(mrml):
    ct = slicer_phantoms.nodule_crop(1)
    volume = add_volume_node_from_ct(mrml.scene, ct)
    nodes_before = mrml.scene.GetNumberOfNodes()
    runner = SubprocessRunner()
    core = LungNoduleCADCore(mrml, runner=runner)

    class CancelOnFirstProgress:
        """A cancel event that becomes set once the child has reported progress."""

        def is_set(self) -> bool:
            return runner.last is not None and runner.last.stage not in ("", "loading CT")

    with pytest.raises(DetectionCancelled):
        core.run(
            volume,
            RunRequest(thresholds=Thresholds(), device="cpu"),
            cancel=CancelOnFirstProgress(),
        )
    assert runner.last.state is State.CANCELLED
    assert runner.last.returncode is not None
    assert mrml.scene.GetNumberOfNodes() == nodes_before
    assert core.result is None and core.outputs is None


def test_a_failing_child_reports_why(tmp_path):
    geometry = Geometry.from_arrays((0, 0, 0), (1, 1, 1), np.eye(3), (4, 8, 8))
    ct = CT(np.full((4, 8, 8), -1000, np.int16), geometry)
    process = DetectionProcess(ct, THRESHOLDS, device="cpu", model_folder=tmp_path / "no-models")
    process.start()
    _wait(process, lambda p: p.state is not State.RUNNING)
    assert process.state is State.FAILED
    assert "no-models" in process.error
    assert process.folder is None
    with pytest.raises(DetectionProcessError, match="no-models"):
        process.result()
