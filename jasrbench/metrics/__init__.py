"""Metrics (DESIGN §4); each module documents its exact definitions.

:mod:`.image_quality` (PSNR/SSIM on Y), :mod:`.landmarks` (NME, CED, AUC, failure rate),
:mod:`.verification` (LFW's 10-fold protocol, ROC), :mod:`.recognizers` (facenet, dlib),
:mod:`.statistics` (bootstrap intervals, paired tests). The entry points below are importable
from here and loaded on first use, so importing the package stays cheap::

    compute_image_metrics(sr, hr, boxes=None, *, convention="standard", region="face") -> {"psnr", "ssim"}
    compute_landmark_metrics(pred, gt, visible=None, boxes=None, normalizer=None) -> {"nme", "auc", ...}
    evaluate_pairs(embeddings, pairs, same, folds) -> {"accuracy_mean", "accuracy_std", "roc_auc", ...}
    get_recognizer(name, **options) -> Recognizer
    summarize(values, *, seed=0, resamples=10_000) -> {"mean", "ci_low", "ci_high", "n"}
    paired_test(a, b, *, seed=0) -> {"mean_diff", "ci_low", "ci_high", "p_bootstrap", "p_wilcoxon", ...}
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "compute_image_metrics": ("image_quality", "compute_image_metrics"),
    "psnr_ssim": ("image_quality", "psnr_ssim"),
    "compute_landmark_metrics": ("landmarks", "compute_landmark_metrics"),
    "nme": ("landmarks", "nme"),
    "evaluate_pairs": ("verification", "evaluate_pairs"),
    "evaluate_similarities": ("verification", "evaluate_similarities"),
    "get_recognizer": ("recognizers", "get"),
    "summarize": ("statistics", "summarize"),
    "bootstrap_ci": ("statistics", "bootstrap_ci"),
    "paired_test": ("statistics", "paired_test"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
