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
- :func:`fixed_order_grads`: convolution bias and PReLU slope gradients by
  sums whose order does not follow the thread count, on the CPU (``build``
  applies it to every model).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..numerics import fixed_order_sum

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


def _per_channel_sum(values: torch.Tensor, channels: int) -> torch.Tensor:
    """Sum of a B×C×… tensor over all but the channel (``channels`` = C), or over all (``channels`` = 1), in an
    order that does not depend on the thread count.

    First one sum per (sample, channel) row: ATen splits a reduction with several outputs over its outputs,
    so each row is summed by one thread in an order fixed by its length (only single-output sums split the
    summed values by the thread count). Then :func:`~jasrbench.numerics.fixed_order_sum` over the samples
    (and channels): one read of ``values`` instead of the folds' several.
    """
    values = values.float()
    rows = values.contiguous().reshape(values.shape[0], values.shape[1], -1)
    if rows.shape[0] * rows.shape[1] > 1:
        rows = rows.sum(-1, keepdim=True)
    if channels == 1:
        return fixed_order_sum(rows, 3).reshape(1)
    per_channel = rows.transpose(0, 1)  # C×B×…
    return fixed_order_sum(per_channel, 2)


class _FixedOrderBiasGrad(torch.autograd.Function):
    """Identity on a convolution output computed with a detached bias; the bias gets its gradient here.

    oneDNN sums the bias gradient over batch and pixels in pieces that follow the thread
    count for some channel counts (e.g. a 3-channel RGB output), so weights trained with 1
    and 2 threads drift apart; :func:`~jasrbench.numerics.fixed_order_sum` does not. The
    output is returned as is (marked dirty: no copy, and in-place activations after it work).
    """

    @staticmethod
    def forward(ctx, out: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.bias_dtype = bias.dtype
        ctx.mark_dirty(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, _per_channel_sum(grad, grad.shape[1]).to(ctx.bias_dtype)


class _FixedOrderSlopeGrad(torch.autograd.Function):
    """Identity on a PReLU output computed with a detached slope; the slope gets its gradient here
    (ATen's sum of ``grad · min(x, 0)`` splits by the thread count on large maps)."""

    @staticmethod
    def forward(ctx, out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.weight_dtype, ctx.channels = weight.dtype, weight.numel()
        ctx.mark_dirty(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad, None, _per_channel_sum(grad * x.clamp(max=0), ctx.channels).to(ctx.weight_dtype)


def _fixed_order_training(param: torch.Tensor | None, x: torch.Tensor) -> bool:
    """Whether ``param`` takes its gradient from the fixed-order functions: training on the CPU, eager
    (elsewhere, and without gradients, the library's fused op; compiled graphs keep theirs)."""
    return (param is not None and x.device.type == "cpu" and torch.is_grad_enabled() and param.requires_grad
            and not torch.compiler.is_compiling())


def _fixed_order_bias(module: nn.Module, x: torch.Tensor, conv: Callable[[torch.Tensor | None], torch.Tensor]):
    """``conv(bias)``, with the bias gradient of :class:`_FixedOrderBiasGrad` when training on the CPU."""
    bias = module.bias
    if not _fixed_order_training(bias, x):
        return conv(bias)
    return _FixedOrderBiasGrad.apply(conv(bias.detach()), bias)


class FixedBiasConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose bias gradient does not depend on the thread count (same forward, same parameters)."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if bias is not self.bias:
            return super()._conv_forward(input, weight, bias)
        return _fixed_order_bias(self, input, lambda b: super(FixedBiasConv2d, self)._conv_forward(input, weight, b))


class FixedBiasConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` whose bias gradient does not depend on the thread count."""

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Only 'zeros' padding mode is supported for ConvTranspose2d")
        output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size,
                                              2, self.dilation)
        return _fixed_order_bias(self, input, lambda b: F.conv_transpose2d(
            input, self.weight, b, self.stride, self.padding, output_padding, self.groups, self.dilation))


class FixedGradPReLU(nn.PReLU):
    """``nn.PReLU`` whose slope gradient does not depend on the thread count (same forward, same parameter)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not _fixed_order_training(self.weight, input):
            return super().forward(input)
        return _FixedOrderSlopeGrad.apply(F.prelu(input, self.weight.detach()), input, self.weight)


_FIXED = {nn.Conv2d: FixedBiasConv2d, nn.ConvTranspose2d: FixedBiasConvTranspose2d, nn.PReLU: FixedGradPReLU}


def fixed_order_grads(model: nn.Module) -> nn.Module:
    """Give every plain ``nn.Conv2d``/``nn.ConvTranspose2d`` (with a bias) and ``nn.PReLU`` of ``model`` the
    thread-count-independent gradients above (in place; returns ``model``). Only the class changes: parameters,
    state dict keys, forward values and the other gradients stay the library's. oneDNN's convolution weight
    gradients (from 3–4 threads on; at 2 for 1×1 and some strided ones) and 1×1 forwards still follow the
    thread count (README, launch's "Threads")."""
    for module in model.modules():
        fixed = _FIXED.get(type(module))
        if fixed is not None and getattr(module, "bias", True) is not None:
            module.__class__ = fixed
    return model
