"""Landmark error: NME per image, CED curve, AUC and failure rate (DESIGN §4).

Points are 0-based pixel centres (x, y), N×K×2. **NME** (×100, the paper's "NMSE" in percent) =
mean distance over an image's *visible* ground-truth points (invisible ones are excluded, not
counted as zero) / a normalizer taken from the ground truth: ``inter_ocular`` (outer eye
corners, points 36 and 45: 300W's, the default for 68 points), ``inter_pupil`` (eye centres),
or ``box`` (√(w·h) of the face box: AFLW's, the default otherwise). **CED**: fraction of images
with NME ≤ e, sampled on a shared grid. **AUC@0.08** (threshold as a fraction) is computed
exactly for the step CED, ``(1/N) Σ max(0, 1 − e_n/T)``: the limit of the fine-grid trapezoid
rule 300W tools use (checked in ``tests/metrics/test_landmarks.py``). **Failure rate@0.08**:
fraction with NME strictly above 0.08.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Normalizer = Literal["inter_ocular", "inter_pupil", "box"]
NORMALIZERS = ("inter_ocular", "inter_pupil", "box")
OUTER_EYE_CORNERS = (36, 45)
LEFT_EYE = tuple(range(36, 42))
RIGHT_EYE = tuple(range(42, 48))
THRESHOLD = 0.08


def _np(a, name: str) -> np.ndarray:
    if a is None:
        return None
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64) if name != "visible" else np.asarray(a, dtype=bool)


def _check(pred: np.ndarray | None, gt: np.ndarray, visible: np.ndarray | None) -> np.ndarray:
    if gt.ndim != 3 or gt.shape[-1] != 2:
        raise ValueError(f"ground truth must be N×K×2, got {gt.shape}")
    if pred is not None and pred.shape != gt.shape:
        raise ValueError(f"predictions {pred.shape} and ground truth {gt.shape} differ in shape")
    if visible is None:
        visible = np.ones(gt.shape[:2], dtype=bool)
    if visible.shape != gt.shape[:2]:
        raise ValueError(f"visible must be N×K = {gt.shape[:2]}, got {visible.shape}")
    if not np.isfinite(gt[visible]).all():
        raise ValueError("non-finite visible ground-truth points")
    if pred is not None and not np.isfinite(pred[visible]).all():
        raise ValueError("non-finite predictions at visible points")
    empty = ~visible.any(1)
    if empty.any():
        raise ValueError(f"images without visible points: {np.flatnonzero(empty)[:10].tolist()}")
    return visible


def default_normalizer(num_points: int) -> str:
    """``inter_ocular`` for the 68-point markup, ``box`` otherwise (AFLW's 19 points)."""
    return "inter_ocular" if num_points == 68 else "box"


def normalizer_distance(gt, visible=None, *, normalizer: Normalizer = "inter_ocular", boxes=None) -> np.ndarray:
    """Per-image normalizing distance (pixels) from the ground truth."""
    g = _np(gt, "gt")
    vis = _check(None, g, _np(visible, "visible"))
    if normalizer in ("inter_ocular", "inter_pupil"):
        if g.shape[1] != 68:
            raise ValueError(f"{normalizer} needs the 68-point markup, got {g.shape[1]} points")
        eyes = list(OUTER_EYE_CORNERS) if normalizer == "inter_ocular" else list(LEFT_EYE + RIGHT_EYE)
        hidden = ~vis[:, eyes].all(1)
        if hidden.any():
            raise ValueError(f"{normalizer}: eye points not visible in images {np.flatnonzero(hidden)[:10].tolist()}")
        if normalizer == "inter_ocular":
            a, b = g[:, OUTER_EYE_CORNERS[0]], g[:, OUTER_EYE_CORNERS[1]]
        else:
            a, b = g[:, list(LEFT_EYE)].mean(1), g[:, list(RIGHT_EYE)].mean(1)
        d = np.linalg.norm(a - b, axis=1)
    elif normalizer == "box":
        if boxes is None:
            big = np.where(vis[..., None], g, np.nan)
            lo, hi = np.nanmin(big, 1), np.nanmax(big, 1)
            bx = np.concatenate([lo, hi], 1)
        else:
            bx = _np(boxes, "boxes")
            if bx.shape != (len(g), 4):
                raise ValueError(f"boxes must be N×4 = ({len(g)}, 4), got {bx.shape}")
        w, h = bx[:, 2] - bx[:, 0], bx[:, 3] - bx[:, 1]
        d = np.sqrt(np.clip(w, 0, None) * np.clip(h, 0, None))
    else:
        raise ValueError(f"unknown normalizer {normalizer!r}; choose one of {NORMALIZERS}")
    if not (d > 0).all():
        raise ValueError(f"{normalizer}: zero normalizing distance in images {np.flatnonzero(~(d > 0))[:10].tolist()}")
    return d


def point_errors(pred, gt) -> np.ndarray:
    """N×K Euclidean point-to-point distances in pixels."""
    return np.linalg.norm(_np(pred, "pred") - _np(gt, "gt"), axis=-1)


def nme(pred, gt, visible=None, *, normalizer: Normalizer = "inter_ocular", boxes=None) -> np.ndarray:
    """Per-image NME ×100: mean visible point distance / normalizer × 100 (float64, length N)."""
    p, g, v = _np(pred, "pred"), _np(gt, "gt"), _np(visible, "visible")
    v = _check(p, g, v)
    err = np.where(v, np.linalg.norm(p - g, axis=-1), 0.0)
    mean_err = err.sum(1) / v.sum(1)
    return 100.0 * mean_err / normalizer_distance(g, v, normalizer=normalizer, boxes=boxes)


def _values(nme_values) -> np.ndarray:
    e = _np(nme_values, "nme").reshape(-1)
    if e.size == 0:
        raise ValueError("no NME values")
    if not np.isfinite(e).all() or (e < 0).any():
        raise ValueError("NME values must be finite and non-negative")
    return e


def ced(nme_values, *, max_error: float = 10.0, step: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """CED on the grid ``0, step, …, max_error`` (NME×100 units): (thresholds, fraction with NME ≤ t)."""
    e = np.sort(_values(nme_values))
    thresholds = np.round(np.arange(0.0, max_error + step / 2, step), 10)
    fractions = np.searchsorted(e, thresholds, side="right") / e.size
    return thresholds, fractions


def auc(nme_values, *, threshold: float = THRESHOLD) -> float:
    """Exact area under the step CED over [0, threshold] / threshold (NME as fraction; ``threshold`` a fraction)."""
    if not threshold > 0:
        raise ValueError("threshold must be positive")
    e = _values(nme_values) / 100.0
    return float(np.clip(1.0 - e / threshold, 0.0, None).mean())


def failure_rate(nme_values, *, threshold: float = THRESHOLD) -> float:
    """Fraction of images with NME > ``threshold`` (NME as fraction; ``threshold`` a fraction)."""
    e = _values(nme_values) / 100.0
    return float((e > threshold).mean())


def compute_landmark_metrics(pred, gt, visible=None, boxes=None, normalizer: Normalizer | None = None,
                             threshold: float = THRESHOLD) -> dict:
    """Per-image NME (×100) plus its AUC and failure rate at ``threshold`` and the CED grid.

    Returns ``{"nme": ndarray[N], "normalizer": str, "auc": float, "failure_rate": float,
    "ced_thresholds": ndarray, "ced_fractions": ndarray}``; ``normalizer=None`` picks
    :func:`default_normalizer` from the point count.
    """
    g = _np(gt, "gt")
    normalizer = normalizer or default_normalizer(g.shape[1])
    values = nme(pred, g, visible, normalizer=normalizer, boxes=boxes)
    thresholds, fractions = ced(values)
    return {"nme": values, "normalizer": normalizer, "auc": auc(values, threshold=threshold),
            "failure_rate": failure_rate(values, threshold=threshold),
            "ced_thresholds": thresholds, "ced_fractions": fractions}


__all__ = [
    "NORMALIZERS", "auc", "ced", "compute_landmark_metrics", "default_normalizer", "failure_rate", "nme",
    "normalizer_distance", "point_errors",
]
