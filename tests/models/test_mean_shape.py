"""The no-learning landmark floor (``mean_shape``): fitted in closed form, evaluated like any landmark model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import jasrbench.params as jparams
from jasrbench.data.split import load_split
from jasrbench.metrics import landmarks as lm
from jasrbench.models import build
from jasrbench.paths import REPO_ROOT


def test_fit_is_the_per_point_mean_over_annotated_faces(faces):
    model = build("mean_shape")
    pts = faces["landmarks"].numpy().copy()
    vis = np.ones(pts.shape[:2], dtype=bool)
    vis[0, :5] = False  # five points not annotated on the first face: their mean is the second face's
    pts[0, :5] = np.nan
    model.fit_training_faces(pts, vis)
    expected = np.where(vis[..., None], pts, 0).sum(0) / vis.sum(0)[:, None]
    np.testing.assert_allclose(model.points.detach().numpy(), expected, rtol=0, atol=1e-4)
    np.testing.assert_allclose(model.points.detach().numpy()[:5], pts[1, :5], rtol=0, atol=1e-4)

    # The prediction is the same shape whatever the face, and decodes without error.
    with torch.no_grad():
        out = model.eval()(faces["lr"])
        flipped = model(faces["lr"].flip(-1))
    points = model.decode_landmarks(out)
    torch.testing.assert_close(points, model.points.detach().expand(2, -1, -1))
    torch.testing.assert_close(model.decode_landmarks(flipped), points)
    assert out.heatmaps[0].shape == (2, 69, 16, 16)


def test_fit_refuses_a_point_annotated_nowhere(faces):
    model = build("mean_shape")
    vis = np.ones(faces["landmarks"].shape[:2], dtype=bool)
    vis[:, 7] = False
    with pytest.raises(ValueError, match=r"points \[7\]"):
        model.fit_training_faces(faces["landmarks"].numpy(), vis)


def test_training_stage_fits_the_floor_and_evaluation_scores_it(prepared_300w, tmp_path, monkeypatch):
    """`train mean_shape` takes no optimizer step, saves the training faces' mean shape, and its NME on the
    test faces is that of the mean shape itself: a floor every landmark model must beat."""
    from jasrbench.evaluate import evaluate
    from jasrbench.runtime import model_from_checkpoint
    from jasrbench.train import train

    monkeypatch.setenv("JASRBENCH_MLFLOW", "0")
    params = copy.deepcopy(jparams.load_profile("smoke", REPO_ROOT))
    params["data"]["prepared"] = str(prepared_300w.out.parent)
    params["train"].update({"epochs": 1, "max_faces": None, "val_faces": 16})
    params["evaluate"].update({"max_faces": None, "bootstrap_resamples": 100})
    params["models"]["mean_shape"] = {"tables": [2]}
    summary = train("mean_shape", "300w", params, tmp_path / "ckpt", tmp_path / "res")
    assert summary["steps_per_epoch"] == 0 and summary["selected_by"] == "val_nme"

    data = load_split(prepared_300w.out / "train.npz")
    model, _ = model_from_checkpoint(tmp_path / "ckpt" / "model.pt")
    from jasrbench.holdout import carve_validation
    train_idx, _ = carve_validation(len(data), 0, 16, None)
    vis = data.visible[train_idx]
    expected = np.where(vis[..., None], data.landmarks[train_idx], 0).sum(0) / vis.sum(0)[:, None]
    np.testing.assert_allclose(model.points.detach().numpy(), expected, rtol=0, atol=1e-3)

    result = evaluate(str(tmp_path / "ckpt" / "model.pt"), "300w/common", tmp_path / "eval", params)
    test = load_split(prepared_300w.out / "common.npz")
    direct = lm.nme(np.broadcast_to(expected, test.landmarks.shape), test.landmarks, test.visible,
                    normalizer=lm.default_normalizer(68), boxes=test.boxes)
    assert result["metrics"]["nme"]["mean"] == pytest.approx(float(np.mean(direct)), rel=1e-4)
    # Nothing learned is far from the paper's 5–6 %, yet not absurd: the crop is set by the landmark box.
    assert 6.0 < result["metrics"]["nme"]["mean"] < 40.0
    assert (tmp_path / "eval" / "ced.csv").is_file()
