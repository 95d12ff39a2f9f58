"""The ×8 degradation and the shared upsampling against reference implementations on real faces.

``paper`` protocol (non-antialiased cubic, Keys a = −0.75): against OpenCV's ``cv2.resize(...,
INTER_CUBIC)`` — what the authors' code called — on the prepared 300W faces, down (HR → LR) and up
(LR → 128²): equal to within one grey level (OpenCV works in fixed point on 8-bit images).

``clean`` protocol (antialiased bicubic, a = −0.5): against PIL's ``Image.BICUBIC``, the same
filter. In float mode ("F") it agrees to ~1e-4 before quantization, so the 8-bit results differ by
at most one grey level. PIL's 8-bit path rounds *and clips* to 8 bits between its horizontal and
vertical passes: where bicubic overshoots (e.g. at the black padding of a crop) that path differs
by more, on a handful of pixels (measured and bounded below).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jasrbench.data import degrade, protocols
from jasrbench.data.split import load_split


@pytest.fixture(scope="module")
def faces(prepared_300w):
    split = load_split(prepared_300w.out / "common.npz")
    assert split.protocol == "paper"  # prepare's default
    return split.hr, split.lr


@pytest.fixture(scope="module")
def clean_lr(faces):
    return degrade.to_uint8(degrade.make_lr(degrade.to_tensor(faces[0]), protocol="clean"))


def test_paper_lr_and_upsampling_agree_with_opencv_within_one_grey_level(faces):
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is a test dependency (the dev extra)")
    hr, lr = faces
    cv_lr = np.stack([cv2.resize(h, (16, 16), interpolation=cv2.INTER_CUBIC) for h in hr]).astype(np.int16)
    down = np.abs(cv_lr - lr)
    assert down.max() <= 1
    up = degrade.to_uint8(degrade.upsample(degrade.to_tensor(lr), protocol="paper")).astype(np.int16)
    cv_up = np.stack([cv2.resize(x, (128, 128), interpolation=cv2.INTER_CUBIC) for x in lr]).astype(np.int16)
    diff = np.abs(cv_up - up)
    assert diff.max() <= 1
    print(f"\nOpenCV INTER_CUBIC on {len(hr)} faces: ↓8 {np.mean(down > 0):.4%} of values differ by 1, "
          f"↑8 {np.mean(diff > 0):.4%}")
    # Not a vacuous agreement: the antialiased (clean) kernel is far from OpenCV's.
    clean = degrade.to_uint8(degrade.make_lr(degrade.to_tensor(hr[:64]), protocol="clean")).astype(np.int16)
    assert np.abs(clean - cv_lr[:64]).max() > 10


def test_clean_downscaling_agrees_with_pil_within_one_grey_level(faces, clean_lr):
    hr, _ = faces
    lr = clean_lr
    diff = np.stack([np.abs(_pil_float(h, 16) - l) for h, l in zip(hr, lr, strict=True)])
    assert diff.max() <= 1
    eight_bit = np.stack([np.abs(np.asarray(Image.fromarray(h).resize((16, 16), Image.BICUBIC), np.int16) - l)
                          for h, l in zip(hr, lr, strict=True)])
    print(f"\nPIL 8-bit ↓8: {np.mean(eight_bit <= 1):.4%} of values within 1 level, max {eight_bit.max()}")
    assert np.mean(eight_bit <= 1) > 0.995 and eight_bit.mean() < 0.2


def test_clean_upsampling_agrees_with_pil_within_one_grey_level(clean_lr):
    lr = clean_lr
    up = degrade.to_uint8(degrade.upsample(degrade.to_tensor(lr), protocol="clean")).astype(np.int16)
    diff = np.stack([np.abs(_pil_float(l, 128) - u) for l, u in zip(lr, up, strict=True)])
    assert diff.max() <= 1
    eight_bit = np.stack([np.abs(np.asarray(Image.fromarray(l).resize((128, 128), Image.BICUBIC), np.int16) - u)
                          for l, u in zip(lr, up, strict=True)])
    print(f"\nPIL 8-bit ↑8: {np.mean(eight_bit <= 1):.4%} of values within 1 level, max {eight_bit.max()}")
    assert np.mean(eight_bit <= 1) > 0.995 and eight_bit.mean() < 0.5


def _pil_float(image: np.ndarray, size: int) -> np.ndarray:
    """PIL bicubic per channel in 32-bit float mode, then rounded to 8 bits."""
    out = np.stack([np.asarray(Image.fromarray(image[..., c].astype(np.float32), "F")
                               .resize((size, size), Image.BICUBIC)) for c in range(3)], axis=-1)
    return np.clip(np.rint(out), 0, 255).astype(np.int16)


def test_lr_is_an_8_bit_image_and_reproducible_on_the_fly(faces):
    hr, lr = faces
    again = degrade.make_lr(degrade.to_tensor(hr[:64]))
    assert np.array_equal(degrade.to_uint8(again), lr[:64])
    assert np.allclose(again.numpy() * 255, np.rint(again.numpy() * 255), atol=1e-4)  # already quantized


def test_jpeg_option_compresses_the_lr_and_stays_8_bit(faces):
    hr, _ = faces
    x = degrade.to_tensor(hr[:16])
    plain = degrade.make_lr(x, protocol="paper")
    q75 = degrade.make_lr(x, protocol=protocols.get("paper").with_(jpeg_quality=75))
    assert q75.shape == plain.shape and not torch_equal(q75, plain)
    assert (q75 - plain).abs().mean() < 0.05  # a compression artefact, not another image
    assert np.array_equal(degrade.to_uint8(q75), degrade.to_uint8(degrade.make_lr(x, protocol=protocols.get("paper")
                                                                                  .with_(jpeg_quality=75))))


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_unknown_protocol_is_a_named_error():
    from jasrbench.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown protocol 'matlab'.*paper, clean"):
        protocols.get("matlab")
