"""SRResNet: the MSE-trained generator of SRGAN, ×8 (baseline of Table 1)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import FaceModel, ModelOutput
from .registry import register


class SRResBlock(nn.Module):
    """SRGAN's residual block: conv3×3 → BN → PReLU → conv3×3 → BN, plus identity."""

    def __init__(self, n_feats: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
            nn.BatchNorm2d(n_feats),
            nn.PReLU(),
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
            nn.BatchNorm2d(n_feats),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register("srresnet", description="SRResNet (SRGAN generator, MSE): 16 BN residual blocks, pixel shuffle ×2 three times")
class SRResNet(FaceModel):
    """SRResNet ×8 (Ledig, Theis, Huszár, Caballero, Cunningham, Acosta, Aitken,
    Tejani, Totz, Wang & Shi, "Photo-Realistic Single Image Super-Resolution Using
    a Generative Adversarial Network", CVPR 2017) — the generator of SRGAN trained
    with the pixel MSE only.

    Input: LR 16×16. Network: conv 9×9 3→n_feats + PReLU; ``n_blocks`` residual
    blocks (conv3×3–BN–PReLU–conv3×3–BN + identity); conv3×3 + BN, added to the
    head output (long skip); log2(8) = 3 upsampling blocks (conv3×3 n_feats→4·n_feats,
    PixelShuffle(2), PReLU); conv 9×9 n_feats→3.
    Loss: MSE (mean over pixels). The adversarial and VGG losses of SRGAN are not
    part of this baseline (the paper's tables compare pixel-trained models).

    Parameters: 1,697,175

    Widths/depths: ``n_feats`` (64), ``n_blocks`` (16).
    Init: PyTorch defaults (the paper does not specify one). PReLU: one slope per
    layer (``nn.PReLU()``; the paper does not say whether slopes are per channel).

    Adaptations: SRGAN is ×4 with two upsampling blocks; ×8 uses three. SRGAN
    scales HR targets to [−1, 1] (with a tanh output in some implementations); here
    input and target are both in [0, 1] and the output is linear (no tanh).
    """

    paper = (
        "Ledig et al., Photo-Realistic Single Image Super-Resolution Using a Generative "
        "Adversarial Network, CVPR 2017"
    )
    input_kind = "lr"
    predicts_sr = True
    predicts_landmarks = False
    sr_loss = "mse"

    def __init__(self, n_feats: int = 64, n_blocks: int = 16, num_points: int = 68, alpha: float = 1.0):
        super().__init__(num_points=num_points, alpha=alpha)
        self.head = nn.Sequential(nn.Conv2d(3, n_feats, 9, padding=4), nn.PReLU())
        self.body = nn.Sequential(
            *[SRResBlock(n_feats) for _ in range(n_blocks)],
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
            nn.BatchNorm2d(n_feats),
        )
        ups: list[nn.Module] = []
        for _ in range(int(math.log2(self.scale))):
            ups += [nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1), nn.PixelShuffle(2), nn.PReLU()]
        self.upsampler = nn.Sequential(*ups)
        self.tail = nn.Conv2d(n_feats, 3, 9, padding=4)

    def forward(self, lr: torch.Tensor) -> ModelOutput:
        x = self.head(lr)
        x = x + self.body(x)
        return ModelOutput(sr=self.tail(self.upsampler(x)))
