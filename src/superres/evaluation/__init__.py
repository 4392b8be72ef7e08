"""Scoring models: benchmark folders the way the literature does (:mod:`.folders`) and
speed (:mod:`.bench`)."""

from superres.evaluation.folders import (
    IMAGE_EXTENSIONS,
    DatasetResult,
    EvalResult,
    evaluate,
    evaluate_folder,
    list_images,
    make_lr,
    super_resolve,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "DatasetResult",
    "EvalResult",
    "evaluate",
    "evaluate_folder",
    "list_images",
    "make_lr",
    "super_resolve",
]
