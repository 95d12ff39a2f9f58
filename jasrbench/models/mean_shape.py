"""Mean shape: the no-learning landmark floor (the mean training shape in the normalized crop, Table 2)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data import degrade, heatmaps
from .base import FaceModel, ModelOutput
from .registry import register


@register("mean_shape", description="the mean training shape in the crop, whatever the face (no-learning NME floor)")
class MeanShape(FaceModel):
    """The "nothing learned" answer of landmark localization: the same points for every face.

    Every crop of this benchmark is defined by the landmark box (its longer side
    × the protocol's margin, centred), so the mean of the training shapes in crop coordinates is
    already a fair guess for any test face; a landmark model whose NME is not
    below this floor has learned nothing about the face in front of it. The
    report flags such models ("did not learn in this profile").

    Input: LR 16×16 (ignored). Output: ``sr`` is the bicubic upsampling
    (``predicts_sr`` is False, as for CPM), ``heatmaps`` one stage of K + 1 maps
    at stride 8 rendered from the mean shape with the benchmark's encoding, and
    :meth:`decode_landmarks` returns the mean points themselves (no decoding
    error), so it is evaluated like any landmark model.

    Fit (the training stage): :meth:`fit_training_faces` sets each point to its
    mean over the training faces where it is annotated, on the prepared
    (un-augmented) crops; the training loop then takes no optimizer step
    (``closed_form``) and only validates and saves. Loss (kept for the model
    contract, never minimized): the heatmap loss of the rendered maps.

    Parameters: 136

    Widths/depths: none; ``num_points`` (68; 19 for AFLW). Init: points drawn
    uniformly over the crop from the seed (replaced by the fit).
    """

    paper = "no-learning floor of this benchmark (the mean training shape; no paper)"
    input_kind = "lr"
    predicts_sr = False
    predicts_landmarks = True
    heatmap_stride = 8
    closed_form = True

    def __init__(self, num_points: int = 68, alpha: float = 1.0):
        super().__init__(num_points=num_points, alpha=alpha)
        self.points = nn.Parameter(torch.rand(num_points, 2) * (degrade.HR_SIZE - 1))

    @torch.no_grad()
    def fit_training_faces(self, landmarks: np.ndarray, visible: np.ndarray) -> None:
        """Set the points to the per-point mean of ``landmarks`` (N×K×2, HR px) over the faces where ``visible``."""
        pts = torch.as_tensor(np.asarray(landmarks), dtype=torch.float64)
        vis = torch.as_tensor(np.asarray(visible), dtype=torch.bool) & torch.isfinite(pts).all(dim=-1)
        if pts.shape[1:] != (self.num_points, 2):
            raise ValueError(f"mean_shape fits {self.num_points} points, the training faces have {tuple(pts.shape)}")
        counts = vis.sum(dim=0)
        if not (counts > 0).all():
            missing = torch.nonzero(counts == 0).flatten().tolist()
            raise ValueError(f"mean_shape: points {missing} are annotated on no training face")
        weights = vis.unsqueeze(-1).to(pts.dtype)
        mean = (torch.nan_to_num(pts) * weights).sum(dim=0) / counts.unsqueeze(-1)
        self.points.copy_(mean.to(self.points.dtype))

    def forward(self, lr: torch.Tensor) -> ModelOutput:
        batch = self.points.unsqueeze(0).expand(lr.shape[0], -1, -1)
        maps, _ = heatmaps.encode(batch, size=self.heatmap_size, stride=self.heatmap_stride,
                                  image_size=degrade.HR_SIZE)
        return ModelOutput(sr=self.upsample(lr), heatmaps=[maps.to(lr.dtype)])

    def decode_landmarks(self, output: ModelOutput) -> torch.Tensor | None:
        return self.points.detach().float().unsqueeze(0).expand(output.sr.shape[0], -1, -1).clone()
