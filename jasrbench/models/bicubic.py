"""Bicubic ×8 upsampling: the no-learning baseline of every table (0 parameters).

Input: LR 16×16. Output: the shared antialiased bicubic upsampling
(:func:`jasrbench.data.degrade.upsample`), no heatmaps. Parameters: 0.
"""

from __future__ import annotations

import torch

from .base import FaceModel, ModelOutput
from .registry import register


@register("bicubic", description="bicubic ×8 interpolation (no weights)")
class Bicubic(FaceModel):
    paper = "Keys, Cubic convolution interpolation for digital image processing, IEEE TASSP 1981"
    input_kind = "lr"
    trainable = False

    def forward(self, lr: torch.Tensor) -> ModelOutput:
        return ModelOutput(sr=self.upsample(lr))
