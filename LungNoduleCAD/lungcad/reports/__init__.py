"""Per-case outputs: results.json, candidates.csv, nodules.seg.nrrd, findings.mrk.json,
overlay.png and detection.npz, each written atomically and never over an existing file unless
asked. :func:`write_case_outputs` writes them all into one case folder.
"""

from lungcad.reports.candidates_csv import CANDIDATE_COLUMNS, write_candidates_csv
from lungcad.reports.case import (
    OUTPUT_FILES,
    CaseOutputs,
    ExtraOutputs,
    ExtraWriter,
    chain_writers,
    write_case_outputs,
)
from lungcad.reports.common import OutputExistsError, ResultLike
from lungcad.reports.markups import write_markups_json
from lungcad.reports.overlay import write_overlay_png
from lungcad.reports.results_json import (
    RESULTS_SCHEMA,
    ResultsFileError,
    read_results,
    write_results_json,
)
from lungcad.reports.segmentation import write_segmentation

__all__ = [
    "CANDIDATE_COLUMNS",
    "OUTPUT_FILES",
    "RESULTS_SCHEMA",
    "CaseOutputs",
    "ExtraOutputs",
    "ExtraWriter",
    "OutputExistsError",
    "ResultLike",
    "ResultsFileError",
    "chain_writers",
    "read_results",
    "write_candidates_csv",
    "write_case_outputs",
    "write_markups_json",
    "write_overlay_png",
    "write_results_json",
    "write_segmentation",
]
