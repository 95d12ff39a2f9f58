"""The ×8 degradation against PIL's bicubic on the real prepared 300W faces (down and up).

PIL's ``Image.BICUBIC`` is the same antialiased Keys (a = −0.5) filter. In float mode ("F") it
agrees with :mod:`jasrbench.data.degrade` to ~1e-4 before quantization, so the 8-bit results
differ by at most one grey level. PIL's 8-bit path rounds *and clips* to 8 bits between its
horizontal and vertical passes: where bicubic overshoots (e.g. at the black padding of a crop)
that path differs by more, on a handful of pixels (measured and bounded below).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jasrbench.data import degrade
from jasrbench.data.split import load_split


@pytest.fixture(scope="module")
def faces(prepared_300w):
    split = load_split(prepared_300w.out / "common.npz")
    return split.hr, split.lr


def _pil_float(image: np.ndarray, size: int) -> np.ndarray:
    """PIL bicubic per channel in 32-bit float mode, then rounded to 8 bits."""
    out = np.stack([np.asarray(Image.fromarray(image[..., c].astype(np.float32), "F")
                               .resize((size, size), Image.BICUBIC)) for c in range(3)], axis=-1)
    return np.clip(np.rint(out), 0, 255).astype(np.int16)


def test_downscaling_agrees_with_pil_within_one_grey_level(faces):
    hr, lr = faces
    diff = np.stack([np.abs(_pil_float(h, 16) - l) for h, l in zip(hr, lr, strict=True)])
    assert diff.max() <= 1
    eight_bit = np.stack([np.abs(np.asarray(Image.fromarray(h).resize((16, 16), Image.BICUBIC), np.int16) - l)
                          for h, l in zip(hr, lr, strict=True)])
    print(f"\nPIL 8-bit ↓8: {np.mean(eight_bit <= 1):.4%} of values within 1 level, max {eight_bit.max()}")
    assert np.mean(eight_bit <= 1) > 0.995 and eight_bit.mean() < 0.2


def test_upsampling_agrees_with_pil_within_one_grey_level(faces):
    _, lr = faces
    up = degrade.to_uint8(degrade.upsample(degrade.to_tensor(lr))).astype(np.int16)
    diff = np.stack([np.abs(_pil_float(l, 128) - u) for l, u in zip(lr, up, strict=True)])
    assert diff.max() <= 1
    eight_bit = np.stack([np.abs(np.asarray(Image.fromarray(l).resize((128, 128), Image.BICUBIC), np.int16) - u)
                          for l, u in zip(lr, up, strict=True)])
    print(f"\nPIL 8-bit ↑8: {np.mean(eight_bit <= 1):.4%} of values within 1 level, max {eight_bit.max()}")
    assert np.mean(eight_bit <= 1) > 0.995 and eight_bit.mean() < 0.5


def test_lr_is_an_8_bit_image_and_reproducible_on_the_fly(faces):
    hr, lr = faces
    again = degrade.make_lr(degrade.to_tensor(hr[:64]))
    assert np.array_equal(degrade.to_uint8(again), lr[:64])
    assert np.allclose(again.numpy() * 255, np.rint(again.numpy() * 255), atol=1e-4)  # already quantized
