"""TinyJoint: a small joint network for 16×16 faces — ×8 super-resolution and 68 landmark heatmaps.

A shared residual trunk on the 16×16 LR grid feeds two heads:

- SR: three ×2 sub-pixel steps (conv → PixelShuffle) to 128×128, added to the bicubic upsampling
  (``FaceModel.upsample``: the benchmark's own kernel, so the network learns only the residual);
- landmarks: K + 1 heatmaps (K points and the background) on the same 16×16 grid, i.e. one cell per
  8 HR pixels (``heatmap_stride = 8``), encoded and decoded by jasrbench as for JASRNet.

The loss is the base class's: L1 on the SR image plus ``alpha`` × the heatmap loss. Everything else
(data, augmentation, training loop, metrics, tables, MLflow) comes from jasrbench.
"""

from __future__ import annotations

import torch
from torch import nn

from jasrbench.models import FaceModel, ModelOutput


class ResBlock(nn.Module):
    def __init__(self, n_feats: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(n_feats, n_feats, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TinyJoint(FaceModel):
    """TinyJoint: residual trunk on the LR grid, sub-pixel SR head and a 16×16 heatmap head."""

    paper = "jasrbench example plugin (examples/plugin)"
    input_kind = "lr"
    predicts_sr = True
    predicts_landmarks = True
    heatmap_stride = 8  # 128 / 8 = 16×16 heatmaps: the LR grid itself
    sr_loss = "l1"

    def __init__(self, num_points: int = 68, n_feats: int = 32, n_blocks: int = 4, alpha: float = 1.0):
        super().__init__(num_points=num_points, alpha=alpha)
        self.head = nn.Conv2d(3, n_feats, 3, padding=1)
        self.trunk = nn.Sequential(*[ResBlock(n_feats) for _ in range(n_blocks)])
        up = []
        for _ in range(3):  # 16 → 32 → 64 → 128
            up += [nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(inplace=True)]
        self.upsampler = nn.Sequential(*up)
        self.to_rgb = nn.Conv2d(n_feats, 3, 3, padding=1)
        self.heatmap_head = nn.Sequential(nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.ReLU(inplace=True),
                                          nn.Conv2d(n_feats, num_points + 1, 1))

    def forward(self, lr: torch.Tensor) -> ModelOutput:
        features = self.trunk(self.head(lr))
        sr = self.upsample(lr) + self.to_rgb(self.upsampler(features))
        heatmaps = self.heatmap_head(features)  # B × (K+1) × 16 × 16
        return ModelOutput(sr=sr, heatmaps=[heatmaps])
