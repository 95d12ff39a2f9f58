"""Confidence intervals and paired tests over per-image values (DESIGN §4).

:func:`summarize` / :func:`bootstrap_ci`: percentile bootstrap of the mean (``resamples``
resamples with replacement, numpy's linear quantiles), seeded (PCG64) and vectorized in bounded
chunks; same values and seed, same interval. :func:`paired_test` on two models' values for the
same images: the mean per-image difference with a paired bootstrap interval (images resampled,
pairing kept), a two-sided bootstrap p-value from the null-shifted distribution, scipy's
Wilcoxon signed-rank p-value, and ``significant`` = the interval excludes 0 (the tables' rule,
so a table's mark agrees with the interval it prints).
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

RESAMPLES = 10_000
CONFIDENCE = 0.95
_MAX_INDEX_ENTRIES = 1 << 22


def _values(values, name: str = "values") -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError(f"{name}: no values")
    if not np.isfinite(v).all():
        raise ValueError(f"{name}: non-finite values (a metric that is NaN/inf is a bug, not a result)")
    return v


def bootstrap_means(values, *, seed: int = 0, resamples: int = RESAMPLES) -> np.ndarray:
    """Means of ``resamples`` seeded bootstrap resamples of ``values`` (vectorized, in chunks)."""
    v = _values(values)
    if resamples < 1:
        raise ValueError("resamples must be positive")
    rng = np.random.default_rng(seed)
    n = v.size
    chunk = max(1, _MAX_INDEX_ENTRIES // n)
    out = np.empty(resamples)
    for s in range(0, resamples, chunk):
        m = min(chunk, resamples - s)
        out[s : s + m] = v[rng.integers(0, n, size=(m, n))].mean(1)
    return out


def _interval(means: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def bootstrap_ci(values, *, seed: int = 0, resamples: int = RESAMPLES,
                 confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: (low, high)."""
    return _interval(bootstrap_means(values, seed=seed, resamples=resamples), confidence)


def summarize(values, *, seed: int = 0, resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> dict:
    """``{"mean", "ci_low", "ci_high", "n"}`` of per-image values."""
    v = _values(values)
    lo, hi = bootstrap_ci(v, seed=seed, resamples=resamples, confidence=confidence)
    return {"mean": float(v.mean()), "ci_low": lo, "ci_high": hi, "n": int(v.size)}


def paired_test(a, b, *, seed: int = 0, resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> dict:
    """Paired comparison of two models' per-image values (see the module docstring)."""
    x, y = _values(a, "a"), _values(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired values must have equal length, got {x.size} and {y.size}")
    d = x - y
    mean = float(d.mean())
    means = bootstrap_means(d, seed=seed, resamples=resamples)
    lo, hi = _interval(means, confidence)
    if np.all(d == 0):
        p_boot, p_wil = 1.0, 1.0
    else:
        p_boot = float((1 + np.count_nonzero(np.abs(means - mean) >= abs(mean))) / (1 + resamples))
        p_wil = float(sps.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return {
        "mean_diff": mean, "ci_low": lo, "ci_high": hi, "p_bootstrap": p_boot, "p_wilcoxon": p_wil,
        "significant": bool(lo > 0 or hi < 0), "n": int(d.size), "confidence": confidence,
    }


__all__ = ["CONFIDENCE", "RESAMPLES", "bootstrap_ci", "bootstrap_means", "paired_test", "summarize"]
