"""PSNR and SSIM on the Y channel inside each face box, batched in torch (DESIGN §4).

``psnr_ssim(sr, hr, boxes=None, *, convention="standard", region="face") -> {"psnr": Tensor[N], "ssim": Tensor[N]}``
(``compute_image_metrics`` is the same function; ``psnr`` and ``ssim`` return one of the two).
``sr``, ``hr``: N×3×H×W floats in [0, 1] or N×H×W×3 uint8, both quantized to 8 bits first (an SR
output is judged as the 8-bit image it would be saved as); ``boxes``: N×4 ``(x0, y0, x1, y1)`` in
0-based pixel-centre coordinates (a prepared split's landmark min/max). All work is on ``sr``'s device.

Region: the pixels whose centres lie in the closed box (columns ``ceil(x0) … floor(x1)``, rows
likewise, clamped), so every landmark that defined the box lies in it; a region smaller than the
11×11 SSIM window is an error. ``region="image"``: the whole image (the DIC/SPARNet-style variant).

Conventions:

- ``"standard"``: ITU-R BT.601 ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (R, G, B in [0, 1], not
  rounded), data range 255; SSIM of Wang et al. 2004 (Gaussian 11×11, σ = 1.5, K1 = 0.01, K2 = 0.03,
  population (co)variances). Equal to skimage's ``peak_signal_noise_ratio(data_range=255)`` and
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255)`` on the region's Y crop (tests/metrics/test_image_quality.py, on real faces).
- ``"jasrnet-code"``: what the authors' evaluation code computes (JASRNet's ``src/utility.py``,
  ``calc_psnr``), reported as ``*_jasrnet_code`` beside the standard values to compare with the
  paper's numbers: ``Y' = 16 + (65.738 R + 129.057 G + 25.064 B) / 256`` on [0, 1] RGB (BT.601 on
  0–1 data, the offset 16 left on the 0–255 scale), skimage's PSNR/SSIM with ``data_range = 1`` and
  its default sample covariance (×121/120). PSNR equals the standard (offset and scale cancel); SSIM's
  C1 is tiny beside the offset mean, so its luminance term is ≈ 1 whatever the brightness error and
  SSIM reads higher (measured: results/README.md). The face region stays this module's (the
  authors truncated the box with ``int()`` and shaved an 8-pixel border).

Batch independence: a face's numbers are a function of that face alone, bit for bit, whatever the
batch, chunk, order or thread count (the regression gate, the paired tests and the byte-for-byte
rerun rely on it). Hence only IEEE-exact elementwise operations (never a fused multiply-add, BLAS or
a library reduction, whose rounding depends on the shapes and threads around an image); each chunk
is filtered on the union of its regions and put back on a whole-image canvas; sums are fixed pairwise
folds (:func:`jasrbench.numerics.fixed_order_sum`); the final logarithm is taken per image in Python.
SSIM's four filtered maps (:func:`_ssim_maps`) are float32 on signals centred on each image's HR mean;
region sums are float64. skimage averages its SSIM map over the windows lying fully inside the crop,
so the per-image SSIM is the mean of the valid map over the box shrunk by 5 pixels. PSNR of identical
regions is ``+inf`` (as skimage). Speed: ``benchmarks/bench_metrics.py``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from ..data.degrade import to_tensor
from ..numerics import fixed_order_sum

Convention = Literal["standard", "jasrnet-code"]
Region = Literal["face", "image"]

CONVENTIONS = ("standard", "jasrnet-code")
REGIONS = ("face", "image")

SIGMA = 1.5
RADIUS = int(3.5 * SIGMA + 0.5)  # = 5: scipy/skimage's truncate=3.5 → an 11-tap window
WIN = 2 * RADIUS + 1
K1, K2 = 0.01, 0.03
CHUNK = 32  # images per filter batch (bounds memory; keeps the maps in cache)

# (coefficients on R, G, B in [0, 1]; offset; data range; SSIM covariance normalization)
_CONVENTION_PARAMS = {
    "standard": ((65.481, 128.553, 24.966), 16.0, 255.0, 1.0),
    "jasrnet-code": ((65.738 / 256, 129.057 / 256, 25.064 / 256), 16.0, 1.0, WIN * WIN / (WIN * WIN - 1)),
}


def gaussian_taps(sigma: float = SIGMA, radius: int = RADIUS, dtype=torch.float64) -> torch.Tensor:
    """The normalized 1-D Gaussian window (scipy.ndimage's, truncate = 3.5)."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).to(dtype)


def _levels(images, name: str = "images") -> torch.Tensor:
    """8-bit grey levels 0…255 as float32, N×3×H×W: the quantization every SR output gets.

    Accepts N×3×H×W floats in [0, 1] (rounded to the nearest level after
    clamping) or N×H×W×3 uint8 (arrays or tensors, taken as they are).
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor or array, got {type(images).__name__}")
    if images.dtype == torch.uint8:
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"{name}: uint8 images must be N×H×W×3, got {tuple(images.shape)}")
        images = to_tensor(images)  # k/255 → the rounding below gives back exactly k
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{name}: float images must be N×3×H×W, got {tuple(images.shape)}")
    return images.float().clamp(0, 1).mul_(255).round_()


def _signal(levels: torch.Tensor, coeffs: tuple[float, float, float]) -> torch.Tensor:
    """Σ_c coeff_c · level_c / 255 (N×H×W float32): Y without its offset (no fused multiply-add)."""
    w = [float(c) / 255 for c in coeffs]
    return levels[:, 0] * w[0] + levels[:, 1] * w[1] + levels[:, 2] * w[2]


def luma(images, convention: Convention = "standard") -> torch.Tensor:
    """Y channel (N×H×W, float64) of 8-bit-quantized images under ``convention``."""
    coeffs, offset, _, _ = _params(convention)
    levels = _levels(images).double() / 255
    w = torch.tensor(coeffs, dtype=torch.float64, device=levels.device).view(1, 3, 1, 1)
    return (levels * w).sum(1) + offset


def _shape(images, name: str) -> tuple[int, int, int]:
    """(N, H, W) of a float N×3×H×W or uint8 N×H×W×3 batch."""
    shape = tuple(images.shape)
    if len(shape) != 4:
        raise ValueError(f"{name}: expected a 4-D batch, got shape {shape}")
    if images.dtype in (torch.uint8, np.uint8):
        return shape[0], shape[1], shape[2]
    return shape[0], shape[2], shape[3]


def _params(convention: str):
    if convention not in _CONVENTION_PARAMS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {CONVENTIONS}")
    return _CONVENTION_PARAMS[convention]


def box_regions(boxes, height: int, width: int, device=None) -> torch.Tensor:
    """Integer pixel regions of float boxes: N×4 ``(row0, row1, col0, col1)``, inclusive.

    Pixels whose centres lie in the closed box ``(x0, y0, x1, y1)``:
    ``ceil(x0) … floor(x1)`` (and rows likewise), clamped to the image.
    """
    b = torch.as_tensor(np.asarray(boxes) if not isinstance(boxes, torch.Tensor) else boxes)
    b = b.to(device=device, dtype=torch.float64)
    if b.dim() != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be N×4 (x0, y0, x1, y1), got {tuple(b.shape)}")
    if not torch.isfinite(b).all():
        raise ValueError("boxes contain non-finite values")
    c0 = torch.ceil(b[:, 0]).clamp(0, width - 1)
    c1 = torch.floor(b[:, 2]).clamp(0, width - 1)
    r0 = torch.ceil(b[:, 1]).clamp(0, height - 1)
    r1 = torch.floor(b[:, 3]).clamp(0, height - 1)
    return torch.stack([r0, r1, c0, c1], 1).long()


def _range_mask(lo: torch.Tensor, hi: torch.Tensor, size: int, dtype: torch.dtype) -> torch.Tensor:
    idx = torch.arange(size, device=lo.device)
    return ((idx[None, :] >= lo[:, None]) & (idx[None, :] <= hi[:, None])).to(dtype)


def _region_mean(values: torch.Tensor, r0, r1, c0, c1) -> torch.Tensor:
    """Mean (float64) of each N×H×W map over its inclusive row/column range, independent of the batch."""
    h, w = values.shape[-2:]
    rows = _range_mask(r0, r1, h, torch.float64)
    cols = _range_mask(c0, c1, w, torch.float64)
    total = fixed_order_sum(values.double() * rows[:, :, None] * cols[:, None, :])
    return total / (rows.sum(1) * cols.sum(1))


def _blur_valid(maps: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' 11×11 Gaussian filter of B×H×W maps → B×(H−10)×(W−10).

    Shifted multiply–adds, the symmetric taps paired (``(x[k] + x[10−k]) · t_k``),
    with separate multiply and add: a fused multiply-add rounds differently in
    vectorized and scalar code paths, so a pixel's value would depend on where
    it sits in memory.
    """
    taps = gaussian_taps().tolist()
    for axis in (-2, -1):
        out = maps.shape[axis] - 2 * RADIUS
        acc = maps.narrow(axis, RADIUS, out) * taps[RADIUS]
        for k in range(RADIUS):
            acc += (maps.narrow(axis, k, out) + maps.narrow(axis, WIN - 1 - k, out)) * taps[k]
        maps = acc
    return maps


def _ssim_maps(x: torch.Tensor, y: torch.Tensor, c: torch.Tensor, offset: float, data_range: float,
               cov_norm: float) -> torch.Tensor:
    """Valid SSIM maps ((H−10)×(W−10), float32) of the signals ``offset + x``, ``offset + y`` (N×H×W float32).

    SSIM needs only μx, μy, σx² + σy² and σxy, so four filtered maps suffice:
    those of ``u = x + y − 2c`` and ``v = x − y`` and of their squares (``c`` =
    each image's HR mean: centring removes the cancellation in ``E[u²] − μu²``).
    With ``U = μu + 2(c + offset)`` (the uncentred ``μx + μy``) and ``Vu``,
    ``Vv`` the variances of u and v (× ``cov_norm``):
    ``2 μx μy = (U² − μv²)/2``, ``μx² + μy² = (U² + μv²)/2``,
    ``σx² + σy² = (Vu + Vv)/2``, ``2 σxy = (Vu − Vv)/2``, hence
    ``SSIM = (U² − μv² + 2 C1)(Vu − Vv + 2 C2) / ((U² + μv² + 2 C1)(Vu + Vv + 2 C2))``.
    """
    n, h, w = x.shape
    maps = torch.empty(n, 4, h, w, dtype=x.dtype, device=x.device)
    torch.add(x, y, out=maps[:, 0]).sub_(2 * c)
    torch.sub(x, y, out=maps[:, 1])
    torch.mul(maps[:, 0], maps[:, 0], out=maps[:, 2])
    torch.mul(maps[:, 1], maps[:, 1], out=maps[:, 3])
    m = _blur_valid(maps)
    mu, mv, euu, evv = m.unbind(1)
    vu = euu.sub_(mu * mu).mul_(cov_norm)
    vv = evv.sub_(mv * mv).mul_(cov_norm)
    big_u = mu.add_(2 * (c + offset)).square_()
    mv2 = mv.square_()
    c1 = 2 * (K1 * data_range) ** 2
    c2 = 2 * (K2 * data_range) ** 2
    num = (big_u - mv2).add_(c1).mul_((vu - vv).add_(c2))
    den = big_u.add_(mv2).add_(c1).mul_(vu.add_(vv).add_(c2))
    return num.div_(den)


def psnr_ssim(
    sr,
    hr,
    boxes=None,
    *,
    convention: Convention = "standard",
    region: Region = "face",
) -> dict[str, torch.Tensor]:
    """Per-image PSNR (dB) and SSIM on Y: ``{"psnr": Tensor[N], "ssim": Tensor[N]}`` (float64, sr's device)."""
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; choose one of {REGIONS}")
    coeffs, offset, data_range, cov_norm = _params(convention)
    sr_shape, hr_shape = _shape(sr, "sr"), _shape(hr, "hr")
    if sr_shape != hr_shape:
        raise ValueError(f"sr {sr_shape} and hr {hr_shape} differ in size (N, H, W)")
    device = sr.device if isinstance(sr, torch.Tensor) else torch.device("cpu")
    n, h, w = sr_shape
    if region == "face":
        if boxes is None:
            raise ValueError("region='face' needs the face boxes (N×4 x0, y0, x1, y1)")
        reg = box_regions(boxes, h, w, device)
        if reg.shape[0] != n:
            raise ValueError(f"{reg.shape[0]} boxes for {n} images")
    else:
        reg = torch.tensor([[0, h - 1, 0, w - 1]], device=device).expand(n, 4)
    small = ((reg[:, 1] - reg[:, 0] + 1) < WIN) | ((reg[:, 3] - reg[:, 2] + 1) < WIN)
    if bool(small.any()):
        bad = torch.nonzero(small).flatten().tolist()[:5]
        raise ValueError(f"face regions smaller than the {WIN}×{WIN} SSIM window at images {bad}")
    mses, ssims = [], []
    for s in range(0, n, CHUNK):
        r0, r1, c0, c1 = reg[s : s + CHUNK].unbind(1)
        # Signals without the offset (it cancels in PSNR and is added back inside SSIM's means).
        x = _signal(_levels(sr[s : s + CHUNK], "sr").to(device), coeffs)
        y = _signal(_levels(hr[s : s + CHUNK], "hr").to(device), coeffs)
        mses.append(_region_mean((x - y).square_(), r0, r1, c0, c1))
        # Each image's HR mean centres its signals (see _ssim_maps): taken over the whole image.
        centre = (fixed_order_sum(y.double()) / (h * w)).float().view(-1, 1, 1)
        # Filter only the union of the chunk's regions: a pixel's value does not depend on the crop
        # (elementwise work), and the maps go back onto a whole-image canvas for the fixed-order sums.
        top, bottom, left, right = int(r0.min()), int(r1.max()), int(c0.min()), int(c1.max())
        crop = (slice(None), slice(top, bottom + 1), slice(left, right + 1))
        smap = _ssim_maps(x[crop], y[crop], centre, offset, data_range, cov_norm)
        canvas = torch.zeros(len(x), h - 2 * RADIUS, w - 2 * RADIUS, dtype=smap.dtype, device=device)
        canvas[:, top : top + smap.shape[1], left : left + smap.shape[2]] = smap
        ssims.append(_region_mean(canvas, r0, r1 - 2 * RADIUS, c0, c1 - 2 * RADIUS))
    # The logarithm per image in Python: vectorized and scalar log10 may differ in the last bit.
    mse = torch.cat(mses).tolist() if mses else []
    psnr = [10 * math.log10(data_range**2 / m) if m > 0 else math.inf for m in mse]
    return {"psnr": torch.tensor(psnr, dtype=torch.float64, device=device),
            "ssim": torch.cat(ssims) if ssims else torch.empty(0, dtype=torch.float64, device=device)}


compute_image_metrics = psnr_ssim


def psnr(sr, hr, boxes=None, *, convention: Convention = "standard", region: Region = "face") -> torch.Tensor:
    """Per-image PSNR in dB (see :func:`psnr_ssim`)."""
    return psnr_ssim(sr, hr, boxes, convention=convention, region=region)["psnr"]


def ssim(sr, hr, boxes=None, *, convention: Convention = "standard", region: Region = "face") -> torch.Tensor:
    """Per-image SSIM (see :func:`psnr_ssim`)."""
    return psnr_ssim(sr, hr, boxes, convention=convention, region=region)["ssim"]


__all__ = [
    "CONVENTIONS", "REGIONS", "box_regions", "compute_image_metrics", "gaussian_taps", "luma", "psnr",
    "psnr_ssim", "ssim",
]
