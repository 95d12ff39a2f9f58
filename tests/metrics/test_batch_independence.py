"""Every per-image number is a function of that image alone: same bits in any batch, order, chunk or thread count.

The regression gate, the paired bootstrap tests and the byte-for-byte rerun
test compare numbers exactly; a face whose PSNR moves with its neighbours
(float work on a crop shaped by the batch, BLAS blocking, fused multiply-adds
in vectorized code paths) breaks all three.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from jasrbench.data import degrade
from jasrbench.metrics import image_quality as iq
from jasrbench.metrics import landmarks as lm
from jasrbench.numerics import fixed_order_sum


@pytest.fixture(scope="module")
def pairs(common_faces):
    """(SR, HR, boxes) for 72 real faces: more than one metric chunk, each a blurred or bicubic ×8 face."""
    hr = degrade.to_tensor(common_faces.hr)
    sr = torch.cat([degrade.upsample(degrade.make_lr(hr[:40])), TF.gaussian_blur(hr[40:], 9, 2.0)])
    sr = torch.cat([sr, sr[:8].flip(-1)])  # 72 > iq.CHUNK: a face also lands in the second chunk
    hr = torch.cat([hr, hr[:8]])
    boxes = torch.from_numpy(np.concatenate([common_faces.boxes, common_faces.boxes[:8]]))
    assert len(hr) > iq.CHUNK
    return sr, hr, boxes


@pytest.fixture
def threads():
    """Restores torch's thread count after a test that changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _bits(values: torch.Tensor) -> bytes:
    return values.double().cpu().numpy().tobytes()


@pytest.mark.parametrize("convention", iq.CONVENTIONS)
@pytest.mark.parametrize("region", iq.REGIONS)
def test_a_face_gives_the_same_bits_alone_and_in_any_batch(pairs, convention, region):
    sr, hr, boxes = pairs
    whole = iq.psnr_ssim(sr, hr, boxes, convention=convention, region=region)
    rng = np.random.default_rng(0)
    orders = [np.arange(len(hr))[::-1], rng.permutation(len(hr)), rng.permutation(len(hr))[:5], np.arange(33, 70)]
    for order in orders:
        idx = torch.from_numpy(np.ascontiguousarray(order))
        part = iq.psnr_ssim(sr[idx], hr[idx], boxes[idx], convention=convention, region=region)
        for key in ("psnr", "ssim"):
            assert _bits(part[key]) == _bits(whole[key][idx]), f"{key} of a face changed with its batch"
    for i in (0, 17, len(hr) - 1):
        one = iq.psnr_ssim(sr[i : i + 1], hr[i : i + 1], boxes[i : i + 1], convention=convention, region=region)
        assert _bits(one["psnr"]) == _bits(whole["psnr"][i : i + 1])
        assert _bits(one["ssim"]) == _bits(whole["ssim"][i : i + 1])


def test_thread_count_does_not_change_a_bit(pairs, threads):
    sr, hr, boxes = pairs
    torch.set_num_threads(1)
    one = iq.psnr_ssim(sr, hr, boxes)
    torch.set_num_threads(2)
    two = iq.psnr_ssim(sr, hr, boxes)
    assert _bits(one["psnr"]) == _bits(two["psnr"]) and _bits(one["ssim"]) == _bits(two["ssim"])


def test_uint8_and_float_inputs_give_the_same_bits(pairs):
    sr, hr, boxes = pairs
    a = iq.psnr_ssim(sr, hr, boxes)
    b = iq.psnr_ssim(degrade.to_uint8(sr), degrade.to_uint8(hr), boxes)
    assert _bits(a["psnr"]) == _bits(b["psnr"]) and _bits(a["ssim"]) == _bits(b["ssim"])


def test_fixed_order_sum_is_exact_where_exactness_is_possible_and_independent_of_the_batch():
    gen = torch.Generator().manual_seed(0)
    ints = torch.randint(0, 1000, (7, 37, 53), generator=gen).double()
    assert torch.equal(fixed_order_sum(ints), ints.sum((1, 2)))  # integers: exact in any order
    noise = torch.randn(9, 118, 118, generator=gen, dtype=torch.float64) * 1e3
    full = fixed_order_sum(noise)
    assert all(_bits(fixed_order_sum(noise[i : i + 1])) == _bits(full[i : i + 1]) for i in range(9))
    torch.testing.assert_close(full, noise.sum((1, 2)), rtol=1e-12, atol=1e-9)


def test_nme_of_a_face_does_not_depend_on_its_batch(common_faces):
    gt = common_faces.points.astype(np.float64)
    pred = gt + np.random.default_rng(1).normal(0, 2.0, gt.shape)
    whole = lm.nme(pred, gt)
    order = np.random.default_rng(2).permutation(len(gt))
    assert lm.nme(pred[order], gt[order]).tobytes() == whole[order].tobytes()
    assert all(lm.nme(pred[i : i + 1], gt[i : i + 1]).tobytes() == whole[i : i + 1].tobytes() for i in (0, 31, 63))
