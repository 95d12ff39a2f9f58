"""The training recipe's settings, shared by ``train`` and ``pretrain``: :class:`TrainConfig` (the profile's
``train`` block with a model's overrides, checked), the validation faces carved from the training split,
and the metric that picks the kept epoch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import runtime
from .batcher import generator
from .data.augment import AugmentConfig
from .errors import ConfigError


@dataclass
class TrainConfig:
    """The resolved training settings of one run (profile ``train`` + the model's ``train`` overrides)."""

    epochs: int
    batch_size: int
    lr: float
    betas: tuple[float, float]
    weight_decay: float
    milestones: list[int]
    gamma: float
    copies_per_epoch: float
    max_faces: int | None
    val_faces: int
    augment: AugmentConfig
    select: str  # "auto" | "psnr" | "nme"
    # The fast path (issue 12): autocast precision (auto|fp32|bf16, jasrbench.runtime) and how many steps
    # may pass between two host reads of the device-side loss sums (the finiteness check; also at
    # checkpoints and validation). Device, compile, checkpoint_every, eval_batch_size: jasrbench.settings.
    precision: str = "auto"
    check_every: int = 100
    # Optional GAN/perceptual terms (jasrbench.models.adversarial); 0 = off, as in the paper.
    adversarial_weight: float = 0.0
    perceptual_weight: float = 0.0
    perceptual_layer: str = "relu5_4"
    discriminator_width: int = 64

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"train: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        d["augment"] = AugmentConfig.from_dict(d.get("augment"))
        d["betas"] = tuple(d.get("betas", (0.9, 0.999)))
        d.setdefault("select", "auto")
        d.setdefault("max_faces", None)
        try:
            # YAML 1.1 reads "1e-3" (no dot) as a string: coerce the numbers explicitly.
            for key in ("adversarial_weight", "perceptual_weight"):
                d[key] = float(d.get(key, 0.0))
            d["discriminator_width"] = int(d.get("discriminator_width", 64))
            d["check_every"] = int(d.get("check_every", 100))
            if d["check_every"] < 1:
                raise ValueError(f"check_every must be ≥ 1, got {d['check_every']}")
            if d.get("precision", "auto") not in runtime.PRECISIONS:
                raise ValueError(f"precision must be one of {', '.join(runtime.PRECISIONS)}, got {d['precision']!r}")
            for key in ("lr", "weight_decay", "gamma", "copies_per_epoch"):
                d[key] = float(d[key])
            for key in ("epochs", "batch_size", "val_faces"):
                d[key] = int(d[key])
            d["milestones"] = [int(m) for m in d["milestones"]]
            d["betas"] = tuple(float(b) for b in d["betas"])
            if d["max_faces"] is not None:
                d["max_faces"] = int(d["max_faces"])
            return cls(**d)
        except KeyError as exc:
            raise ConfigError(f"train: missing key {exc}") from exc
        except ValueError as exc:
            raise ConfigError(f"train: {exc}") from exc
        except TypeError as exc:
            raise ConfigError(f"train: {exc}") from exc




def carve_validation(n: int, seed: int, val_faces: int, max_faces: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): a seeded permutation of the training split."""
    if val_faces >= n:
        raise ConfigError(f"train.val_faces={val_faces} leaves no training faces out of {n}")
    perm = torch.randperm(n, generator=generator(seed, -1)).numpy()
    val = np.sort(perm[:val_faces])
    rest = perm[val_faces:]
    if max_faces is not None:
        rest = rest[:max_faces]
    return np.sort(rest), val




def selection_key(model, select: str) -> tuple[str, int]:
    """(metric, sign): the validation metric that picks the kept epoch; sign +1 = higher is better."""
    if select == "auto":
        select = "psnr" if model.predicts_sr else "nme"
    if select == "psnr":
        return "val_psnr", 1
    if select == "nme":
        return "val_nme", -1
    raise ConfigError(f"train.select must be auto, psnr or nme, got {select!r}")
