"""Bicubic ×8 upsampling: the no-learning baseline of every table (0 parameters).

Input: LR 16×16. Output: the shared bicubic upsampling of the model's protocol
(:func:`jasrbench.data.degrade.upsample`: non-antialiased cubic a = −0.75 under
``paper``, antialiased a = −0.5 under ``clean``), batched in torch, no heatmaps.
Parameters: 0.
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
