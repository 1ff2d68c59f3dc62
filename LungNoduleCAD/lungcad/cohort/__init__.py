"""Run the cascade over a cohort: find the CTs, split them into shards, resume, record failures.

Inputs are CT files (.mhd .mha .nrrd .nhdr .nii .nii.gz), folders (searched recursively: each CT
file is a case, and a folder that directly holds DICOM files is one case, whatever the files are
called: a .dcm suffix, the preamble's 'DICM', or a series GDCM finds in files without the
preamble), or .txt files listing such paths one per line (``#`` starts a comment; relative paths
are relative to the list). The case list is sorted by path, so every node of a cluster job
array builds the same list and ``--shard I/N`` (cases I, I+N, I+2N, ...) splits it without
overlap.

Each case is written to OUT/<case_id>/ (see :mod:`lungcad.reports.case`); the case id is the
series UID when the header has a valid one (or a LUNA16-style UID file name), else the file stem
made safe (:func:`lungcad.safe_names.safe_case_id`), made unique in path order, and every case
folder is checked to lie inside OUT. OUT is checked to take files before anything runs.

Resume: a case whose results.json loads and whose fingerprint (input files, thresholds, model
SHA-256s, options; :mod:`lungcad.fingerprint`) matches this run is skipped unless ``overwrite``;
one that no longer matches is rerun, with the reason logged and recorded (results.json
``rerun_reason``, summary.csv). A case that fails leaves OUT/<case_id>/error.txt when its folder
can be written, and always a ``failed`` row; the run goes on. OUT/summary.csv has one row per case
ever run into OUT, merged under a file lock so shards writing to one folder keep each other's rows;
a summary that cannot be written is reported, not raised.
"""

from lungcad.cohort.case_ids import (
    CaseInput,
    assign_case_ids,
    case_id_for,
    parse_shard,
    select_shard,
)
from lungcad.cohort.detector import CascadeDetector
from lungcad.cohort.inputs import CT_SUFFIXES, CohortInputError, collect_inputs
from lungcad.cohort.run import (
    ERROR_FILE,
    Detector,
    pending,
    rerun_reasons,
    resume_plan,
    run_cohort,
)
from lungcad.cohort.summary import (
    SUMMARY_COLUMNS,
    SUMMARY_FILE,
    WARNING_SEPARATOR,
    CaseStatus,
    CohortStatuses,
    read_summary,
    write_summary,
)
from lungcad.fingerprint import RunSettings

__all__ = [
    "CT_SUFFIXES",
    "ERROR_FILE",
    "SUMMARY_COLUMNS",
    "SUMMARY_FILE",
    "WARNING_SEPARATOR",
    "CascadeDetector",
    "CaseInput",
    "CaseStatus",
    "CohortInputError",
    "CohortStatuses",
    "Detector",
    "RunSettings",
    "assign_case_ids",
    "case_id_for",
    "collect_inputs",
    "parse_shard",
    "pending",
    "read_summary",
    "rerun_reasons",
    "resume_plan",
    "run_cohort",
    "select_shard",
    "write_summary",
]
