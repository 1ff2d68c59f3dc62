"""The threshold-update benchmark builds a valid cache and keeps the scene in step while sliding.

Timing is printed by LungNoduleCAD/Scripts/bench_thresholds.py, not asserted here (shared CI
machines make wall-clock assertions flaky); this checks the benchmark measures the right thing.
"""

from __future__ import annotations

from LungNoduleCADLib.benchmark import run, synthetic_result

from lungcad.pipeline import Thresholds


def test_synthetic_cache_refilters_like_a_detection_result():
    result = synthetic_result(candidates=20, shape_irc=(40, 64, 64), spacing_xyz=(1.0, 1.0, 1.5))
    assert result.store.count == 20
    at_floor = result.refilter(Thresholds(0.2, 0.5, 0.5))
    assert len(at_floor.candidates) >= len(result.candidates) > 0
    fewer = result.refilter(Thresholds(0.5, 0.8, 0.5))
    assert len(fewer.findings) == sum(c.p_nodule >= 0.8 for c in result.candidates)
    smaller = result.refilter(Thresholds(0.9, 0.0, 0.5))
    assert sum(f.volume_mm3 for f in smaller.findings) < sum(
        c.volume_mm3 for c in result.candidates
    )


def test_sweeps_keep_nodes_equal_to_the_result(mrml):
    core, timings = run(candidates=30, steps=4, services=mrml)
    assert len(timings) == 3 * 8
    assert len({t.findings for t in timings if t.slider == "nodule"}) > 1
    assert all(t.scene_ms >= 0 and t.refilter_ms >= 0 for t in timings)
    findings = core.result.findings
    assert core.outputs.segmentation.GetSegmentation().GetNumberOfSegments() == len(findings)
    assert core.outputs.table.GetNumberOfRows() == len(findings)
    assert sum(n.GetNumberOfControlPoints() for n in core.outputs.points.values()) == len(findings)
