"""Input checks: warnings when a scan lies outside the models' training range or the lungs are not
wholly in the field, the model card's training range, and the warnings carried through results."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
from pipeline_support import fake_models, tiny_ct
from reports_support import TruthResult, bright_result, loaded_models_stub

import lungcad.cohort
from lungcad.cli import main
from lungcad.cohort import WARNING_SEPARATOR, RunSettings
from lungcad.ct import CT, Geometry
from lungcad.ctio import write_ct
from lungcad.geometry import voxel_to_world
from lungcad.models import ModelCard, TrainingRange, read_card
from lungcad.models.weights import to_json
from lungcad.pipeline import DetectionResult, Thresholds, detect
from lungcad.pipeline.input_checks import check_input, spacing_warnings
from lungcad.pipeline.models import BUNDLED_MODELS
from lungcad.reports import read_results, write_results_json

BUNDLED = read_card(BUNDLED_MODELS / "nodule.json")
MALIGNANCY = read_card(BUNDLED_MODELS / "malignancy.json")
SLICE_TEXT = "5.0 mm slices: the models were trained on 0.6-2.5 mm; expect more false findings"
MALIGNANCY_SLICE_TEXT = (
    "5.0 mm slices: the malignancy model was trained on 0.6-2.5 mm (detection on 0.6-5.0 mm); "
    "its malignancy scores are less reliable"
)


def with_range(card: ModelCard = BUNDLED, **changes) -> ModelCard:
    return dataclasses.replace(
        card, training_range=dataclasses.replace(card.training_range, **changes)
    )


#: A detection card that, like the version-1 weights, knows only 0.625-2.5 mm slices.
THIN = with_range(slice_thickness_mm=(0.625, 2.5), slice_spacing_mm=(0.625, 2.5))


@pytest.fixture(scope="module")
def inside(small_cases) -> tuple[CT, ModelCard]:
    """Case 3 of the small set (lungs wholly in the field) and a card trained on that set."""
    spacings = [c.ct.geometry.spacing_xyz for c in small_cases]
    trained = TrainingRange(
        pixel_mm=(min(s[0] for s in spacings), max(s[0] for s in spacings)),
        slice_thickness_mm=(min(s[2] for s in spacings), max(s[2] for s in spacings)),
        slice_spacing_mm=(min(s[2] for s in spacings), max(s[2] for s in spacings)),
        contrast="none",
        hu_fat=(-110.0, -85.0),
        hu_blood=(30.0, 55.0),
        series=len(small_cases),
    )
    return small_cases[3].ct, dataclasses.replace(BUNDLED, training_range=trained)


def replaced(ct: CT, hu: np.ndarray) -> CT:
    return dataclasses.replace(ct, hu=hu.astype(np.int16))


def test_bundled_cards_state_their_training_range_and_still_load() -> None:
    models = fake_models()
    for task in ("segmentation", "nodule"):  # version-2 phantoms: 5 mm slices and contrast
        r = models.cards[task].training_range
        assert r is not None and r.contrast == "both" and r.series == 60
        assert r.pixel_mm == (0.574219, 0.871094)
        assert r.slice_spacing_mm == r.slice_thickness_mm == (0.625, 5.0)
        assert r.hu_air == (-1000.0, -1000.0) and -110 <= r.hu_fat[0] < r.hu_fat[1] <= -85
        assert r.hu_blood[1] > 150  # enhanced blood pools among the draws
    r = models.cards["malignancy"].training_range  # version-1 phantoms: thin, plain
    assert r is not None and r.contrast == "none" and r.series == 120
    assert r.pixel_mm == (0.570312, 0.896484)
    assert r.slice_spacing_mm == r.slice_thickness_mm == (0.625, 2.5)
    assert r.hu_air == (-1000.0, -1000.0) and -110 <= r.hu_fat[0] < r.hu_fat[1] <= -85


def test_card_range_round_trips_and_old_cards_load(tmp_path) -> None:
    again = ModelCard.from_dict(json.loads(to_json(BUNDLED)))
    assert again == BUNDLED and isinstance(again.training_range, TrainingRange)
    old = BUNDLED.to_dict()
    del old["training_range"]
    card = ModelCard.from_dict(old)
    assert card.training_range is None and "training_range" not in card.to_dict()
    bad = {**BUNDLED.to_dict()}
    bad["training_range"] = {**bad["training_range"], "contrast": "sometimes"}
    with pytest.raises(ValueError, match="contrast"):
        ModelCard.from_dict(bad)


def test_five_mm_slices_get_the_slice_warning() -> None:
    ct = tiny_ct(spacing_xyz=(0.7, 0.7, 5.0), size_mm=40.0)
    assert spacing_warnings(ct, THIN.training_range) == [SLICE_TEXT]
    assert SLICE_TEXT in check_input(ct, [THIN])
    # every model knows only thin slices: one line for all, today's wording
    thin_detection = {"segmentation": THIN, "nodule": THIN, "malignancy": MALIGNANCY}
    assert SLICE_TEXT in check_input(ct, thin_detection)


def test_five_mm_slices_against_the_bundled_cards_name_the_malignancy_model() -> None:
    ct = tiny_ct(spacing_xyz=(0.7, 0.7, 5.0), size_mm=40.0)
    cards = fake_models().cards
    warnings = check_input(ct, cards)
    assert MALIGNANCY_SLICE_TEXT in warnings
    assert not any("the models were trained on" in w for w in warnings)
    # an iterable of cards: each card's task names it
    assert MALIGNANCY_SLICE_TEXT in check_input(ct, list(cards.values()))
    ranges = {task: card.training_range for task, card in cards.items()}
    thick = tiny_ct(spacing_xyz=(0.7, 0.7, 1.0), size_mm=40.0)
    thick.metadata.update(slice_thickness="5")
    assert spacing_warnings(thick, ranges) == [
        "5.0 mm slice thickness: the malignancy model was trained on 0.6-2.5 mm (detection on "
        "0.6-5.0 mm); its malignancy scores are less reliable"
    ]


def test_slices_outside_every_model_name_each_models_range() -> None:
    ct = tiny_ct(spacing_xyz=(0.7, 0.7, 6.0), size_mm=40.0)
    ranges = {task: card.training_range for task, card in fake_models().cards.items()}
    assert spacing_warnings(ct, ranges) == [
        "6.0 mm slices: the detection models were trained on 0.6-5.0 mm and the malignancy "
        "model was trained on 0.6-2.5 mm; expect more false findings"
    ]
    nodule_only = {"nodule": THIN.training_range, "malignancy": MALIGNANCY.training_range}
    nodule_only["segmentation"] = BUNDLED.training_range
    five = tiny_ct(spacing_xyz=(0.7, 0.7, 5.0), size_mm=40.0)
    assert spacing_warnings(five, nodule_only) == [
        "5.0 mm slices: the nodule and malignancy models were trained on 0.6-2.5 mm "
        "(segmentation on 0.6-5.0 mm); expect more false findings"
    ]


def test_thick_slices_closely_spaced_and_uneven_slices_are_named() -> None:
    ct = tiny_ct(spacing_xyz=(0.7, 0.7, 1.0), size_mm=40.0)
    ct.metadata.update(slice_thickness="5", slice_gap_range_mm="1.0 3.0")
    warnings = spacing_warnings(ct, THIN.training_range)
    assert warnings[0].startswith("5.0 mm slice thickness: the models were trained on 0.6-2.5")
    assert warnings[1].startswith("Uneven slice spacing (1.0-3.0 mm")


def test_a_phantom_inside_the_range_gets_no_warning(inside) -> None:
    ct, card = inside
    assert check_input(ct, [card]) == ()
    old = dataclasses.replace(card, training_range=None)  # a card from before the field
    assert check_input(ct, {"nodule": card, "old": old}) == ()


def test_air_at_minus_900_gets_the_calibration_warning(inside) -> None:
    ct, card = inside
    shifted = replaced(ct, np.clip(ct.hu.astype(np.int32) + 100, -1024, 3071))
    warnings = check_input(shifted, [card])
    assert any(w.startswith("Air outside the body reads -900 HU") for w in warnings), warnings


def test_a_ct_cut_to_one_lung_gets_the_partial_lungs_warning(inside) -> None:
    ct, card = inside
    half = ct.geometry.shape_irc[2] // 2  # the lungs lie either side of the midline
    cut = ct.hu[:, :, :half]
    g = ct.geometry
    geometry = Geometry.from_arrays(g.origin_xyz, g.spacing_xyz, g.direction, cut.shape)
    warnings = check_input(CT(hu=np.ascontiguousarray(cut), geometry=geometry), [card])
    assert any(
        w.startswith(("Only one lung in the field of view", "Lungs cut by the field of view"))
        for w in warnings
    ), warnings


def test_a_contrast_blood_pool_warns_when_the_models_saw_no_contrast(inside, small_cases) -> None:
    ct, card = inside
    # a 300 HU pool of 4 cm radius in the mediastinum
    centre = np.array([0.0, heart_centre_y(ct), np.mean(small_cases[3].rendered.grid.z_range_mm)])
    irc = np.stack(np.meshgrid(*[np.arange(n) for n in ct.shape], indexing="ij"), -1)
    lps = voxel_to_world(irc.reshape(-1, 3), ct.geometry).reshape(*ct.shape, 3)
    pool = np.linalg.norm(lps - centre, axis=-1) < 40.0
    enhanced = replaced(ct, np.where(pool, 300, ct.hu))
    warnings = check_input(enhanced, [card])
    assert any(w.startswith("Contrast-enhanced scan (blood pool about 300 HU)") for w in warnings)
    both = dataclasses.replace(
        card, training_range=dataclasses.replace(card.training_range, contrast="both")
    )
    assert not any("Contrast" in w for w in check_input(enhanced, [both]))
    # only the malignancy model saw no contrast: its scores suffer, not the findings
    cards = {"segmentation": both, "nodule": both, "malignancy": card}
    assert (
        "Contrast-enhanced scan (blood pool about 300 HU): the malignancy model was trained "
        "without contrast; its malignancy scores are less reliable"
    ) in check_input(enhanced, cards)


def heart_centre_y(ct: CT) -> float:
    """LPS y of the soft tissue between the lungs on the middle slice (the mediastinum)."""
    k = ct.shape[0] // 2
    col = ct.shape[2] // 2
    rows = np.flatnonzero((ct.hu[k, :, col] > 0) & (ct.hu[k, :, col] < 100))
    middle = rows[len(rows) // 3]  # anterior part of the midline soft tissue
    return float(voxel_to_world(np.array([[k, middle, col]]), ct.geometry)[0, 1])


def test_results_json_and_npz_carry_the_warnings(tmp_path) -> None:
    ct = tiny_ct(spacing_xyz=(0.7, 0.7, 5.0), size_mm=40.0)
    result = detect(ct, fake_models(), Thresholds(0.5, 0.5, 0.5))
    assert MALIGNANCY_SLICE_TEXT in result.warnings  # the bundled cards: 5 mm is new to malignancy
    write_results_json(result, tmp_path / "results.json")
    assert read_results(tmp_path / "results.json")["warnings"] == list(result.warnings)
    loaded = DetectionResult.load(result.save(tmp_path / "detection.npz"))
    assert loaded.warnings == result.warnings
    assert loaded.refilter(Thresholds(0.6, 0.4, 0.3)).warnings == result.warnings


def test_results_json_of_a_result_without_warnings_has_an_empty_list(tmp_path) -> None:
    ct = tiny_ct(size_mm=24.0)
    write_results_json(bright_result(ct), tmp_path / "results.json")
    assert read_results(tmp_path / "results.json")["warnings"] == []


@dataclasses.dataclass(frozen=True)
class WarnedResult(TruthResult):
    warnings: tuple[str, ...] = (SLICE_TEXT, "Only one lung in the field of view: x")


class WarningDetector:
    """Stands in for CascadeDetector: loads nothing, returns a result with two warnings."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def load(self):
        return loaded_models_stub()

    def settings(self) -> RunSettings:
        return RunSettings(Thresholds(), {"segmentation": "fake-sha"})

    def __call__(self, ct):
        result = bright_result(ct)
        return WarnedResult(**{f.name: getattr(result, f.name) for f in dataclasses.fields(result)})


def test_cli_prints_each_warning_under_its_case_and_summary_csv_keeps_them(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(lungcad.cohort, "CascadeDetector", WarningDetector)
    ct = tiny_ct(size_mm=24.0)
    write_ct(ct, tmp_path / "case.nrrd")
    out = tmp_path / "out"
    assert main(["detect", str(tmp_path / "case.nrrd"), "--out", str(out), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if "findings," in line)
    assert lines[at + 1 : at + 3] == [f"    warning: {w}" for w in WarnedResult.warnings]
    case_dir = out / ct.series_uid  # a DICOM UID names the case
    assert read_results(case_dir / "results.json")["warnings"] == list(WarnedResult.warnings)
    with (out / "summary.csv").open(newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["warnings"].split(WARNING_SEPARATOR) == list(WarnedResult.warnings)
