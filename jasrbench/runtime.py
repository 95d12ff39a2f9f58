"""Device, precision and backend choices of training and evaluation (issue 12).

``precision``:

- ``fp32``: no autocast.
- ``bf16``: bf16 autocast of the forward pass (losses in fp32), wherever asked.
- ``auto``: bf16 on CUDA and on CPUs with native bf16 arithmetic (AVX512-BF16
  or AMX); fp32 everywhere else. On an AVX2-only CPU, bf16 is emulated by
  oneDNN and is many times *slower* than fp32, so ``auto`` never picks it there.

Native bf16 is read from the CPU's flags (``/proc/cpuinfo`` on Linux:
``avx512_bf16``, ``amx_bf16``); where the flags cannot be read, from torch's
own dispatch capability (``AVX512`` counts only with oneDNN's bf16 support).

:func:`describe` is what ``train.json``, ``summary.json`` and MLflow record, so
every number says which hardware path produced it.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")
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
