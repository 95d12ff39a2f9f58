"""Bootstrap intervals and paired tests: coverage, determinism, power and null behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jasrbench.metrics import statistics as st


def test_interval_covers_the_true_mean_at_about_the_nominal_rate():
    """400 seeded samples (n = 40) from a skewed distribution with known mean 1 (exponential):
    the 95% percentile interval should cover 1 in about 95% of them (the percentile bootstrap
    runs slightly under nominal for skewed data at n = 40)."""
    rng = np.random.default_rng(2024)
    covered = []
    for trial in range(400):
        sample = rng.exponential(1.0, 40)
        lo, hi = st.bootstrap_ci(sample, seed=trial, resamples=2000)
        covered.append(lo <= 1.0 <= hi)
    rate = np.mean(covered)
    assert 0.90 <= rate <= 0.98, rate


def test_normal_data_coverage_and_width():
    rng = np.random.default_rng(7)
    covered, widths = [], []
    for trial in range(300):
        sample = rng.normal(5.0, 2.0, 100)
        lo, hi = st.bootstrap_ci(sample, seed=trial, resamples=2000)
        covered.append(lo <= 5.0 <= hi)
        widths.append(hi - lo)
    assert 0.92 <= np.mean(covered) <= 0.98
    # Width ≈ 2 · 1.96 · σ/√n = 0.784 (the bootstrap uses the population std: slightly narrower).
    assert np.mean(widths) == pytest.approx(2 * 1.96 * 2.0 / 10, rel=0.06)


def test_identical_seeds_give_identical_results_and_seeds_matter():
    values = np.random.default_rng(0).normal(size=554)
    a = st.bootstrap_ci(values, seed=11)
    assert a == st.bootstrap_ci(values.copy(), seed=11)
    assert a != st.bootstrap_ci(values, seed=12)
    assert st.bootstrap_ci(torch.from_numpy(values), seed=11) == a  # tensors accepted
    s = st.summarize(values, seed=11)
    assert s == {"mean": float(values.mean()), "ci_low": a[0], "ci_high": a[1], "n": 554}
    assert s["ci_low"] < s["mean"] < s["ci_high"]


def test_chunking_does_not_change_the_draws(monkeypatch):
    values = np.random.default_rng(1).normal(size=300)
    whole = st.bootstrap_means(values, seed=5, resamples=500)
    monkeypatch.setattr(st, "_MAX_INDEX_ENTRIES", 300 * 7)  # 7 resamples per chunk
    np.testing.assert_array_equal(st.bootstrap_means(values, seed=5, resamples=500), whole)


def test_paired_test_detects_a_real_shift():
    rng = np.random.default_rng(3)
    base = rng.normal(23.0, 2.0, 554)  # e.g. per-face PSNR of one model
    other = base + 0.15 + rng.normal(0, 0.5, 554)  # a second model, 0.15 dB better on average
    res = st.paired_test(other, base, seed=0)
    assert res["significant"] and res["ci_low"] > 0
    assert res["mean_diff"] == pytest.approx(float(np.mean(other - base)))
    assert res["ci_low"] < 0.15 < res["ci_high"]
    assert res["p_bootstrap"] < 0.01 and res["p_wilcoxon"] < 0.01


def test_paired_test_finds_nothing_for_identical_inputs_or_no_shift():
    rng = np.random.default_rng(4)
    values = rng.normal(0.7, 0.1, 300)
    same = st.paired_test(values, values.copy())
    assert same["mean_diff"] == 0 and same["ci_low"] == 0 == same["ci_high"]
    assert not same["significant"] and same["p_bootstrap"] == 1.0 and same["p_wilcoxon"] == 1.0
    noise = st.paired_test(values, values + rng.normal(0, 0.05, 300), seed=1)
    assert noise["ci_low"] < 0 < noise["ci_high"] and not noise["significant"]
    assert noise["p_bootstrap"] > 0.05 and noise["p_wilcoxon"] > 0.05


def test_pairing_matters():
    """A shift invisible in unpaired intervals (large between-image spread) is found when paired."""
    rng = np.random.default_rng(5)
    base = rng.normal(0, 3.0, 200)
    other = base + 0.2 + rng.normal(0, 0.1, 200)
    lo_a, hi_a = st.bootstrap_ci(base)
    lo_b, hi_b = st.bootstrap_ci(other)
    assert lo_b < hi_a  # unpaired intervals overlap
    assert st.paired_test(other, base)["significant"]


def test_refusals():
    with pytest.raises(ValueError, match="non-finite"):
        st.bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="no values"):
        st.summarize([])
    with pytest.raises(ValueError, match="equal length"):
        st.paired_test([1.0, 2.0], [1.0])
