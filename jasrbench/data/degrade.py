"""The ×8 degradation and the bicubic upsampling every model shares (DESIGN §2 items 2–3).

Both directions use torch's antialiased bicubic resampling (Keys kernel with
a = −0.5, the kernel stretched by the scale factor when downscaling), which is
MATLAB ``imresize``'s kernel; it agrees with PIL's ``Image.BICUBIC`` resize of
float images to about 1e-4 (PIL's 8-bit path rounds and clips between its two
1-D passes, so it differs by a grey level or more on a small fraction of
pixels). The only difference from MATLAB is at the image border, where MATLAB
pads symmetrically and torch/PIL renormalize the truncated kernel.

An LR image is an 8-bit image: :func:`make_lr` quantizes after downscaling, so
an LR made on the fly during training equals the stored prepared LR.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SCALE = 8
HR_SIZE = 128
LR_SIZE = HR_SIZE // SCALE


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round a [0, 1] image to the nearest 8-bit level, staying in [0, 1] floats."""
    return x.clamp(0, 1).mul(255).round().div(255)


def resize_bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize of a B×C×H×W float batch, clamped to [0, 1]."""
    if x.dim() != 4:
        raise ValueError(f"expected a B×C×H×W batch, got shape {tuple(x.shape)}")
    dtype = x.dtype
    out = F.interpolate(x.float(), size=size, mode="bicubic", antialias=True, align_corners=False)
    return out.clamp(0, 1).to(dtype)


def make_lr(hr: torch.Tensor, scale: int = SCALE) -> torch.Tensor:
    """HR batch in [0, 1] → LR batch (H/scale × W/scale), quantized to 8 bits."""
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}×{w} is not divisible by the scale {scale}")
    return quantize(resize_bicubic(hr, (h // scale, w // scale)))


def upsample(lr: torch.Tensor, scale: int = SCALE) -> torch.Tensor:
    """LR batch → bicubic-upsampled batch (the input of VDSR, JASRNet, CPM, …) in [0, 1]."""
    h, w = lr.shape[-2:]
    return resize_bicubic(lr, (h * scale, w * scale))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """N×H×W×3 uint8 array → N×3×H×W float tensor in [0, 1]."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected N×H×W×3 uint8 images, got {images.dtype} {images.shape}")
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """N×3×H×W float tensor in [0, 1] → N×H×W×3 uint8 array (rounded)."""
    return quantize(images.detach().float()).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
