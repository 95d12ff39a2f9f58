"""One training step's pieces, shared by ``train``, ``pretrain`` and the benchmarks (issue 12).

- :func:`make_optimizer`: the paper's Adam; fused (one kernel for all parameters) on CUDA, the plain
  loop elsewhere.
- :func:`forward_loss`: the one forward + loss: channels_last input, autocast at the resolved
  precision, the model's own loss (and the optional GAN/perceptual terms). Losses come back as
  device tensors: nothing here reads a value on the host.
- :func:`compile_decision`: whether the runtime setting ``JASRBENCH_COMPILE`` (``auto``: on for CUDA)
  compiles this run, as a pure function of what the loop sees (issue 28).
- :func:`loss_function`: ``batch → losses``, through ``torch.compile`` when decided, falling back to
  eager on the first compiled step's failure (:class:`CompiledLoss`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import runtime
from .errors import ConfigError
from .models import FaceModel

log = logging.getLogger(__name__)
LossFn = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def make_optimizer(params, lr: float, betas: tuple[float, float], weight_decay: float,
                   dev: torch.device) -> torch.optim.Adam:
    """Adam over the trainable tensors of ``params`` (a module or an iterable of tensors)."""
    tensors = params.parameters() if isinstance(params, torch.nn.Module) else params
    trainable = [p for p in tensors if p.requires_grad]
    return torch.optim.Adam(trainable, lr=lr, betas=betas, weight_decay=weight_decay, fused=dev.type == "cuda")


def forward_loss(model: FaceModel, batch: dict[str, torch.Tensor], dev: torch.device, precision: str = "fp32",
                 extra=None, forward: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The model's losses on a batch: input in the hardware's layout, autocast at ``precision`` (loss in fp32).

    With ``extra`` (:class:`jasrbench.extra_terms.ExtraTerms`) active, the perceptual/adversarial terms are
    added and the SR output is returned under ``"sr_output"`` for the discriminator step. ``forward``: the
    module to call (the DDP wrapper under torchrun; default ``model``).
    """
    net = model if forward is None else forward
    with runtime.autocast(dev, precision):
        out = net(batch["lr"].contiguous(memory_format=runtime.memory_format(dev, precision)))
    losses = model.loss(out, batch)
    if extra is not None and extra.active:
        losses = extra.add(losses, out.sr.float(), batch["hr"])
        losses["sr_output"] = out.sr.float()
    return losses


@dataclass(frozen=True)
class CompileDecision:
    compile: bool
    reason: str  # why, for the log and train.json


def compile_decision(requested: bool | str, device_type: str, *, world: int = 1, sync_batchnorm: bool = False,
                     eager_terms: bool = False, closed_form: bool = False) -> CompileDecision:
    """Whether a run compiles its loss step.

    ``auto`` compiles on CUDA only: on the CPU the step is dominated by oneDNN convolutions, which
    Inductor calls as they are, and compilation costs minutes (``benchmarks/bench_train.py --compile on``).
    Never with SyncBatchNorm under DDP (world > 1): torch.compile breaks the graph at every SyncBN layer
    at best and fails upstream at worst (FSRNet holds 132, Super-FAN 140, SRResNet 33); never with the
    GAN/perceptual terms (they run eagerly) or for a closed-form model (it takes no step).
    """
    if requested not in (True, False, "auto"):
        raise ConfigError(f"JASRBENCH_COMPILE must be true, false or auto, got {requested!r}")
    if closed_form:
        return CompileDecision(False, "closed-form model: no training step")
    if eager_terms:
        return CompileDecision(False, "the GAN/perceptual terms run eagerly")
    wanted = device_type == "cuda" if requested == "auto" else bool(requested)
    if not wanted:
        return CompileDecision(False, "off" if requested is False else f"auto: eager on {device_type}")
    if world > 1 and sync_batchnorm:
        return CompileDecision(False, f"SyncBatchNorm under DDP ({world} processes): torch.compile breaks the graph "
                                      "at every SyncBN and fails upstream; eager")
    return CompileDecision(True, "on" if requested is True else f"auto: compiled on {device_type}")


def has_sync_batchnorm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())


class CompiledLoss:
    """``torch.compile`` of :func:`forward_loss` that falls back to eager when its first step fails.

    Inductor/Triton can fail at run time (a missing C compiler or ``Python.h``); without the fallback
    the run would die at step 1. ``status`` says what ran, for ``train.json``: ``compiled`` or
    ``failed → eager (REASON)``.
    """

    def __init__(self, eager: LossFn, backend: str | Callable = "inductor"):
        self.eager = eager
        self.compiled = torch.compile(eager, dynamic=False, backend=backend)
        self.status = "compiled"
        self._proven = False

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self._proven:
            return self.compiled(batch)
        if self.compiled is self.eager:
            return self.eager(batch)
        try:
            losses = self.compiled(batch)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: train eagerly, say why
            reason = _root_cause(exc)
            log.warning("torch.compile failed on the first step (%s): training eagerly", reason)
            self.status = f"failed → eager ({reason})"
            self.compiled = self.eager
            return self.eager(batch)
        self._proven = True
        return losses


def _root_cause(exc: BaseException) -> str:
    """``Type: first line`` of the innermost cause (Dynamo wraps a backend's error in BackendCompilerFailed)."""
    while (inner := getattr(exc, "inner_exception", None) or exc.__cause__) is not None:
        exc = inner
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def loss_function(model: FaceModel, dev: torch.device, precision: str, compile: bool = False,
                  forward: torch.nn.Module | None = None, extra=None, backend: str | Callable = "inductor"):
    """``batch → losses`` (``{"total", "sr", "heatmap", …}``, device tensors) for a resolved ``precision``.

    ``forward``: the module to call (the DDP wrapper under torchrun; default ``model``); the loss is always
    the model's own. With ``compile``, a :class:`CompiledLoss` (its ``status`` says what ran).
    """

    def eager(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return forward_loss(model, batch, dev, precision, extra, forward)

    return CompiledLoss(eager, backend) if compile else eager
