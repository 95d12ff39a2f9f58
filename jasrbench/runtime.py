"""How a model runs, outside any training recipe: device, precision, checkpoints, prediction.

The two doors to a trained model are :func:`load_checkpoint` (the checked file)
and :func:`model_from_checkpoint` (the model rebuilt from it); :func:`load_model`
also takes the registry name of a model without weights (``bicubic``).
:func:`predict` runs a model over an LR stack in batches.

``precision``: ``fp32``; ``bf16`` (autocast of the forward pass, losses in fp32);
``auto`` = bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16 or AMX), fp32
elsewhere: on an AVX2-only CPU oneDNN emulates bf16 and is many times slower.
:func:`describe` is what results record, so every number names its hardware path.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from pathlib import Path
from typing import Any

import torch

from .data import degrade, protocols
from .errors import ConfigError, DataError
from .files import atomic_path

PRECISIONS = ("auto", "fp32", "bf16")
CHECKPOINT_FORMAT = "jasrbench-checkpoint"
CHECKPOINT_VERSION = 1
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA if available, else the CPU; anything else as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device: {name!r} is not a device torch knows ({exc})") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} asked for, but torch sees no CUDA device")
    return dev


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of the first processor in /proc/cpuinfo (empty where unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_capability() -> str:
    """torch's CPU dispatch level (``AVX2``, ``AVX512``, …) plus the native-bf16 flags present."""
    cap = torch.backends.cpu.get_cpu_capability()
    native = sorted(f for f in _NATIVE_BF16_FLAGS if f in cpu_flags())
    return "+".join([cap, *native])


def cpu_has_native_bf16() -> bool:
    flags = cpu_flags()
    if flags:
        return any(f in flags for f in _NATIVE_BF16_FLAGS)
    # No readable flags (not Linux): trust torch only where it dispatches AVX512 kernels *and*
    # oneDNN reports bf16 support.
    return (torch.backends.cpu.get_cpu_capability().startswith("AVX512")
            and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))


def resolve_precision(name: str, dev: torch.device) -> str:
    """``auto|fp32|bf16`` → ``fp32`` or ``bf16`` for ``dev`` (see the module docstring)."""
    if name not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name != "auto":
        return name
    if dev.type == "cuda":
        return "bf16"
    if dev.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def memory_format(dev: torch.device, precision: str) -> torch.memory_format:
    """channels_last where it is the fast layout: on CUDA, and on CPUs running native bf16.

    On other CPUs (AVX2, fp32) oneDNN's channels_last convolutions are slower
    than contiguous NCHW (``results/bench_train_profile_cpu.md``), so the
    default layout follows the hardware like the precision does.
    """
    if dev.type == "cuda" or (dev.type == "cpu" and precision == "bf16" and cpu_has_native_bf16()):
        return torch.channels_last
    return torch.contiguous_format


def autocast(dev: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of a resolved precision (``fp32`` → a no-op)."""
    if precision == "bf16":
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure_backends(dev: torch.device) -> None:
    """Backend switches of the fast path: cuDNN autotuning (every training batch has the same shape)."""
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True


def describe(dev: torch.device, precision: str, compiled: bool) -> dict[str, Any]:
    """What a result records about the hardware path that produced it."""
    out: dict[str, Any] = {
        "device": dev.type, "precision": precision, "compile": bool(compiled),
        "memory_format": "channels_last" if memory_format(dev, precision) == torch.channels_last else "contiguous",
        "cpu_capability": cpu_capability(), "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
    }
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dev)
    return out


# --- checkpoints ------------------------------------------------------------------------------------
def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` atomically (the temporary suffix is git- and DVC-ignored)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A jasrbench checkpoint (``model.pt`` or ``last.pt``), read with ``weights_only=True``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/foreign files
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0][:200]  # first sentence
        raise DataError(path, f"not a loadable checkpoint, truncated or not written by torch ({reason})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DataError(path, "not a jasrbench checkpoint")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise DataError(path, f"checkpoint version {ckpt.get('version')}, this code reads {CHECKPOINT_VERSION}")
    return ckpt


def model_from_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[Any, dict[str, Any]]:
    """(the trained model in eval mode on ``device``, its checkpoint) from ``model.pt``."""
    from .models import build

    ckpt = load_checkpoint(path)
    if "state_dict" not in ckpt or "arch" not in ckpt:
        raise DataError(path, "is a resume state (last.pt), not a trained model (model.pt)")
    model = build(ckpt["arch"], **ckpt["overrides"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:  # torch lists every mismatching tensor over many lines
        raise DataError(path, f"its weights do not fit model {ckpt['arch']!r} "
                              f"({str(exc).strip().splitlines()[0][:200]})") from exc
    model.name = ckpt["model"]
    model.set_protocol(ckpt.get("protocol", "clean"))  # checkpoints from before protocols: clean
    return model.to(device).eval(), ckpt


def load_model(target: str, device: torch.device, protocol: str | None = None) -> tuple[Any, dict[str, Any]]:
    """A checkpoint path (its own protocol), or the registry name of a model without weights (``protocol``)."""
    from .models import build

    if Path(target).suffix == ".pt" or Path(target).is_file():
        return model_from_checkpoint(target, device)
    model = build(target)
    if model.trainable:
        raise ConfigError(f"{target!r} has weights: give its trained checkpoint (model.pt), not its name")
    model.name = target
    model.set_protocol(protocols.get(protocol).name)
    return model.to(device).eval(), {"model": target, "arch": target, "overrides": {}, "protocol": model.protocol}


# --- prediction -------------------------------------------------------------------------------------
def predict_batch(model: Any, lr: torch.Tensor, dev: torch.device,
                  precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor | None]:
    """One batch on ``dev`` → (SR rounded to 8-bit levels, in [0, 1] floats; landmarks or None), on ``dev``."""
    x = lr.to(dev).contiguous(memory_format=memory_format(dev, precision))
    with autocast(dev, precision):
        out = model(x)
    sr = degrade.quantize(out.sr.float())
    pts = model.decode_landmarks(out)
    return sr, (None if pts is None else pts.float())


@torch.no_grad()
def predict(model: Any, lr: torch.Tensor, device: torch.device, batch_size: int,
            precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``model`` over an LR stack in batches → (SR in [0,1] on CPU, landmarks or None).

    fp32 by default, so one checkpoint gives the same metrics on a GPU and a CPU.
    """
    model.eval()
    precision = resolve_precision(precision, device)
    srs, pts = [], []
    for i in range(0, len(lr), batch_size):
        sr, p = predict_batch(model, lr[i : i + batch_size], device, precision)
        srs.append(sr.cpu())
        if p is not None:
            pts.append(p.cpu())
    return torch.cat(srs), (torch.cat(pts) if pts else None)
