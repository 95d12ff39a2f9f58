"""PSNR/SSIM of the batched implementation vs scikit-image on real 300W faces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from jasrbench.data import degrade
from jasrbench.metrics import image_quality as iq


def _degraded(hr_u8: np.ndarray) -> dict[str, np.ndarray]:
    """Real faces degraded three ways, as 8-bit images."""
    hr = degrade.to_tensor(hr_u8)
    g = torch.Generator().manual_seed(0)
    return {
        "bicubic_x8": degrade.to_uint8(degrade.upsample(degrade.make_lr(hr))),
        "noise": degrade.to_uint8(hr + 0.04 * torch.randn(hr.shape, generator=g)),
        "blur": degrade.to_uint8(TF.gaussian_blur(hr, kernel_size=9, sigma=2.0)),
    }


@pytest.fixture(scope="module")
def degraded(common_faces):
    return _degraded(common_faces.hr)


def _y_standard(u8: np.ndarray) -> np.ndarray:
    """Independent BT.601 Y on 0–255 from 8-bit RGB (float64)."""
    rgb = u8.astype(np.float64) / 255.0
    return 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]


def _region(box, h, w):
    """The documented rule, written independently: pixel centres inside the closed box, clamped."""
    x0, y0, x1, y1 = (float(v) for v in box)
    c0, c1 = max(0, math.ceil(x0)), min(w - 1, math.floor(x1))
    r0, r1 = max(0, math.ceil(y0)), min(h - 1, math.floor(y1))
    return slice(r0, r1 + 1), slice(c0, c1 + 1)


def _skimage(sr_u8, hr_u8, boxes, region):
    ys, yh = _y_standard(sr_u8), _y_standard(hr_u8)
    psnr, ssim = [], []
    for i in range(len(sr_u8)):
        rr, cc = _region(boxes[i], *hr_u8.shape[1:3]) if region == "face" else (slice(None), slice(None))
        a, b = ys[i, rr, cc], yh[i, rr, cc]
        psnr.append(peak_signal_noise_ratio(b, a, data_range=255))
        ssim.append(structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                          data_range=255, K1=0.01, K2=0.03))
    return np.array(psnr), np.array(ssim)


@pytest.mark.parametrize("kind", ["bicubic_x8", "noise", "blur"])
@pytest.mark.parametrize("region", ["face", "image"])
def test_equals_skimage_on_real_faces(common_faces, degraded, kind, region):
    sr_u8, hr_u8 = degraded[kind], common_faces.hr
    ours = iq.psnr_ssim(degrade.to_tensor(sr_u8), degrade.to_tensor(hr_u8), common_faces.boxes, region=region)
    ref_psnr, ref_ssim = _skimage(sr_u8, hr_u8, common_faces.boxes, region)
    assert np.abs(ours["psnr"].numpy() - ref_psnr).max() < 1e-3
    assert np.abs(ours["ssim"].numpy() - ref_ssim).max() < 1e-4
    # The degradations really degrade (the comparison is not between near-identical images).
    assert ref_psnr.max() < 40 and ref_ssim.max() < 0.97


def test_face_region_differs_from_whole_image(common_faces, degraded):
    hr, sr = degrade.to_tensor(common_faces.hr), degrade.to_tensor(degraded["bicubic_x8"])
    face = iq.psnr_ssim(sr, hr, common_faces.boxes)
    whole = iq.psnr_ssim(sr, hr, region="image")
    assert not torch.allclose(face["ssim"], whole["ssim"])


def test_sr_is_quantized_to_8_bits_and_inputs_may_be_uint8(common_faces, degraded):
    hr = degrade.to_tensor(common_faces.hr)
    sr_u8 = degraded["bicubic_x8"]
    sr = degrade.to_tensor(sr_u8)
    # Sub-level perturbations vanish after quantization: same numbers as the 8-bit image.
    jitter = (torch.rand(sr.shape, generator=torch.Generator().manual_seed(1)) - 0.5) * 0.9 / 255
    a = iq.psnr_ssim(sr + jitter, hr, common_faces.boxes)
    b = iq.psnr_ssim(sr_u8, common_faces.hr, common_faces.boxes)  # N×H×W×3 uint8 inputs
    assert torch.equal(a["psnr"], b["psnr"]) and torch.equal(a["ssim"], b["ssim"])


def test_identical_images_give_infinite_psnr_and_unit_ssim(common_faces):
    hr = degrade.to_tensor(common_faces.hr[:4])
    out = iq.psnr_ssim(hr, hr, common_faces.boxes[:4])
    assert torch.isinf(out["psnr"]).all()
    assert torch.allclose(out["ssim"], torch.ones(4, dtype=torch.float64))


def test_variable_boxes_in_one_batch_equal_one_by_one(common_faces, degraded):
    hr, sr = degrade.to_tensor(common_faces.hr[:6]), degrade.to_tensor(degraded["blur"][:6])
    boxes = np.array([[0, 0, 127, 127], [10.5, 20.2, 60.7, 90.0], [-5, -3, 40, 30], [100, 90, 140, 150],
                      [30, 30, 40.9, 40.9], [3.0000, 3.0, 113.0, 123.0]], dtype=np.float32)
    batch = iq.psnr_ssim(sr, hr, boxes)
    for i in range(6):
        one = iq.psnr_ssim(sr[i : i + 1], hr[i : i + 1], boxes[i : i + 1])
        assert torch.allclose(one["psnr"], batch["psnr"][i : i + 1], rtol=0, atol=1e-5)
        assert torch.allclose(one["ssim"], batch["ssim"][i : i + 1], rtol=0, atol=1e-6)
    ref_psnr, ref_ssim = _skimage(degraded["blur"][:6], common_faces.hr[:6], boxes, "face")
    assert np.abs(batch["psnr"].numpy() - ref_psnr).max() < 1e-3
    assert np.abs(batch["ssim"].numpy() - ref_ssim).max() < 1e-4


def test_box_rounding_rule():
    boxes = np.array([[10.2, 5.0, 60.8, 70.5], [-4.0, -1.5, 200.0, 127.0]])
    reg = iq.box_regions(boxes, 128, 128).tolist()
    assert reg[0] == [5, 70, 11, 60]  # rows ceil(5.0)=5 … floor(70.5)=70, cols ceil(10.2)=11 … floor(60.8)=60
    assert reg[1] == [0, 127, 0, 127]  # clamped to the image


def test_regions_smaller_than_the_window_are_refused(common_faces):
    hr = degrade.to_tensor(common_faces.hr[:1])
    with pytest.raises(ValueError, match="smaller than the 11×11"):
        iq.psnr_ssim(hr, hr, np.array([[10, 10, 19, 60]]))
    with pytest.raises(ValueError, match="needs the face boxes"):
        iq.psnr_ssim(hr, hr)
    with pytest.raises(ValueError, match="unknown convention"):
        iq.psnr_ssim(hr, hr, region="image", convention="matlab")


# --- the authors' convention --------------------------------------------------------------------------
def _jasrnet_code_reference(sr_u8, hr_u8, boxes):
    """Direct transcription of the authors' calc_psnr (JASRNet src/utility.py), rgb_range = 1,
    on our face regions: Y' = RGB01 · [65.738, 129.057, 25.064]/256 + 16, skimage with
    data_range = 1, win_size = 11, Gaussian σ 1.5, K1/K2, default (sample) covariance."""
    xform = np.array([[65.738 / 256.0, 129.057 / 256.0, 25.064 / 256.0]])
    psnr, ssim = [], []
    for i in range(len(sr_u8)):
        rr, cc = _region(boxes[i], *hr_u8.shape[1:3])
        image1 = (sr_u8[i].astype(np.float64) / 255).dot(xform.T) + 16.0
        image2 = (hr_u8[i].astype(np.float64) / 255).dot(xform.T) + 16.0
        image1, image2 = image1[rr, cc, :], image2[rr, cc, :]
        psnr.append(peak_signal_noise_ratio(image1, image2, data_range=1))
        ssim.append(structural_similarity(image1, image2, win_size=11, gaussian_weights=True, channel_axis=-1,
                                          K1=0.01, K2=0.03, sigma=1.5, data_range=1))
    return np.array(psnr), np.array(ssim)


@pytest.mark.parametrize("kind", ["bicubic_x8", "noise", "blur"])
def test_jasrnet_code_convention_equals_a_transcription_of_the_authors_code(common_faces, degraded, kind):
    sr_u8, hr_u8 = degraded[kind], common_faces.hr
    sr, hr = degrade.to_tensor(sr_u8), degrade.to_tensor(hr_u8)
    code = iq.psnr_ssim(sr, hr, common_faces.boxes, convention="jasrnet-code")
    std = iq.psnr_ssim(sr, hr, common_faces.boxes)
    ref_psnr, ref_ssim = _jasrnet_code_reference(sr_u8, hr_u8, common_faces.boxes)
    assert np.abs(code["psnr"].numpy() - ref_psnr).max() < 1e-3
    assert np.abs(code["ssim"].numpy() - ref_ssim).max() < 1e-4
    # PSNR unchanged: the 16 offset cancels in the difference, the 1/255 scale with data range 1.
    assert torch.allclose(code["psnr"], std["psnr"], atol=1e-3)


@pytest.mark.parametrize("kind", ["bicubic_x8", "blur"])
def test_jasrnet_code_convention_gives_higher_ssim_on_smooth_outputs(common_faces, degraded, kind):
    """SR-like (smooth) outputs: higher SSIM on the mean and on most faces (all 64: ≥ 85%)."""
    sr, hr = degrade.to_tensor(degraded[kind]), degrade.to_tensor(common_faces.hr)
    for region in ("face", "image"):
        gain = (iq.ssim(sr, hr, common_faces.boxes, convention="jasrnet-code", region=region)
                - iq.ssim(sr, hr, common_faces.boxes, region=region))
        assert gain.mean() > 5e-4
        assert (gain > 0).double().mean() >= 0.85


def test_brightness_error_barely_costs_ssim_under_the_authors_convention(common_faces):
    """The luminance term is ≈ 1 with a 16 offset: a global brightness error is nearly free."""
    hr = degrade.to_tensor(common_faces.hr)
    brighter = (hr + 20 / 255).clamp(0, 1)
    std = iq.ssim(brighter, hr, common_faces.boxes)
    code = iq.ssim(brighter, hr, common_faces.boxes, convention="jasrnet-code")
    assert (code > std).all()
    assert (1 - code).mean() < 0.2 * (1 - std).mean()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_runs_on_cuda(common_faces, degraded):  # pragma: no cover - needs a GPU
    hr, sr = degrade.to_tensor(common_faces.hr), degrade.to_tensor(degraded["noise"])
    cpu = iq.psnr_ssim(sr, hr, common_faces.boxes)
    gpu = iq.psnr_ssim(sr.cuda(), hr.cuda(), torch.from_numpy(common_faces.boxes).cuda())
    assert gpu["psnr"].device.type == "cuda"
    assert torch.allclose(gpu["ssim"].cpu(), cpu["ssim"], atol=1e-5)
