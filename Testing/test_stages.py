"""The one list of stage names: what detect reports, what the Slicer worker adds before it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from lungcad.pipeline import CASCADE_STAGES, SETUP_STAGES, STAGES, Stage
from lungcad.pipeline.progress import Monitor

ENGINE_DIR = Path(__file__).resolve().parents[1] / "LungNoduleCAD"


def test_stages_are_in_run_order_and_split_into_setup_and_cascade():
    assert [s.value for s in Stage] == [
        "loading CT",
        "loading models",
        "lungs",
        "resample",
        "segmentation",
        "grouping",
        "classification",
        "mapping",
    ]
    assert (*SETUP_STAGES, *CASCADE_STAGES) == tuple(Stage)
    assert STAGES == ("lungs", "resample", "segmentation", "grouping", "classification", "mapping")
    assert all(type(name) is str for name in STAGES)
    assert str(Stage.LUNGS) == f"{Stage.LUNGS}" == "lungs"


def test_progress_callbacks_receive_plain_stage_names():
    seen: list[tuple[object, float]] = []
    monitor = Monitor(lambda stage, fraction: seen.append((stage, fraction)))
    monitor.report(Stage.SEGMENTATION, 1.5)
    monitor.report("grouping", 0.25)
    assert seen == [("segmentation", 1.0), ("grouping", 0.25)]
    assert [type(stage) for stage, _ in seen] == [str, str]


def test_an_unknown_stage_name_is_refused():
    monitor = Monitor(lambda stage, fraction: None)
    try:
        monitor.report("segmentaton", 0.5)
    except ValueError as exc:
        assert "'segmentaton' is not a valid Stage" in str(exc)
    else:
        raise AssertionError("a misspelt stage was accepted")


def test_the_stage_names_import_without_pytorch():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # import torch raises ImportError
        from lungcad.stages import Stage
        print(Stage.MAPPING.value)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ENGINE_DIR,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "mapping"), done.stderr
