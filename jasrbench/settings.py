"""Runtime settings: how fast a stage runs, never what it computes (issue 13).

They are not experiment params: they live outside ``params.yaml`` (so DVC reruns
nothing when they change) and outside a training run's fingerprint (so a run
interrupted on one device resumes on another).

======================  ===============================  =========  ==============================================
setting                 environment variable             default    meaning
======================  ===============================  =========  ==============================================
``device``              ``JASRBENCH_DEVICE``             ``auto``   ``auto`` (CUDA if present, else CPU), ``cpu``,
                                                                    ``cuda``, ``cuda:N`` (the GPU index)
``compile``             ``JASRBENCH_COMPILE``            ``auto``   torch.compile of the training step: ``true``,
                                                                    ``false``, ``auto`` (on for CUDA only)
``checkpoint_every``    ``JASRBENCH_CHECKPOINT_EVERY``   ``1000``   steps between resume checkpoints (0: once per
                                                                    epoch only; there is one per epoch anyway)
``eval_batch_size``     ``JASRBENCH_EVAL_BATCH_SIZE``    ``32``     faces per forward pass in validation and
                                                                    evaluation
``fixed_order_grads``   ``JASRBENCH_FIXED_ORDER_GRADS``  ``false``  conv-bias and PReLU-slope gradients summed in
                                                                    a fixed order in eager CPU training, so 1 and 2
                                                                    threads train the same bits (models/blocks.py;
                                                                    costs step time: results/README.md)
======================  ===============================  =========  ==============================================

Precedence: a command-line option (``--device``) over the environment variable
over the default. The numerical precision (``train.precision``,
``evaluate.precision``) changes results and stays a param.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

ENV = {
    "device": "JASRBENCH_DEVICE",
    "compile": "JASRBENCH_COMPILE",
    "checkpoint_every": "JASRBENCH_CHECKPOINT_EVERY",
    "eval_batch_size": "JASRBENCH_EVAL_BATCH_SIZE",
    "fixed_order_grads": "JASRBENCH_FIXED_ORDER_GRADS",
}
_DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")


@dataclasses.dataclass(frozen=True)
class Runtime:
    device: str = "auto"
    compile: bool | str = "auto"
    checkpoint_every: int = 1000
    eval_batch_size: int = 32
    fixed_order_grads: bool = False


def _parse(name: str, value: Any, where: str) -> Any:
    text = str(value).strip()
    if name == "device":
        if not _DEVICE.fullmatch(text):
            raise ConfigError(f"{where}: {value!r} is not a device; use auto, cpu, cuda or cuda:N")
        return text
    if name in ("compile", "fixed_order_grads"):
        if isinstance(value, bool):
            return value
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        if lowered == "auto" and name == "compile":
            return "auto"
        choices = "true, false or auto" if name == "compile" else "true or false"
        raise ConfigError(f"{where} must be {choices}, got {value!r}")
    low = 0 if name == "checkpoint_every" else 1
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(text)
    except ValueError:
        raise ConfigError(f"{where} must be an integer >= {low}, got {value!r}") from None
    if number < low:
        raise ConfigError(f"{where} must be an integer >= {low}, got {value!r}")
    return number


def load(environ: Mapping[str, str] | None = None, **options: Any) -> Runtime:
    """The runtime settings: ``options`` (command-line values; None = not given) over ``environ`` over defaults."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, var in ENV.items():
        if options.get(name) is not None:
            values[name] = _parse(name, options[name], f"--{name.replace('_', '-')}")
        elif environ.get(var, "").strip():
            values[name] = _parse(name, environ[var], var)
    unknown = set(options) - set(ENV)
    if unknown:
        raise TypeError(f"unknown runtime settings {sorted(unknown)}")
    return Runtime(**values)

