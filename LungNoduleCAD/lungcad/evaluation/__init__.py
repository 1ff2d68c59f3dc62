"""Evaluation of detection results against a LUNA16-layout truth.

FROC/CPM by the LUNA16 protocol, malignancy ROC AUC beside a diameter-only baseline, the seeds'
end-to-end table and per-case overlays; ``lungcad evaluate`` is the command line.
"""

from lungcad.evaluation.endtoend import (
    COLUMNS,
    ROWS,
    EndToEndTable,
    MalignancyResult,
    NoduleOutcome,
    truth_outcomes,
)
from lungcad.evaluation.evaluate import (
    CaseEvaluation,
    Evaluation,
    EvaluationOptions,
    evaluate,
)
from lungcad.evaluation.froc import (
    FP_RATES,
    FrocCurve,
    FrocResult,
    evaluate_froc,
    froc_curve,
    sensitivity_by_size,
)
from lungcad.evaluation.inputs import (
    CaseResult,
    EvaluationError,
    ResultSet,
    Truth,
    load_results,
    load_truth,
    select_cases,
)
from lungcad.evaluation.matching import ScanMatch, Status, hit_matrix, match_scan
from lungcad.evaluation.report import metrics, summary_lines, write_outputs
from lungcad.evaluation.roc import roc_auc, roc_curve

__all__ = [
    "COLUMNS",
    "FP_RATES",
    "ROWS",
    "CaseEvaluation",
    "CaseResult",
    "EndToEndTable",
    "Evaluation",
    "EvaluationError",
    "EvaluationOptions",
    "FrocCurve",
    "FrocResult",
    "MalignancyResult",
    "NoduleOutcome",
    "ResultSet",
    "ScanMatch",
    "Status",
    "Truth",
    "evaluate",
    "evaluate_froc",
    "froc_curve",
    "hit_matrix",
    "load_results",
    "load_truth",
    "match_scan",
    "metrics",
    "roc_auc",
    "roc_curve",
    "select_cases",
    "sensitivity_by_size",
    "summary_lines",
    "truth_outcomes",
    "write_outputs",
]
