"""The ×8 degradation and the bicubic upsampling every model shares (DESIGN §2 "Preparation").

Two kernels, chosen by the named protocol (:mod:`jasrbench.data.protocols`):

- ``paper``: torch's **non-antialiased** bicubic (Keys a = −0.75, pixel-centre aligned, border
  replicated): OpenCV's ``INTER_CUBIC``, which the authors' code used for LR and upsampling
  (tests/data/test_data_degrade.py checks both directions against OpenCV). Downscaling ×8 it samples
  4 of every 8×8 pixels' neighbourhood, so it aliases, as theirs did.
- ``clean``: torch's antialiased bicubic (Keys a = −0.5, kernel stretched by the scale when
  downscaling): MATLAB ``imresize``'s kernel; agrees with PIL's ``Image.BICUBIC`` on float
  images (MATLAB pads the border symmetrically, torch/PIL renormalize the truncated kernel).

Batched in torch (B×C×H×W). An LR image is an 8-bit image: :func:`make_lr` quantizes after
downscaling (and JPEG-compresses through PIL if the protocol says so), so an LR made on the fly during
training equals the stored prepared LR.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import protocols

SCALE = 8
HR_SIZE = 128
LR_SIZE = HR_SIZE // SCALE


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round a [0, 1] image to the nearest 8-bit level, staying in [0, 1] floats."""
    return x.clamp(0, 1).mul(255).round().div(255)


def resize(x: torch.Tensor, size: tuple[int, int], *, antialias: bool) -> torch.Tensor:
    """Bicubic resize of a B×C×H×W float batch (see the module doc for the two kernels), clamped to [0, 1]."""
    if x.dim() != 4:
        raise ValueError(f"expected a B×C×H×W batch, got shape {tuple(x.shape)}")
    dtype = x.dtype
    out = F.interpolate(x.float(), size=size, mode="bicubic", antialias=antialias, align_corners=False)
    return out.clamp(0, 1).to(dtype)


def resize_bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize (the crops' and the recognizers' resampling, either protocol)."""
    return resize(x, size, antialias=True)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG-compress and decode an 8-bit-valued [0, 1] batch (PIL's libjpeg, 4:2:0; the LR is tiny: a loop is cheap)."""
    import io

    from PIL import Image

    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be 1…100, got {quality}")
    out = []
    for image in to_uint8(x):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return to_tensor(np.stack(out)).to(device=x.device, dtype=x.dtype)


def make_lr(hr: torch.Tensor, scale: int = SCALE, protocol: str | protocols.Protocol | None = None) -> torch.Tensor:
    """HR batch in [0, 1] → LR batch (H/scale × W/scale), 8-bit, by ``protocol``'s kernel (default ``paper``)."""
    p = protocols.get(protocol)
    if p.per_face:  # a silent plain-cubic LR would mislabel every result made from it
        raise ValueError(f"protocol {p.name!r} degrades each face by its own seeded draw: make its LR with "
                         "jasrbench.data.degradations.degrade_lr (or lr_uint8), which take the face names")
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}×{w} is not divisible by the scale {scale}")
    lr = quantize(resize(hr, (h // scale, w // scale), antialias=p.antialias))
    return jpeg(lr, p.jpeg_quality) if p.jpeg_quality else lr


def upsample(lr: torch.Tensor, scale: int = SCALE, protocol: str | protocols.Protocol | None = None) -> torch.Tensor:
    """LR batch → bicubic-upsampled batch (the input of VDSR, JASRNet, CPM, …; the Bicubic row) in [0, 1]."""
    h, w = lr.shape[-2:]
    return resize(lr, (h * scale, w * scale), antialias=protocols.get(protocol).antialias)


def to_tensor(images: np.ndarray | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """N×H×W×3 uint8 (array or tensor) → N×3×H×W float in [0, 1], converted on ``device``.

    The suite's one uint8 → float conversion: the bytes travel, the floats are made where they are used.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4 \
            or images.shape[-1] != 3:
        what = f"{images.dtype} {tuple(images.shape)}" if hasattr(images, "shape") else type(images).__name__
        raise ValueError(f"expected N×H×W×3 uint8 images, got {what}")
    return images.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div(255)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """N×3×H×W float tensor in [0, 1] → N×H×W×3 uint8 array (rounded)."""
    return quantize(images.detach().float()).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
