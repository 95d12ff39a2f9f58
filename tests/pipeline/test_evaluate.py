"""Evaluation and collection on real faces: per-image values, summaries, unavailable splits, LFW layout."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from pipeline_helpers import tiny_params

import jasrbench.dag as jdag
from jasrbench.collect import collect
from jasrbench.data import degrade
from jasrbench.data.prepare import prepare
from jasrbench.data.split import load_split
from jasrbench.errors import ConfigError, DataError
from jasrbench.evaluate import evaluate
from jasrbench.metrics import image_quality
from jasrbench.train import train


def test_bicubic_on_the_common_split(prepared_root, tmp_path):
    params = tiny_params(prepared_root)
    summary = evaluate("bicubic", "300w/common", tmp_path, params)
    frame = pd.read_csv(tmp_path / "per_image.csv")
    assert summary["available"] and summary["faces"] == len(frame) == 24
    split = load_split(prepared_root / "300w" / "common.npz")
    assert set(frame["name"]) <= set(split.names.tolist())
    # The per-image PSNR/SSIM are those of the bicubic upsampling of the stored 8-bit LR, in the face box.
    idx = [int(np.flatnonzero(split.names == n)[0]) for n in frame["name"]]
    hr = degrade.to_tensor(split.hr[idx])
    sr = degrade.upsample(degrade.to_tensor(split.lr[idx]))
    direct = image_quality.psnr_ssim(sr, hr, torch.from_numpy(split.boxes[idx]))
    np.testing.assert_allclose(frame["psnr"], direct["psnr"].numpy(), atol=1e-4)
    np.testing.assert_allclose(frame["ssim"], direct["ssim"].numpy(), atol=1e-5)
    for key in ("psnr", "ssim", "psnr_image", "ssim_image", "ssim_jasrnet_code"):
        m = summary["metrics"][key]
        assert m["ci_low"] <= m["mean"] <= m["ci_high"] and m["n"] == 24
        assert math.isclose(m["mean"], frame[key].mean(), rel_tol=1e-5)
    assert 15 < summary["metrics"]["psnr"]["mean"] < 35 and 0.3 < summary["metrics"]["ssim"]["mean"] < 1
    assert "nme" not in summary["metrics"]  # bicubic predicts no landmarks
    assert summary["metrics"]["ssim_jasrnet_code"]["mean"] > summary["metrics"]["ssim"]["mean"]
    # Same seed, same subset, same numbers.
    again = evaluate("bicubic", "300w/common", tmp_path / "again", params)
    assert again["metrics"] == summary["metrics"]


def test_unavailable_split_is_reported_with_its_reason(prepared_root, tmp_path):
    summary = evaluate("bicubic", "300w/challenge", tmp_path, tiny_params(prepared_root))
    assert summary["available"] is False and "ibug" in summary["reason"]
    assert json.loads((tmp_path / "summary.json").read_text())["reason"] == summary["reason"]
    assert pd.read_csv(tmp_path / "per_image.csv").empty


def test_missing_split_and_untrained_model_are_named_errors(prepared_root, tmp_path):
    params = tiny_params(prepared_root)
    with pytest.raises(DataError, match="helen"):
        evaluate("bicubic", "helen/test", tmp_path, params)
    with pytest.raises(ConfigError, match="give its trained checkpoint"):
        evaluate("jasrnet", "300w/common", tmp_path, params)


def test_trained_landmark_model(prepared_root, tmp_path):
    params = tiny_params(prepared_root, epochs=1)
    train("jasrnet", "300w", params, tmp_path / "ckpt")
    summary = evaluate(str(tmp_path / "ckpt" / "model.pt"), "300w/common", tmp_path / "eval", params)
    metrics = summary["metrics"]
    assert {"psnr", "ssim", "nme", "nme_inter_pupil", "auc_0.08", "failure_rate_0.08"} <= set(metrics)
    assert summary["nme_normalizer"] == "inter_ocular" and metrics["nme"]["mean"] > 0
    ced = pd.read_csv(tmp_path / "eval" / "ced.csv")
    assert ced["fraction"].is_monotonic_increasing and 0 <= ced["fraction"].min() and ced["fraction"].max() <= 1
    per_image = pd.read_csv(tmp_path / "eval" / "per_image.csv")
    assert len(per_image) == 24 and per_image["nme"].notna().all()
    # One thread instead of two: the same summary, byte for byte (no number depends on the thread count).
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        evaluate(str(tmp_path / "ckpt" / "model.pt"), "300w/common", tmp_path / "eval1", params)
    finally:
        torch.set_num_threads(threads)
    for name in ("per_image.csv", "ced.csv"):
        assert (tmp_path / "eval1" / name).read_bytes() == (tmp_path / "eval" / name).read_bytes(), name
    # summary.json records how it ran (threads among it); every number in it is the same.
    one, two = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("eval1", "eval"))
    assert one.pop("runtime")["threads"] != two.pop("runtime")["threads"]
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)


@pytest.fixture(scope="module")
def prepared_verify(verify_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "lfw"
    prepare("lfw", verify_root, out)
    return out


def test_lfw_layout_verification(prepared_verify, prepared_root, tmp_path):
    params = tiny_params(prepared_verify.parent)
    params["data"]["datasets"]["lfw"]["stand_in"] = "the verify set, not LFW"
    params["evaluate"]["pairs_per_fold"] = 3
    summary = evaluate("bicubic", "lfw/test", tmp_path, params, hr_reference=True)
    assert summary["stand_in"] == "the verify set, not LFW" and summary["recognizer"] == "dlib"
    assert summary["pairs"] == 60  # 10 folds × (3 same + 3 different)
    for key in ("acc", "acc_hr"):
        acc = summary["metrics"][key]
        assert len(acc["folds"]) == 10 and 0 <= acc["mean"] <= 100 and acc["n"] == 60
        assert math.isclose(acc["mean"], float(np.mean(acc["folds"])))
    assert 0 <= summary["metrics"]["roc_auc"]["mean"] <= 1
    assert summary["faces"] == len(pd.read_csv(tmp_path / "per_image.csv"))


def test_subset_pairs_keeps_the_protocol(prepared_verify):
    split = load_split(prepared_verify / "test.npz")
    small = split.subset_pairs(2)
    assert len(small.pairs) == 40 and sorted(set(small.pair_fold.tolist())) == list(range(10))
    assert small.pair_same.sum() == 20
    # Re-indexed pairs point at the same people as before.
    for (i, j), same in zip(small.pairs, small.pair_same):
        assert (small.identities[i] == small.identities[j]) == same


def test_collect_merges_every_summary(prepared_root, tmp_path, monkeypatch):
    params = tiny_params(prepared_root)
    params["models"], params["runs"] = {"bicubic": {"tables": [1]}}, {}
    params.pop("robustness", None)  # a reduced profile: the robustness track is test_smoke_dag's
    jdag.set_model_runs(params, "bicubic", {"300w": ["300w/common", "300w/challenge"]})
    params["data"]["datasets"] = {"300w": params["data"]["datasets"]["300w"]}
    monkeypatch.chdir(tmp_path)
    for item in jdag.stages(params)["evaluate_untrained"].values():
        evaluate(item["model"], item["split"], item["out"], params)
    merged = collect(params, tmp_path)
    entry = merged["models"]["bicubic"]
    assert entry["300w/common"]["available"] and entry["300w/common"]["psnr"]["n"] == 24
    assert entry["300w/challenge"]["available"] is False and "ibug" in entry["300w/challenge"]["reason"]
    # A non-finite metric is a bug upstream: collect refuses it, naming the file.
    path = tmp_path / "results" / "smoke" / "eval" / "bicubic-300w" / "300w_common" / "summary.json"
    bad = json.loads(path.read_text())
    bad["metrics"]["psnr"]["mean"] = "NaN"
    path.write_text(json.dumps(bad).replace('"NaN"', "NaN"))
    with pytest.raises(DataError, match="psnr"):
        collect(params, tmp_path)


def test_lr64_trains_and_evaluates_on_64px_faces(prepared_root, tmp_path):
    """Table 2's top row end to end: training batches, validation and evaluation all use ×2 LR (64×64)."""
    params = tiny_params(prepared_root, epochs=1)
    params["models"]["jasrnet_lr64"] = {"tables": [2], "overrides": {"n_feats": 16, "n_shared_blocks": 1}}
    train("jasrnet_lr64", "300w", params, tmp_path / "ckpt")
    history = pd.read_csv(tmp_path / "ckpt" / "history.csv")
    assert history["val_psnr"].notna().all() and history["val_nme"].notna().all()
    summary = evaluate(str(tmp_path / "ckpt" / "model.pt"), "300w/common", tmp_path / "eval", params)
    assert summary["arch"] == "jasrnet_lr64" and summary["lr_size"] == 64
    # Even untrained, its landmarks are decoded and scored on the same faces as the ×8 models'.
    assert summary["metrics"]["nme"]["n"] == 24 and summary["metrics"]["psnr"]["n"] == 24
