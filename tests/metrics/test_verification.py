"""LFW's 10-fold protocol: known answers on synthetic similarities, real faces with dlib."""

from __future__ import annotations

import numpy as np
import pytest

from jasrbench.data import degrade
from jasrbench.data.lfw import read_pairs
from jasrbench.metrics import recognizers
from jasrbench.metrics import verification as V


def _known_folds(seed=0, folds=10, per_class=60):
    """Similarities separable by any threshold in (0.4, 0.6) except planted mistakes that no
    threshold can fix (same pairs at ≤ 0.0, different pairs at ≥ 0.8): fold k has 1 + k % 4
    mistakes, so its held-out accuracy is known exactly."""
    rng = np.random.default_rng(seed)
    sims, same, fold = [], [], []
    expected = []
    for k in range(folds):
        s_same = rng.uniform(0.6, 1.0, per_class)
        s_diff = rng.uniform(-0.2, 0.4, per_class)
        mistakes = 1 + k % 4
        n_same_bad = (mistakes + 1) // 2
        s_same[:n_same_bad] = rng.uniform(-0.2, 0.0, n_same_bad)
        s_diff[: mistakes - n_same_bad] = rng.uniform(0.8, 1.0, mistakes - n_same_bad)
        sims += [*s_same, *s_diff]
        same += [True] * per_class + [False] * per_class
        fold += [k] * 2 * per_class
        expected.append(1 - mistakes / (2 * per_class))
    return np.array(sims), np.array(same), np.array(fold), np.array(expected)


def test_known_threshold_gives_known_accuracy():
    sims, same, folds, expected = _known_folds()
    res = V.kfold_accuracy(sims, same, folds)
    np.testing.assert_allclose(res["fold_accuracies"], expected, atol=1e-12)
    assert res["accuracy_mean"] == pytest.approx(expected.mean(), abs=1e-12)
    assert res["accuracy_std"] == pytest.approx(np.std(expected), abs=1e-12)  # population std
    assert res["accuracy_sem"] == pytest.approx(np.std(expected, ddof=1) / np.sqrt(10), abs=1e-12)
    gap_lo = sims[(sims < 0.5) & (sims > 0.0)].max()
    gap_hi = sims[(sims > 0.5) & (sims < 0.8)].min()
    # Each threshold lies in the gap: the midpoint of the two training similarities around it.
    assert ((res["thresholds"] > gap_lo - 1e-12) & (res["thresholds"] < gap_hi + 1e-12)).all()


def test_embeddings_give_the_same_result_as_their_similarities():
    sims, same, folds, expected = _known_folds(seed=3)
    angles = np.arccos(sims)
    emb = np.zeros((2 * len(sims), 2))
    emb[0::2] = [2.0, 0.0]  # unnormalized on purpose
    emb[1::2] = np.stack([np.cos(angles), np.sin(angles)], 1) * 0.5
    pairs = np.stack([np.arange(0, 2 * len(sims), 2), np.arange(1, 2 * len(sims), 2)], 1)
    res = V.evaluate_pairs(emb, pairs, same, folds)
    np.testing.assert_allclose(res["similarities"], sims, atol=1e-12)
    np.testing.assert_allclose(res["fold_accuracies"], expected, atol=1e-12)


def _brute_force_best(sims, same):
    """Every midpoint between sorted similarities and both ends, evaluated one by one."""
    s = np.unique(sims)
    candidates = [s[0] - 1] + [(a + b) / 2 for a, b in zip(s[:-1], s[1:])] + [s[-1] + 1]
    accs = [np.mean((sims > t) == same) for t in candidates]
    return max(accs)


@pytest.mark.parametrize("seed", range(5))
def test_exact_threshold_search_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 200
    same = rng.random(n) < 0.5
    sims = np.round(rng.normal(same * 0.8, 0.6), 1)  # rounded: many ties
    t, acc = V.best_threshold(sims, same)
    assert acc == pytest.approx(_brute_force_best(sims, same), abs=1e-15)
    assert V.accuracy(sims, same, t) == pytest.approx(acc, abs=1e-15)
    # Never worse than facenet's grid search on the same data.
    grid = np.arange(-4, 4, 0.01)
    assert acc >= max(np.mean((sims > g) == same) for g in grid) - 1e-15


