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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .data import degrade, protocols
from .errors import ConfigError, DataError
from .files import atomic_path

from .recipe import PRECISIONS  # the schema is torch-free
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


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU runs bf16 natively (AMX or AVX512-BF16), from ``flags`` (default: /proc/cpuinfo's)."""
    flags = cpu_flags() if flags is None else flags
    if flags:
        return any(f in flags for f in _NATIVE_BF16_FLAGS)
    # No readable flags (not Linux): trust torch only where it dispatches AVX512 kernels *and*
    # oneDNN reports bf16 support.
    return (torch.backends.cpu.get_cpu_capability().startswith("AVX512")
            and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))


def resolve_precision(name: str, dev: torch.device, flags: frozenset[str] | None = None) -> str:
    """``auto|fp32|bf16`` → ``fp32`` or ``bf16`` for ``dev`` (see the module docstring); ``flags``: the CPU's
    feature flags (default: this machine's)."""
    if name not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name != "auto":
        return name
    if dev.type == "cuda":
        return "bf16"
    if dev.type == "cpu" and cpu_has_native_bf16(flags):
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
    """Backend switches of the *training* fast path: cuDNN autotuning (every training batch has the same shape).

    Process-wide, for the training loop and the speed benchmarks only. Prediction does not depend on it:
    :func:`prediction_backends` switches autotuning off (and TF32 off in fp32) around every prediction
    and restores this state afterwards.
    """
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True


# --- backend flags of prediction (issue 28) ----------------------------------------------------------
@dataclass(frozen=True)
class PredictionFlags:
    """Backend switches around a prediction; ``None`` leaves a switch as it is."""

    tf32: bool | None          # TF32 in fp32 matmuls and convolutions (cuBLAS, cuDNN)
    cudnn_benchmark: bool      # cuDNN autotuning (the algorithm then depends on the batch shape and timing)
    deterministic: bool        # cudnn.deterministic and torch.use_deterministic_algorithms (warn-only)


def prediction_flags(device_type: str, precision: str) -> PredictionFlags | None:
    """The backend switches prediction runs under, from the device type and the *resolved* precision.

    On CUDA: no cuDNN autotuning and deterministic algorithms, so a face's output depends neither on
    the chunk it is predicted in beyond fp32 rounding nor on timing; in ``fp32`` also no TF32 (its
    10-bit mantissa would make a checkpoint score differently on an Ampere/Hopper GPU than on a CPU).
    ``bf16`` keeps TF32 as it is (autocast decides the precision there). Elsewhere: ``None``, nothing
    to switch (CPU kernels do not autotune, and oneDNN runs fp32 as fp32 unless told otherwise).
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"prediction_flags needs a resolved precision (fp32 or bf16), got {precision!r}")
    if device_type != "cuda":
        return None
    return PredictionFlags(tf32=False if precision == "fp32" else None, cudnn_benchmark=False, deterministic=True)


def _tf32_switches() -> list[tuple[Any, str, Any]]:
    """(object, attribute, value meaning "no TF32") of every TF32 switch this torch has.

    torch ≥ 2.9 has per-operation ``fp32_precision`` settings (``ieee`` = full fp32); there the legacy
    ``allow_tf32`` flags are views of them, and reading the cuDNN one after the new API was used raises,
    so only the new settings are read and written. Older torch: the legacy flags.
    """
    b = torch.backends
    conv, rnn = getattr(b.cudnn, "conv", None), getattr(b.cudnn, "rnn", None)
    try:
        has_new = all(isinstance(getattr(o, "fp32_precision", None), str) for o in (b.cuda.matmul, conv, rnn))
    except (AttributeError, RuntimeError):
        has_new = False
    if has_new:
        return [(b.cuda.matmul, "fp32_precision", "ieee"), (conv, "fp32_precision", "ieee"),
                (rnn, "fp32_precision", "ieee")]
    return [(b.cuda.matmul, "allow_tf32", False), (b.cudnn, "allow_tf32", False)]


def backend_state() -> dict[str, Any]:
    """The switches :func:`prediction_backends` sets, as they are now (what a result can record)."""
    out: dict[str, Any] = {}
    for obj, attr, _ in _tf32_switches():
        out[_switch_name(obj, attr)] = getattr(obj, attr)
    out.update(cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
               cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
               deterministic_algorithms=torch.are_deterministic_algorithms_enabled())
    return out


def _switch_name(obj: Any, attr: str) -> str:
    b = torch.backends
    where = {id(b.cuda.matmul): "cuda.matmul", id(b.cudnn): "cudnn", id(getattr(b.cudnn, "conv", None)): "cudnn.conv",
             id(getattr(b.cudnn, "rnn", None)): "cudnn.rnn"}.get(id(obj), type(obj).__name__)
    return f"{where}.{attr}"


@contextlib.contextmanager
def prediction_backends(dev: torch.device | str, precision: str = "fp32") -> Iterator[PredictionFlags | None]:
    """Run the block under :func:`prediction_flags` (``precision`` resolved); restores every switch after.

    Prediction (:func:`predict`, :func:`jasrbench.scoring.score_split`, so validation inside training
    and ``evaluate``) and facenet's embeddings run inside it; nesting is fine. Process-wide switches:
    do not run training steps in another thread meanwhile.
    """
    flags = prediction_flags(torch.device(dev).type, precision)
    if flags is None:
        yield None
        return
    b = torch.backends
    saved_tf32 = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in _tf32_switches()] if flags.tf32 is not None else []
    saved = (b.cudnn.benchmark, b.cudnn.deterministic, torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        if flags.tf32 is False:
            for obj, attr, off in _tf32_switches():
                setattr(obj, attr, off)
        b.cudnn.benchmark = flags.cudnn_benchmark
        if flags.deterministic:
            b.cudnn.deterministic = True
            # warn-only: an operation without a deterministic CUDA kernel warns (naming itself), not fails
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield flags
    finally:
        for obj, attr, value in saved_tf32:
            setattr(obj, attr, value)
        b.cudnn.benchmark, b.cudnn.deterministic = saved[0], saved[1]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


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

    fp32 by default, so one checkpoint gives the same metrics on a GPU and a CPU (up to fp32
    rounding: :func:`prediction_backends` keeps TF32 and cuDNN autotuning out of it).
    """
    model.eval()
    precision = resolve_precision(precision, device)
    srs, pts = [], []
    with prediction_backends(device, precision):  # on CUDA: no TF32 in fp32, no autotuning (issue 28)
        for i in range(0, len(lr), batch_size):
            sr, p = predict_batch(model, lr[i : i + batch_size], device, precision)
            srs.append(sr.cpu())
            if p is not None:
                pts.append(p.cpu())
    return torch.cat(srs), (torch.cat(pts) if pts else None)
