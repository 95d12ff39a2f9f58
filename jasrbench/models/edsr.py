"""EDSR ×8 in its baseline and paper sizes (Table 1)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import FaceModel, ModelOutput
from .registry import register

# EDSR's DIV2K RGB mean (rgb_range 1), subtracted at the input and added back at the output.
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class MeanShift(nn.Module):
    """Adds ``sign`` × the RGB mean (EDSR's fixed mean shift, std 1; no trainable parameters)."""

    def __init__(self, mean: tuple[float, float, float] = DIV2K_MEAN, sign: int = -1):
        super().__init__()
        self.register_buffer("shift", sign * torch.tensor(mean).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift.to(x.dtype)


class ResBlock(nn.Module):
    """EDSR's residual block: conv3×3 → ReLU → conv3×3, scaled by ``res_scale``, plus identity (no BN)."""

    def __init__(self, n_feats: int, kernel: int = 3, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, kernel, padding=kernel // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(n_feats, n_feats, kernel, padding=kernel // 2),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


def upsampler(scale: int, n_feats: int) -> nn.Sequential:
    """log2(scale) × (conv3×3 n→4n + PixelShuffle(2)), EDSR's upsampler for powers of two."""
    layers: list[nn.Module] = []
    for _ in range(int(math.log2(scale))):
        layers += [nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1), nn.PixelShuffle(2)]
    return nn.Sequential(*layers)


@register("edsr", description="EDSR baseline size ×8: 16 ResBlocks, 64 ch, res_scale 1 (L1)", n_blocks=16, n_feats=64, res_scale=1.0)
@register("edsr_paper", description="EDSR paper size ×8: 32 ResBlocks, 256 ch, res_scale 0.1 (L1)", n_blocks=32, n_feats=256, res_scale=0.1)
class EDSR(FaceModel):
    """EDSR ×8 (Lim, Son, Kim, Nah & Lee, "Enhanced Deep Residual Networks for Single
    Image Super-Resolution", CVPRW 2017).

    Input: LR 16×16. Network: mean shift (−DIV2K mean), conv3×3 3→n_feats (head);
    ``n_blocks`` ResBlocks (conv–ReLU–conv, × ``res_scale``, + identity, no batch
    norm) and conv3×3, added to the head output (long skip); upsampler
    3 × (conv3×3 n_feats→4·n_feats + PixelShuffle(2)) from 16×16 to 128×128;
    conv3×3 n_feats→3 (tail); mean shift (+mean).
    Loss: L1 (mean over pixels), as in the paper.

    Parameters (edsr): 1,665,283
    Parameters (edsr_paper): 45,450,243

    Registered sizes: ``edsr`` = the paper's baseline model (16 blocks, 64
    features, res_scale 1); ``edsr_paper`` = the paper's full model (32 blocks, 256
    features, res_scale 0.1). Widths/depths: ``n_feats``, ``n_blocks``, ``res_scale``.
    Init: PyTorch defaults (as the authors' code).

    Adaptations: EDSR's upsamplers are ×2/×3/×4; ×8 is three ×2 pixel-shuffle steps
    (what the authors' code builds for any power of two). The mean shift is a fixed
    buffer (no parameters; the authors' code uses a frozen 1×1 conv).
    """

    paper = "Lim, Son, Kim, Nah & Lee, Enhanced Deep Residual Networks for Single Image Super-Resolution, CVPRW 2017"
    input_kind = "lr"
    predicts_sr = True
    predicts_landmarks = False
    sr_loss = "l1"

    def __init__(
        self,
        n_feats: int = 64,
        n_blocks: int = 16,
        res_scale: float = 1.0,
        num_points: int = 68,
        alpha: float = 1.0,
    ):
        super().__init__(num_points=num_points, alpha=alpha)
        self.res_scale = float(res_scale)
        self.sub_mean = MeanShift(sign=-1)
        self.add_mean = MeanShift(sign=+1)
        self.head = nn.Conv2d(3, n_feats, 3, padding=1)
        self.body = nn.Sequential(
            *[ResBlock(n_feats, 3, self.res_scale) for _ in range(n_blocks)],
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
        )
        self.upsampler = upsampler(self.scale, n_feats)
        self.tail = nn.Conv2d(n_feats, 3, 3, padding=1)

    def forward(self, lr: torch.Tensor) -> ModelOutput:
        x = self.head(self.sub_mean(lr))
        x = x + self.body(x)
        return ModelOutput(sr=self.add_mean(self.tail(self.upsampler(x))))
