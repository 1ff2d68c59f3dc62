"""LUNA16 dataset readers shared by training and evaluation.

Layout: ``subset*/<seriesuid>.mhd/.raw``, ``annotations.csv``, ``candidates.csv`` and optionally
``annotations_excluded.csv`` and ``annotations_with_malignancy.csv``; coordinates in LPS mm.
"""

from lungcad.luna16.candidates import (
    ANNOTATIONS_CSV,
    CANDIDATES_CSV,
    EXCLUDED_CSV,
    MALIGNANCY_CSV,
    CandidateInfo,
    candidate_list,
    clear_candidate_cache,
    find_series,
    join_candidates,
)
from lungcad.luna16.masks import MIN_RADIUS, annotation_mask_for_ct, build_annotation_mask
from lungcad.luna16.records import (
    Annotation,
    Candidate,
    DatasetError,
    DatasetFileNotFoundError,
    MalignancyAnnotation,
    read_annotations,
    read_candidate_arrays,
    read_candidates,
    read_malignancy_annotations,
)
from lungcad.luna16.split import split_by_series, validation_series

__all__ = [
    "ANNOTATIONS_CSV",
    "CANDIDATES_CSV",
    "EXCLUDED_CSV",
    "MALIGNANCY_CSV",
    "MIN_RADIUS",
    "Annotation",
    "Candidate",
    "CandidateInfo",
    "DatasetError",
    "DatasetFileNotFoundError",
    "MalignancyAnnotation",
    "annotation_mask_for_ct",
    "build_annotation_mask",
    "candidate_list",
    "clear_candidate_cache",
    "find_series",
    "join_candidates",
    "read_annotations",
    "read_candidate_arrays",
    "read_candidates",
    "read_malignancy_annotations",
    "split_by_series",
    "validation_series",
]
