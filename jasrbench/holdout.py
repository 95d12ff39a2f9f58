"""The validation faces held out of a training split, and the validation metric that picks the kept epoch
(shared by ``train`` and ``pretrain``)."""

from __future__ import annotations

import numpy as np
import torch

from .errors import ConfigError
from .seeds import generator


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
