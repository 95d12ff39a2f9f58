"""The robustness track's stages (issue 26): evaluation under a camera degradation, training on one, their
DAG entries and their checks, on real faces of the prepared shared 300W subset."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from pipeline_helpers import tiny_params

import jasrbench.dag as jdag
import jasrbench.params as jparams
from jasrbench.batcher import Batcher
from jasrbench.data import degrade
from jasrbench.data.degradations import lr_uint8
from jasrbench.data.split import load_split
from jasrbench.errors import ConfigError
from jasrbench.evaluate import evaluate
from jasrbench.holdout import carve_validation
from jasrbench.paths import REPO_ROOT
from jasrbench.recipe import AugmentConfig
from jasrbench.train import train

IDENTITY = AugmentConfig(scale=(1.0, 1.0), rotation=0.0, flip=0.0, translate=0.0)


def test_training_lr_on_mixed_equals_the_prepared_mixed_lr(prepared_root):
    # An identity augmentation reproduces the stored HR crop; the batcher's LR of epoch 1 is then the bytes a
    # split prepared with --protocol mixed holds for those faces (each face's draw seeded by its name).
    split = load_split(prepared_root / "300w" / "train.npz")
    train_idx, _ = carve_validation(len(split), 0, 8, 32)
    batcher = Batcher(split, train_idx, IDENTITY, None, torch.device("cpu"), seed=0, batch_size=8,
                      copies_per_epoch=1.0, degradation="mixed")
    for step in (0, 1):
        batch = batcher.global_batch(0, step)
        idx = batcher.indices(0, step).numpy()
        prepared = lr_uint8(split.hr[idx], "mixed", split.names[idx])
        assert np.array_equal(degrade.to_uint8(batch["lr"]), prepared)
        assert not np.array_equal(prepared, split.lr[idx])  # the degradation did something
    # A later epoch draws afresh (the same faces get other blur/noise/JPEG), the HR path is untouched.
    later = batcher.global_batch(1, 0)
    assert not np.array_equal(degrade.to_uint8(later["lr"]),
                              lr_uint8(split.hr[batcher.indices(1, 0).numpy()], "mixed",
                                       split.names[batcher.indices(1, 0).numpy()]))


def test_evaluation_under_a_degradation_scores_the_degraded_lr_and_records_both(prepared_root, tmp_path):
    params = tiny_params(prepared_root)
    clean = evaluate("bicubic", "300w/common", tmp_path / "clean", params, prepared=prepared_root)
    noisy = evaluate("bicubic", "300w/common", tmp_path / "noise", params, prepared=prepared_root,
                     degradation="noise20")
    assert noisy["degradation"] == "noise20" and "degradation" not in clean
    assert noisy["protocol"] == clean["protocol"] == "paper"  # the crop and kernel stay the paper's
    assert noisy["metrics"]["psnr"]["mean"] < clean["metrics"]["psnr"]["mean"] - 0.5  # σ 20/255 costs bicubic
    # Blur on the HR before the non-antialiased ×8 cubic removes aliasing as well as detail: bicubic's PSNR
    # against the sharp HR moves (up, on these faces); the point is that the LR it scores is another one.
    blurred = evaluate("bicubic", "300w/common", tmp_path / "blur", params, prepared=prepared_root,
                       degradation="blur4")
    assert abs(blurred["metrics"]["psnr"]["mean"] - clean["metrics"]["psnr"]["mean"]) > 0.1
    with pytest.raises(ConfigError, match="--degradation paper: not a camera degradation"):
        evaluate("bicubic", "300w/common", tmp_path / "x", params, prepared=prepared_root, degradation="paper")


def test_a_model_trained_on_mixed_records_it_and_is_evaluated_on_clean_and_degraded_splits(prepared_root, tmp_path):
    params = tiny_params(prepared_root, epochs=1)
    params["models"]["edsr_mixed"] = {"arch": "edsr", "tables": [], "overrides": {"n_feats": 8, "n_blocks": 1},
                                      "train": {"degradation": "mixed"}}
    info = train("edsr_mixed", "300w", params, tmp_path / "m", tmp_path / "r")
    assert info["model"] == "edsr_mixed"
    ckpt = torch.load(tmp_path / "m" / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["degradation"] == "mixed"
    for degradation in (None, "mixed"):
        summary = evaluate(str(tmp_path / "m" / "model.pt"), "300w/common", tmp_path / f"e{degradation}", params,
                           prepared=prepared_root, degradation=degradation)
        assert summary["trained_degradation"] == "mixed" and summary.get("degradation") == degradation


def test_robustness_entries_follow_the_profile_and_are_checked():
    params = copy.deepcopy(jparams.load_profile("smoke", REPO_ROOT))
    degradations, splits, models = jdag.robustness_plan(params)
    assert {"blur2", "noise5", "jpeg50", "mixed"} == set(degradations) and splits == {"300w/common"}
    robust = params["runs"]["robustness"]
    for model in models - {"bicubic"}:
        for d in degradations:
            assert f"{model}-300w-300w_common-{d}" in robust, (model, d)
    assert set(params["runs"]["robustness_untrained"]) == {f"bicubic-300w-300w_common-{d}" for d in degradations}
    stage = jdag.stages(params)["robustness"]["edsr-300w-300w_common-blur2"]
    assert stage["out"] == "results/smoke/eval/edsr-300w/robustness/blur2/300w_common"
    assert stage["checkpoint"] == "models/smoke/edsr-300w/model.pt"
    bad = copy.deepcopy(params)
    bad["runs"]["robustness"]["edsr-300w-300w_common-blur2"]["degradation"] = "blur3"
    with pytest.raises(ConfigError, match="is not in the profile's robustness.degradations"):
        jdag.check_runs(bad)
    bad = copy.deepcopy(params)
    bad["robustness"]["degradations"] = ["blur2", "fog"]
    with pytest.raises(ConfigError, match="unknown camera degradation 'fog'"):
        jdag.check_runs(bad)
    bad = copy.deepcopy(params)
    bad["models"]["edsr_mixed"]["train"] = {"degradation": "haze"}
    with pytest.raises(ConfigError, match="models.edsr_mixed.train.degradation: unknown camera degradation 'haze'"):
        jparams.validate(bad)