def test_degenerate_training_sets():
    assert V.best_threshold([0.1, 0.2], [True, True])[1] == 1.0
    assert V.best_threshold([0.1, 0.2], [False, False])[1] == 1.0
    assert V.best_threshold([0.3, 0.3, 0.3], [True, False, True])[1] == pytest.approx(2 / 3)


def test_roc_auc_equals_the_mann_whitney_statistic():
    rng = np.random.default_rng(7)
    same = rng.random(300) < 0.5
    sims = rng.normal(same * 1.0, 1.0)
    _, _, _, area = V.roc(sims, same)
    pos, neg = sims[same], sims[~same]
    mw = (np.sum(pos[:, None] > neg[None, :]) + 0.5 * np.sum(pos[:, None] == neg[None, :])) / (pos.size * neg.size)
    assert area == pytest.approx(mw, abs=1e-12)


def test_pair_arrays_from_read_pairs(lfw_pairs_file, verify_root):
    pairs = read_pairs(lfw_pairs_file)  # official LFW View 2: 3- and 4-column lines
    names = sorted({f"{p.name1}_{p.index1:04d}" for p in pairs} | {f"{p.name2}_{p.index2:04d}" for p in pairs})
    idx, same, folds = V.pair_arrays(pairs, [f"{n.rsplit('_', 1)[0]}/{n}.jpg" for n in names])
    assert idx.shape == (6000, 2) and same.sum() == 3000 and np.bincount(folds).tolist() == [600] * 10
    assert [names[i] for i in idx[0]] == [f"{pairs[0].name1}_{pairs[0].index1:04d}", f"{pairs[0].name2}_{pairs[0].index2:04d}"]
    with pytest.raises(KeyError, match="not among the embeddings"):
        V.pair_arrays(read_pairs(verify_root / "pairs.txt"), names[:10])


def test_evaluate_lfw_with_identity_embeddings(verify_root):
    """Perfect embeddings (one direction per person, slightly noisy) → 100% on every fold."""
    pairs = read_pairs(verify_root / "pairs.txt")
    names = sorted({f"{p.name1}_{p.index1:04d}" for p in pairs} | {f"{p.name2}_{p.index2:04d}" for p in pairs})
    people = sorted({n.rsplit("_", 1)[0] for n in names})
    rng = np.random.default_rng(0)
    emb = np.eye(len(people))[[people.index(n.rsplit("_", 1)[0]) for n in names]] + rng.normal(0, 0.01, (len(names), len(people)))
    res = V.evaluate_lfw(emb, names, pairs)
    assert res["pairs"] == 1200 and res["accuracy_mean"] == 1.0 and res["roc_auc"] == 1.0


# --- real faces -----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def dlib_verify(verify_faces):
    """dlib embeddings of the verify set's HR crops and of their bicubic ×8 versions (computed once)."""
    rec = recognizers.get("dlib")
    hr = verify_faces.hr
    bicubic = degrade.to_uint8(degrade.upsample(degrade.make_lr(degrade.to_tensor(hr))))
    return {
        "hr": V.evaluate_lfw(rec.embed(hr), verify_faces.names, verify_faces.pairs),
        "bicubic": V.evaluate_lfw(rec.embed(bicubic), verify_faces.names, verify_faces.pairs),
    }


@pytest.mark.slow
def test_dlib_on_hr_verify_faces_reaches_95_percent(dlib_verify):
    hr = dlib_verify["hr"]
    assert len(hr["fold_accuracies"]) == 10 and hr["pairs"] == 1200
    assert hr["accuracy_mean"] >= 0.95
    assert hr["roc_auc"] > 0.98


@pytest.mark.slow
def test_bicubic_x8_is_clearly_worse(dlib_verify):
    hr, bic = dlib_verify["hr"], dlib_verify["bicubic"]
    assert bic["accuracy_mean"] <= hr["accuracy_mean"] - 0.08
    assert bic["accuracy_mean"] > 0.6  # degraded, not destroyed: still far above chance
    assert bic["roc_auc"] < hr["roc_auc"]
