"""Shared building blocks (EDSR style) used by JASRNet and the baselines.

- :func:`default_conv`: ``Conv2d(in, out, k, padding=k // 2, bias, stride)``.
- :class:`ResBlock`: conv → act → conv (optionally with batch norm), scaled by
  ``res_scale``, plus identity. No batch norm by default (EDSR / JASRNet).
- :class:`MeanShift`: subtracts (``sign=-1``) or adds (``sign=+1``) the DIV2K
  RGB mean (0.4488, 0.4371, 0.4040), std 1; never trained. By default its
  fixed 1×1-conv weight and bias are buffers (no parameters);
  ``frozen_params=True`` holds them as ``requires_grad=False`` parameters
  instead, like EDSR's/JASRNet's original code (12 counted parameters each).
- :class:`Upsampler`: log2(scale) × (conv n→4n + PixelShuffle(2)).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

RGB_MEAN = (0.4488, 0.4371, 0.4040)
RGB_STD = (1.0, 1.0, 1.0)


def default_conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True, stride: int = 1) -> nn.Conv2d:
    """Conv with 'same' padding (``kernel_size // 2``)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)


class ResBlock(nn.Module):
    """EDSR residual block: ``x + res_scale · conv(act(conv(x)))`` (no BN unless ``bn``)."""

    def __init__(
        self,
        n_feats: int,
        kernel: int = 3,
        res_scale: float = 1.0,
        act: Callable[[], nn.Module] | nn.Module = nn.ReLU,
        bn: bool = False,
        bias: bool = True,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(2):
            layers.append(default_conv(n_feats, n_feats, kernel, bias=bias))
            if bn:
                layers.append(nn.BatchNorm2d(n_feats))
            if i == 0:
                layers.append(act() if isinstance(act, type) else act)
        self.body = nn.Sequential(*layers)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        if self.res_scale != 1.0:
            res = res * self.res_scale
        return res + x


class MeanShift(nn.Module):
    """Subtract (``sign=-1``) or add (``sign=+1``) the RGB mean, EDSR style; never trained.

    The map is EDSR's fixed 1×1 conv: weight ``diag(1/std)`` (3×3×1×1) and bias
    ``sign·rgb_range·mean/std`` (3). It is applied as the equivalent per-channel
    affine map ``x·(1/std) + bias`` (an elementwise op: autocast leaves it in
    fp32, so an fp32 mean shift on a bf16 activation returns fp32).

    ``frozen_params=False`` (default): weight and bias are non-persistent buffers,
    so the module has no parameters. ``frozen_params=True``: they are
    ``nn.Parameter(requires_grad=False)`` — counted by ``parameters()`` (12 each)
    and saved in the state dict, as in the authors' EDSR/JASRNet code.
    Either way the module is not an ``nn.Conv2d``, so weight initializers
    (:func:`~jasrbench.models.base.init_normal_`) leave it alone.
    """

    def __init__(
        self,
        rgb_range: float = 1.0,
        rgb_mean=RGB_MEAN,
        rgb_std=RGB_STD,
        sign: int = -1,
        frozen_params: bool = False,
    ):
        super().__init__()
        std = torch.tensor(rgb_std, dtype=torch.float32)
        mean = torch.tensor(rgb_mean, dtype=torch.float32)
        weight = torch.diag(1.0 / std).view(3, 3, 1, 1)
        bias = sign * rgb_range * mean / std
        if frozen_params:
            self.weight = nn.Parameter(weight, requires_grad=False)
            self.bias = nn.Parameter(bias, requires_grad=False)
        else:
            self.register_buffer("weight", weight, persistent=False)
            self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight[:, :, 0, 0].diagonal().view(1, 3, 1, 1)
        return x * scale + self.bias.view(1, 3, 1, 1)


class Upsampler(nn.Sequential):
    """log2(scale) × (conv n→4n, 3×3 + PixelShuffle(2)); scale must be a power of two."""

    def __init__(self, scale: int, n_feats: int, bias: bool = True, conv=default_conv):
        if scale < 1 or scale & (scale - 1):
            raise ValueError(f"Upsampler: scale must be a power of two, got {scale}")
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            layers.append(conv(n_feats, 4 * n_feats, 3, bias=bias))
            layers.append(nn.PixelShuffle(2))
        super().__init__(*layers)


def max_pool2(x: torch.Tensor) -> torch.Tensor:
    """2×2 max pooling, stride 2."""
    return F.max_pool2d(x, 2)
