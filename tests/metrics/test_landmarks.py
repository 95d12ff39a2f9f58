"""NME, CED, AUC@0.08 and failure rate vs independent plain computations on real 300W landmarks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jasrbench.metrics import landmarks as lm


@pytest.fixture(scope="module")
def gt(common_faces):
    return common_faces.points.astype(np.float64)


@pytest.fixture(scope="module")
def pred(gt):
    rng = np.random.default_rng(0)
    out = gt + rng.normal(0, 2.0, gt.shape)
    out[::7] += rng.normal(0, 6.0, out[::7].shape)  # some badly localized faces
    return out


def _plain_nme(pred, gt, visible, normalizer, boxes=None):
    """Loops and math.hypot: an independent transcription of the definitions."""
    out = []
    for n in range(len(gt)):
        if normalizer == "inter_ocular":
            d = math.hypot(*(gt[n, 36] - gt[n, 45]))
        elif normalizer == "inter_pupil":
            left = [sum(gt[n, k, c] for k in range(36, 42)) / 6 for c in (0, 1)]
            right = [sum(gt[n, k, c] for k in range(42, 48)) / 6 for c in (0, 1)]
            d = math.hypot(left[0] - right[0], left[1] - right[1])
        else:
            x0, y0, x1, y1 = (float(v) for v in boxes[n])
            d = math.sqrt((x1 - x0) * (y1 - y0))
        errs = [math.hypot(*(pred[n, k] - gt[n, k])) for k in range(gt.shape[1]) if visible[n, k]]
        out.append(100 * sum(errs) / len(errs) / d)
    return np.array(out)


@pytest.mark.parametrize("normalizer", ["inter_ocular", "inter_pupil", "box"])
def test_nme_equals_plain_computation_on_real_landmarks(gt, pred, common_faces, normalizer):
    visible = np.ones(gt.shape[:2], bool)
    ours = lm.nme(pred, gt, visible, normalizer=normalizer, boxes=common_faces.boxes)
    ref = _plain_nme(pred, gt, visible, normalizer, common_faces.boxes)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    assert 1 < ours.mean() < 30  # a perturbation of a few pixels on 128-px faces


def test_nme_accepts_torch_float32(gt, pred):
    ours = lm.nme(torch.from_numpy(pred).float(), torch.from_numpy(gt).float())
    np.testing.assert_allclose(ours, lm.nme(pred, gt), rtol=1e-5)


def test_perfect_prediction_gives_zero(gt):
    assert np.array_equal(lm.nme(gt, gt), np.zeros(len(gt)))
    assert lm.auc(lm.nme(gt, gt)) == 1.0 and lm.failure_rate(lm.nme(gt, gt)) == 0.0


def test_known_shift_gives_known_value(gt):
    shifted = gt + np.array([3.0, 4.0])  # every point 5 px away
    iod = np.linalg.norm(gt[:, 36] - gt[:, 45], axis=1)
    np.testing.assert_allclose(lm.nme(shifted, gt), 500.0 / iod, rtol=1e-12)
    # Box normalizer with a known box: 5 / sqrt(40 × 90) × 100 = 5 / 60 × 100.
    boxes = np.tile([10.0, 20.0, 50.0, 110.0], (len(gt), 1))
    np.testing.assert_allclose(lm.nme(shifted, gt, normalizer="box", boxes=boxes), 500.0 / 60.0, rtol=1e-12)


def test_box_normalizer_defaults_to_the_landmark_box(gt, pred):
    x0, y0 = gt.min(1).T
    x1, y1 = gt.max(1).T
    boxes = np.stack([x0, y0, x1, y1], 1)
    np.testing.assert_allclose(lm.nme(pred, gt, normalizer="box"), lm.nme(pred, gt, normalizer="box", boxes=boxes))


def test_invisible_points_are_excluded(gt, pred, common_faces):
    rng = np.random.default_rng(1)
    visible = rng.random(gt.shape[:2]) > 0.3
    visible[:, 36:48] = True  # the eyes define the normalizers
    corrupt = pred.copy()
    corrupt[~visible] = np.nan  # unannotated points may hold anything
    corrupt[~visible & (rng.random(gt.shape[:2]) > 0.5)] = 1e6
    for normalizer in ("inter_ocular", "inter_pupil", "box"):
        ours = lm.nme(corrupt, gt, visible, normalizer=normalizer, boxes=common_faces.boxes)
        ref = _plain_nme(pred, gt, visible, normalizer, common_faces.boxes)
        np.testing.assert_allclose(ours, ref, rtol=1e-12)
    # Excluding ≠ counting as zero error.
    assert (lm.nme(pred, gt, visible) != lm.nme(pred, gt)).any()


def test_refusals(gt, pred):
    visible = np.ones(gt.shape[:2], bool)
    visible[0, 36] = False
    with pytest.raises(ValueError, match="eye points not visible"):
        lm.nme(pred, gt, visible)
    visible[:] = True
    visible[3] = False
    with pytest.raises(ValueError, match="without visible points"):
        lm.nme(pred, gt, visible)
    with pytest.raises(ValueError, match="68-point"):
        lm.nme(pred[:, :19], gt[:, :19], normalizer="inter_ocular")
    with pytest.raises(ValueError, match="unknown normalizer"):
        lm.nme(pred, gt, normalizer="diagonal")
    assert lm.default_normalizer(68) == "inter_ocular" and lm.default_normalizer(19) == "box"


def _trapezoid_auc(errors_fraction, threshold, steps=20_001):
    """Independent: the CED counted at each point of a fine grid, integrated by the trapezoid rule
    (what 300W tools do with 2,000 points); its error is ≤ half a grid step per face."""
    grid = np.linspace(0, threshold, steps)
    cdf = np.array([np.mean(errors_fraction <= t) for t in grid])
    return float(np.sum((cdf[1:] + cdf[:-1]) / 2 * np.diff(grid)) / threshold)


def test_auc_and_failure_rate_against_independent_computations(gt, pred):
    values = lm.nme(pred, gt)
    assert abs(lm.auc(values) - _trapezoid_auc(values / 100, 0.08)) < 3e-5
    assert lm.failure_rate(values) == sum(v / 100 > 0.08 for v in values) / len(values)
    assert 0 < lm.auc(values) < 1 and 0 < lm.failure_rate(values) < 1
    # A hand-computed case: NME 2, 4, 10 (%) → AUC = ((1 − 2/8) + (1 − 4/8) + 0) / 3, FR = 1/3.
    assert lm.auc([2.0, 4.0, 10.0]) == pytest.approx(1.25 / 3, abs=1e-15)
    assert lm.failure_rate([2.0, 4.0, 10.0]) == pytest.approx(1 / 3)
    assert lm.failure_rate([8.0]) == 0.0  # exactly at the threshold is not a failure


def test_ced_is_the_fraction_below_each_threshold(gt, pred):
    values = lm.nme(pred, gt)
    t, f = lm.ced(values)
    assert t[0] == 0 and t[-1] == pytest.approx(10.0) and len(t) == 1001
    assert np.all(np.diff(f) >= 0) and f[0] == 0
    for k in (100, 400, 800):
        assert f[k] == np.mean(values <= t[k])


def test_compute_landmark_metrics_bundles_everything(gt, pred, common_faces):
    out = lm.compute_landmark_metrics(pred, gt, boxes=common_faces.boxes)
    assert out["normalizer"] == "inter_ocular"
    np.testing.assert_array_equal(out["nme"], lm.nme(pred, gt))
    assert out["auc"] == lm.auc(out["nme"]) and out["failure_rate"] == lm.failure_rate(out["nme"])
