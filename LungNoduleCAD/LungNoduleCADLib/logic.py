"""The module's logic without any GUI: volume in, detection, findings out, live thresholds.

It works the same in the Slicer GUI, in ``Slicer --no-main-window`` batch runs and against
``slicer-core`` in tests. How detection runs is injectable (:class:`Runner`): in-process for tests
and batch mode, a subprocess for the GUI (see :mod:`LungNoduleCADLib.process`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lungcad.ct import CT
from lungcad.pipeline import (
    CascadeModels,
    DetectionResult,
    Thresholds,
    detect,
)
from lungcad.reports import CaseOutputs, ExtraOutputs, ResultLike, write_case_outputs
from lungcad.reports.case import ExtraWriter, chain_writers
from lungcad.safe_names import check_output_root, checked_series_uid, confined_path, safe_case_id
from LungNoduleCADLib.mrml import SlicerServices
from LungNoduleCADLib.output_nodes import OutputNodes
from LungNoduleCADLib.scene import FindingsScene
from LungNoduleCADLib.storage import write_scene_files
from LungNoduleCADLib.volume import ct_from_volume_node, geometry_of_volume_node, same_grid

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, float], None]
#: SOP Instance UID -> the file Slicer's DICOM database holds for it ("" when it holds none).
DicomFileLookup = Callable[[str], str]
#: The volume node attribute Slicer's DICOM loader lists the volume's SOP Instance UIDs in.
INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"


@dataclass(frozen=True)
class RunRequest:
    """Everything a run needs besides the CT."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    device: str = "auto"
    model_folder: Path | None = None


