"""LFW verification: the 10-fold protocol on cosine similarities, ROC and AUC (DESIGN §4).

LFW View 2 as facenet evaluates it: a pair is *same person* when its cosine similarity is
greater than the threshold; for each fold the threshold is chosen on the other folds and the
fold's accuracy measured with it. The threshold search is exact, not a grid (accuracy only
changes at the training similarities, so the midpoints between distinct sorted values are the
only candidates; ties go to the lowest, as facenet's argmax does), hence at least as accurate on
the training folds as facenet's grid. ``accuracy_std`` is the population std of the fold
accuracies (ddof = 0, what papers print as "± std"); ``accuracy_sem`` is LFW's standard error
(ddof = 1, / √folds). ROC/AUC by scikit-learn over all pairs. Embeddings need not be normalized.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from ..data.lfw import Pair, image_name


def _array(a, dtype=np.float64) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


def cosine_similarity(a, b) -> np.ndarray:
    """Row-wise cosine similarity of two N×D arrays."""
    a, b = _array(a), _array(b)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    if not ((na > 0).all() and (nb > 0).all()):
        raise ValueError("zero embedding: cosine similarity undefined")
    return np.einsum("nd,nd->n", a, b) / (na * nb)


def pair_similarities(embeddings, pairs) -> np.ndarray:
    """Cosine similarity of each pair ``(i, j)`` of rows of ``embeddings`` (N×D) → P."""
    emb = _array(embeddings)
    idx = _array(pairs, np.int64)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be N×D, got {emb.shape}")
    if idx.ndim != 2 or idx.shape[1] != 2:
        raise ValueError(f"pairs must be P×2 row indices, got {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= len(emb)):
        raise ValueError(f"pair indices outside 0…{len(emb) - 1}")
    return cosine_similarity(emb[idx[:, 0]], emb[idx[:, 1]])


def pair_arrays(pairs: Sequence[Pair], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices P×2, same P, folds P) of ``read_pairs`` output against face names.

    ``names[i]`` names row ``i`` of the embeddings: LFW's image name
    ``NAME_0001`` (:func:`jasrbench.data.lfw.image_name`), optionally with
    folders or a file suffix (``NAME/NAME_0001.jpg``): the file stem is used.
    """
    index: dict[str, int] = {}
    for i, n in enumerate(names):
        stem = PurePosixPath(str(n).replace("\\", "/")).stem
        if stem in index:
            raise ValueError(f"face name {stem!r} appears twice")
        index[stem] = i
    rows, same, folds = [], [], []
    for p in pairs:
        keys = image_name(p.name1, p.index1), image_name(p.name2, p.index2)
        missing = [k for k in keys if k not in index]
        if missing:
            raise KeyError(f"pair of fold {p.fold + 1} names faces not among the embeddings: {missing}")
        rows.append((index[keys[0]], index[keys[1]]))
        same.append(p.same)
        folds.append(p.fold)
    return (np.asarray(rows, dtype=np.int64).reshape(-1, 2), np.asarray(same, dtype=bool),
            np.asarray(folds, dtype=np.int64))


def _sorted_candidates(sims: np.ndarray, same: np.ndarray):
    """Distinct sorted similarities, and per candidate the (#different ≤ it, #same ≤ it) counts."""
    order = np.argsort(sims, kind="stable")
    s, y = sims[order], same[order]
    last = np.r_[s[1:] != s[:-1], True]  # last element of each run of equal values
    cum_same = np.cumsum(y)[last]
    cum_diff = np.cumsum(~y)[last]
    return s[last], cum_same, cum_diff


