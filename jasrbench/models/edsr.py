"""EDSR ×8 in its baseline and paper sizes (Table 1)."""

from __future__ import annotations

import torch
from torch import nn

from .base import FaceModel, ModelOutput
from .blocks import MeanShift, ResBlock, Upsampler, default_conv
from .registry import register


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
    (what the authors' code builds for any power of two). The mean shift
    (:class:`~jasrbench.models.blocks.MeanShift`) holds the DIV2K mean in buffers:
    no parameters (the authors' code uses a frozen 1×1 conv, not counted here).
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
        self.head = default_conv(3, n_feats, 3)
        self.body = nn.Sequential(
            *[ResBlock(n_feats, 3, res_scale=self.res_scale) for _ in range(n_blocks)],
            default_conv(n_feats, n_feats, 3),
        )
        self.upsampler = Upsampler(self.scale, n_feats)
        self.tail = default_conv(n_feats, 3, 3)

    def forward(self, lr: torch.Tensor) -> ModelOutput:
        x = self.head(self.sub_mean(lr))
        x = x + self.body(x)
        return ModelOutput(sr=self.add_mean(self.tail(self.upsampler(x))))
