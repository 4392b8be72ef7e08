"""Scoring models: benchmark folders the way the literature does (:mod:`.folders`) and
speed (:mod:`.bench`)."""

from superres.evaluation.folders import (
    DatasetResult,
    EvalResult,
    evaluate,
    evaluate_folder,
    super_resolve,
)

__all__ = [
    "DatasetResult",
    "EvalResult",
    "evaluate",
    "evaluate_folder",
    "super_resolve",
]
