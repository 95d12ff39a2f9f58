"""Pretrained landmark networks of joint models: where a profile's pretraining puts them and how they load.

Kept apart from :mod:`jasrbench.pretrain` (the stage that trains them) so that the
profile code (:mod:`jasrbench.dag`), the training loop and the models can name
and load the files without importing the training machinery.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError, DataError

PRETRAINED_FORMAT = "jasrbench-pretrained"
PRETRAINED_VERSION = 1


def stage_key(model: str, part: str, dataset: str) -> str:
    """The DVC stage key of one pretraining: ``<model>_<part>-<dataset>`` (superfan_fan-300w)."""
    return f"{model}_{part}-{dataset}"


def pretrained_file(profile: str, model: str, part: str, dataset: str) -> str:
    """Repository-relative path of the pretrained weights the training stage of ``model`` loads."""
    return f"models/{profile}/pretrain/{stage_key(model, part, dataset)}/{part}.pt"


def settings(params: dict[str, Any], model: str) -> dict[str, Any] | None:
    """The model's ``pretrain`` entry in the profile (None: no pretraining)."""
    entry = (params["models"].get(model) or {}).get("pretrain")
    if entry is None:
        return None
    if not isinstance(entry, dict) or int(entry.get("epochs", 0)) < 1:
        raise ConfigError(f"models.{model}.pretrain: expected a mapping with epochs ≥ 1, got {entry!r}")
    unknown = set(entry) - {"epochs", "lr"}
    if unknown:
        raise ConfigError(f"models.{model}.pretrain: unknown keys {sorted(unknown)}; known: ['epochs', 'lr']")
    return entry


def load_pretrained(network: torch.nn.Module, path: str | Path, part: str, num_points: int) -> dict[str, Any]:
    """Load ``<part>.pt`` into ``network``; a missing, foreign or mismatched file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"pretrained {part} not found (run its `jasrbench pretrain` stage first)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/foreign files
        raise DataError(path, f"not a loadable pretrained network ({exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != PRETRAINED_FORMAT or ckpt.get("part") != part:
        raise DataError(path, f"not a jasrbench pretrained {part}")
    if ckpt.get("num_points") != num_points:
        raise DataError(path, f"pretrained for {ckpt.get('num_points')} points, the model has {num_points}")
    try:
        network.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise DataError(path, f"does not fit this {part} (other widths?): {str(exc).splitlines()[0]}") from exc
    return ckpt