def best_threshold(similarities, same) -> tuple[float, float]:
    """Exact accuracy-maximizing threshold (``same`` ⇔ sim > t) and its accuracy on these pairs."""
    sims, y = _array(similarities), _array(same, bool)
    if sims.shape != y.shape or sims.ndim != 1 or sims.size == 0:
        raise ValueError("similarities and same must be equal-length non-empty vectors")
    if not np.isfinite(sims).all():
        raise ValueError("non-finite similarities")
    values, cum_same, cum_diff = _sorted_candidates(sims, y)
    n, n_same = y.size, int(y.sum())
    # Candidate j = threshold just above values[j-1] (j = 0: below everything): the pairs with
    # sim ≤ t are predicted different. Correct = different at or below + same above.
    correct = np.r_[n_same, cum_diff + (n_same - cum_same)]
    j = int(np.argmax(correct))
    if j == 0:
        t = values[0] - 1.0
    elif j == len(values):
        t = values[-1] + 1.0
    else:
        t = 0.5 * (values[j - 1] + values[j])
    return float(t), float(correct[j] / n)


def accuracy(similarities, same, threshold: float) -> float:
    """Fraction of pairs classified correctly by ``sim > threshold``."""
    sims, y = _array(similarities), _array(same, bool)
    return float(((sims > threshold) == y).mean())


def kfold_accuracy(similarities, same, folds) -> dict:
    """LFW's protocol: per fold, threshold from the other folds, accuracy on it.

    Returns ``fold_accuracies``, ``thresholds`` (per fold), ``accuracy_mean``,
    ``accuracy_std`` (population) and ``accuracy_sem`` (LFW's standard error).
    """
    sims, y, f = _array(similarities), _array(same, bool), _array(folds, np.int64)
    if not (sims.shape == y.shape == f.shape) or sims.ndim != 1:
        raise ValueError("similarities, same and folds must be equal-length vectors")
    fold_ids = np.unique(f)
    if len(fold_ids) < 2:
        raise ValueError("the k-fold protocol needs at least two folds")
    accs, thresholds = [], []
    for k in fold_ids:
        test = f == k
        t, _ = best_threshold(sims[~test], y[~test])
        thresholds.append(t)
        accs.append(accuracy(sims[test], y[test], t))
    accs_a = np.asarray(accs)
    return {
        "fold_accuracies": accs_a,
        "thresholds": np.asarray(thresholds),
        "accuracy_mean": float(accs_a.mean()),
        "accuracy_std": float(accs_a.std()),
        "accuracy_sem": float(accs_a.std(ddof=1) / np.sqrt(len(accs_a))),
    }


def roc(similarities, same) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(false-positive rates, true-positive rates, thresholds, area under the ROC)."""
    sims, y = _array(similarities), _array(same, bool)
    if y.all() or not y.any():
        raise ValueError("ROC needs both same and different pairs")
    fpr, tpr, thr = roc_curve(y, sims)
    return fpr, tpr, thr, float(roc_auc_score(y, sims))


def evaluate_similarities(similarities, same, folds) -> dict:
    """k-fold accuracy (see :func:`kfold_accuracy`) plus ``roc_auc``, ``roc_fpr``, ``roc_tpr``."""
    out = kfold_accuracy(similarities, same, folds)
    fpr, tpr, _, area = roc(similarities, same)
    out.update(roc_auc=area, roc_fpr=fpr, roc_tpr=tpr, pairs=int(len(_array(same, bool))))
    return out


def evaluate_pairs(embeddings, pairs, same, folds) -> dict:
    """The protocol from embeddings (N×D) and pair arrays (P×2 indices, P same flags, P folds)."""
    sims = pair_similarities(embeddings, pairs)
    out = evaluate_similarities(sims, same, folds)
    out["similarities"] = sims
    return out


def evaluate_lfw(embeddings, names: Sequence[str], pairs: Sequence[Pair]) -> dict:
    """The protocol from embeddings whose rows are the faces ``names`` and ``read_pairs`` output."""
    return evaluate_pairs(embeddings, *pair_arrays(pairs, names))


__all__ = [
    "accuracy", "best_threshold", "cosine_similarity", "evaluate_lfw", "evaluate_pairs", "evaluate_similarities",
    "kfold_accuracy", "pair_arrays", "pair_similarities", "roc",
]
