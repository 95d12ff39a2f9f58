"""VDSR: 20-layer residual CNN on the bicubic-upsampled input (baseline of Table 1)."""

from __future__ import annotations

import torch
from torch import nn

from .base import FaceModel, ModelOutput
from .registry import register


@register("vdsr", description="VDSR: 20 conv layers, 64 ch, global residual on the bicubic ×8 input (MSE)")
class VDSR(FaceModel):
    """VDSR ×8 (Kim, Lee & Lee, "Accurate Image Super-Resolution Using Very Deep
    Convolutional Networks", CVPR 2016).

    Input: the LR 16×16 bicubic-upsampled to 128×128 inside the model (the shared
    :meth:`FaceModel.upsample`). Network: ``depth`` 3×3 conv layers — conv 3→n_feats
    + ReLU, ``depth − 2`` × (conv n_feats→n_feats + ReLU), conv n_feats→3 — whose
    output is added to the upsampled input (global residual learning).
    Loss: MSE (mean over pixels), as in the paper.

    Parameters: 668,227

    Widths/depths: ``n_feats`` (64), ``depth`` (20, counting the first and last conv).
    Init: He normal (std √(2/(9·n_in)), Caffe's MSRA filler) with zero biases, as in the paper.

    Adaptations: the paper works on the luminance channel only; here all three RGB
    channels are predicted (3 input and 3 output channels), like every model of the
    benchmark. The paper trains one network for ×2/×3/×4 with adjustable gradient
    clipping; here it is trained for ×8 only, with the benchmark's common optimizer.
    The output is not clamped (evaluation quantizes to 8 bits).
    """

    paper = "Kim, Lee & Lee, Accurate Image Super-Resolution Using Very Deep Convolutional Networks, CVPR 2016"
    input_kind = "upsampled"
    predicts_sr = True
    predicts_landmarks = False
    sr_loss = "mse"

    def __init__(self, n_feats: int = 64, depth: int = 20, num_points: int = 68, alpha: float = 1.0):
        super().__init__(num_points=num_points, alpha=alpha)
        if depth < 2:
            raise ValueError(f"VDSR needs depth >= 2 (first and last conv), got {depth}")
        layers: list[nn.Module] = [nn.Conv2d(3, n_feats, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(n_feats, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, lr: torch.Tensor) -> ModelOutput:
        up = self.upsample(lr)
        return ModelOutput(sr=up + self.body(up))
