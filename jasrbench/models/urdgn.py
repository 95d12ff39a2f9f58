"""URDGN: the deconvolutional generator of Yu & Porikli's discriminative generative network (Table 1)."""

from __future__ import annotations

import torch
from torch import nn

from .base import FaceModel, ModelOutput
from .registry import register


def conv_bn_relu(cin: int, cout: int, kernel: int, bn: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return layers


def deconv_bn_relu(cin: int, cout: int, bn: bool) -> list[nn.Module]:
    """×2 upsampling by a 4×4 stride-2 transposed convolution (+ BN) + ReLU."""
    layers: list[nn.Module] = [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return layers


@register("urdgn", description="URDGN generator: 3 deconvolution ×2 stages with convs between, pixel MSE")
class URDGN(FaceModel):
    """URDGN ×8 generator (Yu & Porikli, "Ultra-Resolving Face Images by
    Discriminative Generative Networks", ECCV 2016).

    Input: LR 16×16. Network (the generative network of the paper, DCGAN-style):
    conv 5×5 3→widths[0] + BN + ReLU at 16×16; three ×2 stages, each a 4×4
    stride-2 transposed conv widths[i]→widths[i+1] + BN + ReLU followed by a conv
    ``kernel``×``kernel`` + BN + ReLU (16→32→64→128); conv 5×5 widths[3]→3.
    Loss: pixel MSE (mean over pixels). The paper's discriminative network (an
    adversarial loss) is optional in the paper's framing and not used here.

    Parameters: 3,572,675

    Widths/depths: ``widths`` (512, 256, 128, 64): features at 16, 32, 64, 128 px;
    ``kernel`` (3) of the conv after each deconvolution; ``bn`` (True).
    Init: PyTorch defaults.

    Adaptations: the paper's generator goes 16×16 → 128×128 (×8) already, so no
    scale change was needed. The paper specifies the layer types (deconvolutions
    for upsampling, convolutions in between, ReLU, batch normalization as in DCGAN)
    but its exact widths and kernel sizes are not reproduced in the text we follow;
    the widths above (halving from 512 at each ×2, as DCGAN does) and the 5×5
    head/tail kernels are our choice and are constructor arguments.
    """

    paper = "Yu & Porikli, Ultra-Resolving Face Images by Discriminative Generative Networks, ECCV 2016"
    input_kind = "lr"
    predicts_sr = True
    predicts_landmarks = False
    sr_loss = "mse"

    def __init__(
        self,
        widths: tuple[int, ...] = (512, 256, 128, 64),
        kernel: int = 3,
        bn: bool = True,
        num_points: int = 68,
        alpha: float = 1.0,
    ):
        super().__init__(num_points=num_points, alpha=alpha)
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4:
            raise ValueError(f"URDGN needs 4 widths (16, 32, 64, 128 px), got {widths}")
        layers = conv_bn_relu(3, widths[0], 5, bn)
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += deconv_bn_relu(cin, cout, bn)
            layers += conv_bn_relu(cout, cout, kernel, bn)
        layers.append(nn.Conv2d(widths[-1], 3, 5, padding=2))
        self.generator = nn.Sequential(*layers)

    def forward(self, lr: torch.Tensor) -> ModelOutput:
        return ModelOutput(sr=self.generator(lr))
