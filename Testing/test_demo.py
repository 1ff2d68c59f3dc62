"""``lungcad demo``: phantom, detection through the cohort runner, and the check against truth.

The real cascade is slow on a CPU-only runner and what it finds is the weights' business (the
wheel test runs it: test_wheel.py), so the demo's own logic is checked with a detector that
reports the phantom's true nodule masks plus one false positive: the counts it prints must then
follow from the phantom's truth exactly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from reports_support import finding_from_mask, truth_result

import lungcad.demo
from lungcad.cli import main
from lungcad.demo import LARGE_NODULE_MM, match_findings, run_demo
from lungcad.phantom import PhantomSize, make_spec
from lungcad.pipeline.findings import PatientSummary
from lungcad.reports import OUTPUT_FILES

SEED = 2023


class TruthDetector:
    """Reports the true nodules (from the label map beside the CT) and one false positive."""

    def __init__(self, *args, **kwargs) -> None:
        self.present: list[int] = []

    def __call__(self, ct):
        labels_path = ct.source.with_name(ct.source.stem + "_nodules.nrrd")
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(labels_path)))
        spec = make_spec(SEED, 0)
        self.present = [n.index for n in spec.nodules if np.any(labels == n.index)]
        result = truth_result(SimpleNamespace(spec=spec), ct=ct, labels=labels)
        # p_malignant from the truth, so every malignancy call is right
        truth = {n.index: n for n in spec.nodules}
        findings = []
        for f in result.findings:
            label = int(np.bincount(labels[f.mask.slices][f.mask.array]).argmax())
            p = 0.9 if truth[label].is_malignant else 0.1
            findings.append(dataclasses.replace(f, p_malignant=p))
        fp = np.zeros(ct.shape, dtype=bool)
        fp[1:3, 1:3, 1:3] = True  # a corner of the volume: outside every nodule
        findings.append(finding_from_mask(len(findings) + 1, fp, ct, 0.6, 0.2))
        findings = tuple(findings)
        return dataclasses.replace(
            result, findings=findings, summary=PatientSummary.of(findings, result.thresholds)
        )


def test_demo_counts_follow_from_the_truth(tmp_path):
    detector = TruthDetector()
    report = run_demo(tmp_path / "demo", seed=SEED, size=PhantomSize.SMALL, detector=detector)
    spec = make_spec(SEED, 0)
    assert report.status == "ok"
    assert sorted(p.name for p in report.case_folder.iterdir()) == sorted(OUTPUT_FILES.values())
    assert report.case_folder.name == spec.series_uid
    assert len(detector.present) >= 2
    present = [n for n in spec.nodules if n.index in detector.present]
    large = [n for n in present if n.diameter_mm >= LARGE_NODULE_MM]
    assert report.counts() == (len(present), len(spec.nodules))
    assert report.counts(LARGE_NODULE_MM) == (
        len(large),
        sum(n.diameter_mm >= LARGE_NODULE_MM for n in spec.nodules),
    )
    assert report.false_positives == 1
    malignant = sum(n.is_malignant for n in present)
    assert report.malignancy_calls() == {
        "malignant": (malignant, malignant),
        "benign": (0, len(present) - malignant),
    }
    text = "\n".join(report.lines())
    assert f"found {len(present)} of {len(spec.nodules)} nodules" in text
    assert "1 false positive\n" in text + "\n"
    assert (tmp_path / "demo" / "results" / "summary.csv").is_file()
    # a long list is cut after max_findings, the rest summed up
    short = "\n".join(report.lines(max_findings=3))
    assert f"... and {len(present) + 1 - 3} more ({len(present) - 3} on true nodules)" in short
    assert "  N4:" not in short and "  N3:" in short


def test_match_findings_uses_the_luna16_radius():
    nodules = make_spec(SEED, 0).nodules
    n = max(nodules, key=lambda n: n.diameter_mm)
    x, y, z = n.center_xyz
    r = n.diameter_mm / 2
    findings = [
        {"number": 1, "center_lps": [x + 0.99 * r, y, z]},  # inside the radius: a hit
        {"number": 2, "center_lps": [x, y, z + 1.01 * r]},  # just outside
    ]
    matches, found = match_findings(findings, list(nodules))
    assert matches[0].nodule is n
    assert matches[1].nodule is None or matches[1].nodule.index != n.index
    assert found[n.index] == [1]
    assert match_findings([], list(nodules))[1] == {k.index: [] for k in nodules}


def test_demo_command_prints_the_check_and_refuses_a_full_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(lungcad.demo, "CascadeDetector", TruthDetector)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "small", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    spec = make_spec(SEED, 0)
    assert f"synthetic chest CT (seed {SEED}, small)" in text
    assert "1 false positive" in text
    assert f"truth: {len(spec.nodules)} nodules" in text
    assert "-> false positive" in text and "-> true nodule #" in text
    assert main(["demo", "--out", str(out), "--size", "small"]) == 2  # not empty: refuse
    assert "not empty" in capsys.readouterr().err
    assert main(["demo", "--out", str(out), "--size", "small", "--overwrite"]) == 0
    assert len(list(Path(out, "phantom").rglob("*.mhd"))) == 1


@pytest.mark.parametrize("flag", ["--size", "--device"])
def test_demo_rejects_unknown_choices(flag, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", flag, "huge"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
