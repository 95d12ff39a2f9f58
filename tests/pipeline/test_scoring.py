"""score_split: the one path from a model and a prepared split to per-image metrics (validation, evaluate, report)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jasrbench import runtime, scoring
from jasrbench.data import degrade
from jasrbench.data.split import load_split
from jasrbench.metrics import image_quality
from jasrbench.metrics import landmarks as lm
from jasrbench.models import build


@pytest.fixture(scope="module")
def common(prepared_root):
    split = load_split(prepared_root / "300w" / "common.npz")
    return split.subset(np.arange(12))


@pytest.fixture(scope="module")
def tiny_jasrnet():
    torch.manual_seed(0)
    model = build("jasrnet", n_feats=16, n_shared_blocks=2, num_points=68)
    model.set_protocol("paper")
    return model.eval()


def test_scores_do_not_depend_on_the_batch_size_and_match_the_metrics_on_whole_stacks(common, tiny_jasrnet):
    cpu = torch.device("cpu")
    small = scoring.score_split(tiny_jasrnet, common, cpu, 5, variants=tuple(scoring.VARIANTS), inter_pupil=True,
                                keep_sr=True)
    whole = scoring.score_split(tiny_jasrnet, common, cpu, 12, variants=tuple(scoring.VARIANTS), inter_pupil=True,
                                keep_sr=True)
    assert small.per_image.keys() == whole.per_image.keys() == {
        "psnr", "ssim", "psnr_image", "ssim_image", "psnr_border8", "ssim_border8", "psnr_jasrnet_code",
        "ssim_jasrnet_code", "nme", "nme_inter_pupil"}
    for key in whole.per_image:
        assert np.array_equal(small.per_image[key], whole.per_image[key]), key
    assert np.array_equal(small.sr, whole.sr) and np.array_equal(small.landmarks, whole.landmarks)
    assert small.sr.dtype == np.uint8 and small.sr.shape == (12, 128, 128, 3)

    # The same numbers as the metrics called directly on whole float stacks (the pre-scoring path).
    sr, pts = runtime.predict(tiny_jasrnet, degrade.to_tensor(common.lr), cpu, 12)
    hr = degrade.to_tensor(common.hr)
    direct = image_quality.psnr_ssim(sr, hr, torch.from_numpy(common.boxes))
    assert np.array_equal(whole.per_image["psnr"], direct["psnr"].numpy())
    assert np.array_equal(whole.per_image["ssim"], direct["ssim"].numpy())
    border = image_quality.psnr_ssim(sr, hr, scoring.border_boxes(12, 128))
    assert np.array_equal(whole.per_image["psnr_border8"], border["psnr"].numpy())
    nme = lm.nme(pts.numpy(), common.landmarks, common.visible, normalizer="inter_ocular", boxes=common.boxes)
    assert np.array_equal(whole.per_image["nme"], nme)
    assert np.array_equal(whole.sr, degrade.to_uint8(sr))


def test_validation_metrics_are_the_means_of_the_scores(common, tiny_jasrnet):
    cpu = torch.device("cpu")
    scores = scoring.score_split(tiny_jasrnet, common, cpu, 5)
    assert set(scores.per_image) == {"psnr", "ssim", "nme"} and scores.sr is None
    val = scoring.validation_metrics(tiny_jasrnet, common, cpu, 5)
    assert val == {"val_psnr": pytest.approx(float(np.mean(scores.per_image["psnr"])), abs=1e-12),
                   "val_ssim": pytest.approx(float(np.mean(scores.per_image["ssim"])), abs=1e-12),
                   "val_nme": float(np.mean(scores.per_image["nme"]))}


def test_a_model_without_landmarks_and_bad_requests(common):
    bicubic = build("bicubic")
    bicubic.set_protocol("paper")
    scores = scoring.score_split(bicubic.eval(), common, torch.device("cpu"), 16)
    assert set(scores.per_image) == {"psnr", "ssim"} and scores.landmarks is None
    # bicubic ×8 on 300W common sits far below HR and far above noise
    assert 15 < float(np.mean(scores.per_image["psnr"])) < 30
    with pytest.raises(ValueError, match="unknown metric variants"):
        scoring.score_split(bicubic, common, torch.device("cpu"), 16, variants=("_whole",))


def test_uint8_to_float_is_one_conversion_on_any_device(common):
    x = degrade.to_tensor(common.hr[:3])
    assert x.shape == (3, 3, 128, 128) and x.dtype == torch.float32
    assert torch.equal(degrade.to_tensor(torch.from_numpy(common.hr[:3])), x)
    assert torch.equal(x.mul(255).round().to(torch.uint8).permute(0, 2, 3, 1), torch.from_numpy(common.hr[:3]))
    with pytest.raises(ValueError, match="uint8"):
        degrade.to_tensor(common.hr[:3].astype(np.float32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run benchmarks/gpu_check.sh)")
def test_scores_on_cuda_equal_the_cpu_ones(common, tiny_jasrnet):
    cpu_scores = scoring.score_split(tiny_jasrnet, common, torch.device("cpu"), 16)
    gpu_model = tiny_jasrnet.to("cuda")
    try:
        gpu_scores = scoring.score_split(gpu_model, common, torch.device("cuda"), 16)
    finally:
        tiny_jasrnet.to("cpu")
    # fp32 on both: SR levels may differ by one 8-bit step on a few pixels (different conv kernels)
    assert np.allclose(gpu_scores.per_image["psnr"], cpu_scores.per_image["psnr"], atol=0.05)
    assert np.allclose(gpu_scores.per_image["nme"], cpu_scores.per_image["nme"], atol=0.5)
