"""The one interface every model implements (DESIGN §3).

``model(lr)`` takes an LR batch B×3×16×16 in [0, 1] and returns a
:class:`ModelOutput` with ``sr`` (B×3×128×128) and ``heatmaps`` (a list with
one B×(K+1)×h×w tensor per supervised stage, or ``None`` for SR-only models).
A model that works on the bicubic-upsampled image calls :meth:`FaceModel.upsample`
(the one shared implementation, :func:`jasrbench.data.degrade.upsample`, with the
kernel of the model's degradation protocol ``model.protocol``: ``paper`` by
default, set by ``train`` from the training split and restored from the
checkpoint; see :mod:`jasrbench.data.protocols`).

Each model knows its own loss (:meth:`FaceModel.loss`), so one training loop
serves all of them. A training batch is a dict with

- ``lr``  B×3×16×16 float [0, 1]
- ``hr``  B×3×128×128 float [0, 1]
- ``landmarks`` B×K×2 float, 0-based HR pixel centres (x, y)
- ``visible``   B×K bool (annotated and inside the image)

Heatmap targets are made inside :meth:`FaceModel.heatmap_targets` at the
model's own heatmap resolution (``heatmap_stride``), with the authors'
encoding (:mod:`jasrbench.data.heatmaps`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data import degrade, heatmaps, protocols
from ..numerics import fixed_order_mean, fixed_order_sum


@dataclass
class ModelOutput:
    """What every model returns: the SR image and the per-stage heatmaps (or ``None``)."""

    sr: torch.Tensor
    heatmaps: list[torch.Tensor] | None = None


class FaceModel(nn.Module):
    """Base class: subclasses set the class attributes and implement ``forward``.

    Class attributes
    ----------------
    paper: the paper the architecture comes from (for docs and reports).
    input_kind: ``"lr"`` (works on 16×16) or ``"upsampled"`` (bicubic 128×128 inside).
    predicts_sr / predicts_landmarks: which tasks the model is trained for.
    heatmap_stride: HR pixels per heatmap cell (8 → 16×16 maps).
    sr_loss: ``"l1"`` or ``"mse"`` (mean over pixels).
    trainable: False for models without weights (bicubic): no training stage.
    protocol: the degradation protocol (``paper`` | ``clean``) whose bicubic :meth:`upsample` uses.
    """

    paper: str = ""
    input_kind: str = "lr"
    predicts_sr: bool = True
    predicts_landmarks: bool = False
    heatmap_stride: int = 8
    sr_loss: str = "l1"
    scale: int = degrade.SCALE
    trainable: bool = True
    protocol: str = protocols.DEFAULT

    def __init__(self, num_points: int = 68, alpha: float = 1.0):
        super().__init__()
        self.num_points = num_points
        self.alpha = alpha

    # -- shared pieces ------------------------------------------------------------
    def upsample(self, lr: torch.Tensor) -> torch.Tensor:
        """Bicubic ×scale of the LR input by the model's protocol (no gradient needed through it)."""
        return degrade.upsample(lr, self.scale, protocol=self.protocol)

    def set_training_step(self, step: int) -> None:
        """Called by ``train`` before optimizer step ``step`` (0-based over the whole run): a model whose
        recipe changes with the step (DIC freezes its landmark network for its first steps) acts here."""

    def set_protocol(self, protocol: str) -> FaceModel:
        """Use ``protocol``'s bicubic upsampling (checked by name); returns the model."""
        self.protocol = protocols.get(protocol).name
        return self

    @property
    def heatmap_size(self) -> int:
        return degrade.HR_SIZE // self.heatmap_stride

    def heatmap_targets(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Target heatmaps B×(K+1)×h×w and loss mask B×(K+1) at this model's resolution."""
        return heatmaps.encode(
            batch["landmarks"],
            batch.get("visible"),
            size=self.heatmap_size,
            stride=self.heatmap_stride,
            image_size=degrade.HR_SIZE,
        )

    def decode_landmarks(self, output: ModelOutput) -> torch.Tensor | None:
        """Predicted points B×K×2 in HR pixels from the last heatmap stage (None if no landmarks)."""
        if not self.predicts_landmarks or not output.heatmaps:
            return None
        points, _ = heatmaps.decode(output.heatmaps[-1], stride=self.heatmap_stride, num_points=self.num_points)
        return points

    def sr_loss_value(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        sr, hr = sr.float(), hr.float()
        # Fixed-order sums: a logged loss must not change with the thread count (jasrbench/numerics.py).
        if self.sr_loss == "l1":
            return fixed_order_mean((sr - hr).abs())
        if self.sr_loss == "mse":
            return fixed_order_mean((sr - hr).square())
        raise ValueError(f"unknown sr_loss {self.sr_loss!r}")

    def heatmap_loss_value(self, stages: list[torch.Tensor], target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """JASRNet's heatmap loss: squared error summed over masked maps and all stages, / (2·B)."""
        m = mask.to(target.dtype).unsqueeze(-1).unsqueeze(-1)
        total = sum(fixed_order_sum((s.float() - target) ** 2 * m, 4) for s in stages)
        return total / (2 * target.shape[0])

    def loss(self, output: ModelOutput, batch: dict) -> dict[str, torch.Tensor]:
        """Training loss: ``{"total", "sr", "heatmap"}`` (absent terms are 0)."""
        zero = output.sr.new_zeros(())
        sr_term = self.sr_loss_value(output.sr, batch["hr"]) if self.predicts_sr else zero.float()
        hm_term = zero.float()
        if self.predicts_landmarks and output.heatmaps:
            target, mask = self.heatmap_targets(batch)
            hm_term = self.heatmap_loss_value(output.heatmaps, target, mask)
        return {"total": sr_term + self.alpha * hm_term, "sr": sr_term, "heatmap": hm_term}


def init_normal_(module: nn.Module, std: float = 0.01) -> None:
    """JASRNet's init: conv/linear weights N(0, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