class Runner(Protocol):
    """Runs the cascade on a CT; raises lungcad.pipeline.DetectionCancelled when cancelled."""

    def __call__(
        self,
        ct: CT,
        request: RunRequest,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> DetectionResult: ...


class InProcessRunner:
    """Runs :func:`lungcad.pipeline.detect` in this process, keeping loaded models between runs."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, str], CascadeModels] = {}

    def models(self, request: RunRequest) -> CascadeModels:
        key = (str(request.model_folder or ""), request.device)
        if key not in self._models:
            self._models.clear()  # one set of networks in memory at a time
            self._models[key] = CascadeModels.load(request.model_folder, device=request.device)
        return self._models[key]

    def __call__(
        self,
        ct: CT,
        request: RunRequest,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> DetectionResult:
        return detect(
            ct, self.models(request), request.thresholds, progress=progress, cancel=cancel
        )


@dataclass
class LungNoduleCADCore:
    """Runs detection on a volume node and keeps the module's output nodes in step with it.

    One instance holds the cached result of the last run (or of :meth:`show_result`), so
    :meth:`update_thresholds` only re-filters it and rewrites the nodes.
    """

    services: SlicerServices
    runner: Runner = field(default_factory=InProcessRunner)
    result: DetectionResult | None = None
    volume_node: Any = None
    outputs: OutputNodes | None = None
    last_update_ms: float = 0.0
    #: Where the DICOM-loaded volume's files are (default: slicer.dicomDatabase.fileForInstance).
    dicom_file_for: DicomFileLookup | None = None
    #: The weights folder the shown result was computed with (None: the bundled weights).
    model_folder: Path | None = None
    #: Why the last export wrote no DICOM SEG/SR (None when it wrote them).
    dicom_note: str | None = None
    _scene_writer: FindingsScene | None = None

    def ct_from_volume(self, volume_node: Any) -> CT:
        return ct_from_volume_node(volume_node)

    def run(
        self,
        volume_node: Any,
        request: RunRequest | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> OutputNodes:
        """Detect nodules in ``volume_node`` and show them; the scene changes only on success."""
        request = request or RunRequest()
        ct = self.ct_from_volume(volume_node)
        started = time.perf_counter()
        result = self.runner(ct, request, progress, cancel)
        log.info(
            "detection on %s: %s (%.1f s)",
            volume_node.GetName(),
            result.summary.text,
            time.perf_counter() - started,
        )
        if result.thresholds != request.thresholds:
            result = result.refilter(request.thresholds)
        return self.show_result(volume_node, result, request.model_folder)

    def show_result(
        self, volume_node: Any, result: DetectionResult, model_folder: Path | None = None
    ) -> OutputNodes:
        """Show an existing result (e.g. a detection.npz from the command line) for a volume;
        ``model_folder`` holds the weights it was computed with (None: the bundled ones)."""
        volume_geometry = geometry_of_volume_node(volume_node)
        if not same_grid(result.geometry, volume_geometry):
            raise ValueError(
                f"the result was computed on another grid ({result.geometry}) than the volume "
                f"'{volume_node.GetName()}' ({volume_geometry})"
            )
        if self._scene_writer is None or self.volume_node is not volume_node:
            self._scene_writer = FindingsScene(self.services.scene, volume_node)
        self.volume_node = volume_node
        self.result = result
        self.model_folder = model_folder
        self.outputs = self._write()
        return self.outputs

    def update_thresholds(self, thresholds: Thresholds) -> DetectionResult:
        """Re-filter the cached result and update the nodes in place; never runs a network."""
        if self.result is None:
            raise RuntimeError("no detection result yet: run detection first")
        if thresholds == self.result.thresholds:
            self.last_update_ms = 0.0
            return self.result
        self.result = self.result.refilter(thresholds)
        self.outputs = self._write()
        return self.result

    def _write(self) -> OutputNodes:
        started = time.perf_counter()
        result = self.result
        outputs = self._scene_writer.show(result.findings, result.geometry, result.thresholds)
        self.last_update_ms = 1000 * (time.perf_counter() - started)
        return outputs

    @property
    def scene_writer(self) -> FindingsScene | None:
        """The writer of the shown findings' nodes (it also holds their review states)."""
        return self._scene_writer

    def summary_text(self) -> str:
        """What the module's summary shows: the findings, the exam's Lung-RADS category with
        its management (decision support, from the findings above the thresholds), then one
        line per warning (a scan outside the models' training range, lungs not wholly in the
        field)."""
        if self.result is None:
            return "No detection run yet."
        lines = [self.result.summary.text]
        exam = self.result.summary.lung_rads
        if exam is not None:
            lines.append(exam.text)
        lines += [f"Warning: {w}" for w in self.result.warnings]
        return "\n".join(lines)

    def finding_ras(self, number: int) -> tuple[float, float, float]:
        """RAS centre of finding ``number`` (what the table's row click jumps to)."""
        from LungNoduleCADLib.scene import finding_ras

        for finding in self.result.findings if self.result else ():
            if finding.number == number:
                return tuple(float(v) for v in finding_ras(finding))
        raise KeyError(f"no finding number {number}")

    def save(
        self,
        folder: str | Path,
        case_id: str | None = None,
        review: Mapping[int, str] | None = None,
        dicom_out: bool = False,
    ) -> CaseOutputs:
        """Write the case into ``folder`` as ``lungcad detect`` does (results.json,
        candidates.csv, ...: :func:`lungcad.reports.write_case_outputs`, replacing an earlier
        save) plus the scene's nodes as Slicer writes them (:mod:`LungNoduleCADLib.storage`).
        ``review`` (finding number -> review state) goes into results.json as ``review``;
        ``dicom_out`` adds what ``lungcad detect --dicom-out`` adds (see :meth:`export`)."""
        if self.result is None or self.outputs is None:
            raise RuntimeError("nothing to save: run detection first")
        ct = self.ct_from_volume(self.volume_node)
        return self._save(Path(folder), case_id, ct, review, dicom_out)

    def _save(
        self,
        folder: Path,
        case_id: str | None,
        ct: CT,
        review: Mapping[int, str] | None = None,
        dicom_out: bool = False,
    ) -> CaseOutputs:
        outputs = self.outputs
        keys = {} if review is None else {"review": {str(n): s for n, s in sorted(review.items())}}

        def scene_files(result: ResultLike, ct: CT, case_folder: Path) -> ExtraOutputs:
            return write_scene_files(outputs, case_folder), keys

        result = self.result
        if not result.series_uid and ct.series_uid:  # a run that was not told the volume's UID
            result = dataclasses.replace(result, series_uid=ct.series_uid)
        dicom = self._dicom_writer(case_id or folder.name) if dicom_out else None
        self.dicom_note = None
        return write_case_outputs(
            result,
            ct,
            folder,
            case_id=case_id,
            source=_source_file(self.volume_node),
            overwrite=True,
            extra_writer=chain_writers(scene_files, dicom),
        )

    def _dicom_writer(self, case_id: str) -> ExtraWriter:
        """The DICOM SEG, SR and PDF of ``lungcad detect --dicom-out``; the source series is
        the volume's files in Slicer's DICOM database (a volume loaded otherwise: PDF only,
        and :attr:`dicom_note` says why). The weights are checked before any file is written."""
        algorithm = algorithm_of_folder(self.model_folder, self.result.model_versions)
        dicom_files = volume_dicom_files(self.volume_node, self.dicom_file_for)
        source = _source_file(self.volume_node)

        def write(result: ResultLike, ct: CT, folder: Path) -> ExtraOutputs:
            from lungcad.dicom_out.case import write_dicom_outputs

            out = write_dicom_outputs(
                result, ct, folder, algorithm, case_id=case_id, source=source,
                overwrite=True, dicom_files=dicom_files,
            )  # fmt: skip
            self.dicom_note = out.note
            return out.files, {"dicom": out.record}

        return write

    def export(self, root: str | Path, review: Mapping[int, str] | None = None) -> CaseOutputs:
        """Save into ``root/<case id>`` (the GUI's Export), named as ``lungcad detect`` names
        cases: the series UID where it is a DICOM UID, else the volume's name made safe. The
        export holds what ``lungcad detect --dicom-out`` writes: a DICOM SEG and SR referencing
        the volume's DICOM series, and report.pdf (a volume not loaded from DICOM: the PDF
        alone, and :attr:`dicom_note` says so).

        A volume's name can come from DICOM tags (patient name, series description), so it
        goes through :func:`lungcad.safe_names.safe_case_id` and the folder is checked to lie
        inside ``root``, which must take files (OutputRootError otherwise).
        """
        if self.result is None or self.outputs is None:
            raise RuntimeError("nothing to export: run detection first")
        root = check_output_root(root)
        ct = self.ct_from_volume(self.volume_node)
        uid, _ = checked_series_uid(ct.series_uid)
        case_id = uid or safe_case_id(self.volume_node.GetName() or "")
        return self._save(confined_path(root, case_id), case_id, ct, review, dicom_out=True)


def algorithm_of_folder(
    model_folder: Path | None, model_versions: Mapping[str, str] | None = None
) -> Any:
    """The :class:`lungcad.dicom_out.algorithm.Algorithm` of the weights in ``model_folder``
    (None: the bundled ones), read from their model cards as ``lungcad detect`` reads them.

    ``model_versions`` (a result's, "... sha256:<first 12 digits> ...") must name the same
    weights: a DICOM object that names other weights than those that found the nodules would
    mislead its reader, so a mismatch raises ValueError.
    """
    from types import SimpleNamespace

    from lungcad.dicom_out.case import algorithm_for
    from lungcad.models import read_card
    from lungcad.pipeline.models import BUNDLED_MODELS, CASCADE_TASKS

    root = BUNDLED_MODELS if model_folder is None else Path(model_folder)
    cards = {t.value: read_card(root / f"{t.value}.json") for t in CASCADE_TASKS}
    for task, version in (model_versions or {}).items():
        _, found, rest = version.partition("sha256:")
        card = cards.get(task)
        if found and card is not None and not card.sha256.startswith(rest.split(" ")[0]):
            raise ValueError(
                f"the {task} weights in {root} (sha256 {card.sha256[:12]}) are not those the "
                f"result was computed with ({version})"
            )
    shas = {task: card.sha256 for task, card in cards.items()}
    return algorithm_for(shas, SimpleNamespace(cards=cards))


def volume_dicom_files(
    volume_node: Any, file_for: DicomFileLookup | None = None
) -> list[Path] | None:
    """The files of a volume that Slicer's DICOM loader made (its ``DICOM.instanceUIDs``, each
    looked up with ``file_for``, default ``slicer.dicomDatabase.fileForInstance``); None for a
    volume not loaded from DICOM. UIDs the database has no file for are left out (the DICOM
    writer then says that the files do not make up the volume's series)."""
    uids = (volume_node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if not uids:
        return None
    if file_for is None:
        file_for = _database_lookup()
    files = [file_for(uid) if file_for is not None else "" for uid in uids]
    found = [Path(f) for f in files if f]
    if len(found) < len(uids):
        log.warning(
            "%s: the DICOM database has files for %d of its %d instances",
            volume_node.GetName(),
            len(found),
            len(uids),
        )
    return found


def _database_lookup() -> DicomFileLookup | None:
    """slicer.dicomDatabase.fileForInstance where Slicer has an open DICOM database."""
    import slicer

    database = getattr(slicer, "dicomDatabase", None)
    if database is None or not database.isOpen:
        return None
    return database.fileForInstance


def _source_file(volume_node: Any) -> Path | None:
    """The file a volume was loaded from (results.json's input path), if any."""
    storage = volume_node.GetStorageNode() if volume_node is not None else None
    name = storage.GetFileName() if storage is not None else None
    return Path(name) if name else None
