"""The pieces of one training step that the loop and the benchmarks share (issue 12).

- :func:`make_optimizer`: the paper's Adam; fused (one kernel for all
  parameters) on CUDA, the plain loop elsewhere.
- :func:`loss_function`: forward (channels_last input, autocast at the resolved
  precision) plus the model's own loss, optionally through ``torch.compile``.
  The losses come back as device tensors: nothing here reads a value on the host.
- :func:`default_compile`: whether ``train.compile: auto`` compiles on a device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import runtime
from .errors import ConfigError
from .models import FaceModel

LossFn = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def make_optimizer(model: torch.nn.Module, lr: float, betas: tuple[float, float], weight_decay: float,
                   dev: torch.device) -> torch.optim.Adam:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=dev.type == "cuda")


def default_compile(dev: torch.device) -> bool:
    """``compile: auto``: on for CUDA. On the CPU it stays off until a benchmark shows it faster there
    (``benchmarks/bench_train.py --compile on``): the step is dominated by oneDNN convolutions, which
    inductor calls as they are, and compilation costs minutes on a small CPU."""
    return dev.type == "cuda"


def resolve_compile(value: bool | str, dev: torch.device) -> bool:
    if value == "auto":
        return default_compile(dev)
    if isinstance(value, bool):
        return value
    raise ConfigError(f"train.compile must be true, false or auto, got {value!r}")


def loss_function(model: FaceModel, dev: torch.device, precision: str, compile: bool = False,
                  forward: torch.nn.Module | None = None) -> LossFn:
    """``batch → losses`` (``{"total", "sr", "heatmap"}``, device tensors) for a resolved ``precision``.

    ``forward``: the module to call (the DDP wrapper under torchrun; default ``model``); the loss is
    always the model's own.
    """

    layout = runtime.memory_format(dev, precision)
    net = model if forward is None else forward

    def forward_loss(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with runtime.autocast(dev, precision):
            out = net(batch["lr"].contiguous(memory_format=layout))
        return model.loss(out, batch)

    if compile:
        return torch.compile(forward_loss, dynamic=False)
    return forward_loss
