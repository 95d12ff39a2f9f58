"""What ``train`` and ``pretrain`` set up alike before their first step: the run's settings, its device and
precision, the prepared training split (checked against the profile's protocol) and its validation carve."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed, runtime, settings
from .data import protocols
from .data.split import PreparedSplit, load_split
from .errors import ConfigError, DataError
from .holdout import carve_validation
from .models import FaceModel, build
from .models.blocks import fixed_order_grads
from .params import model_entry, model_train
from .recipe import TrainConfig


@dataclass
class TrainingSetup:
    model_name: str
    dataset: str
    entry: dict[str, Any]          # arch, overrides (num_points from the split), tables
    train_dict: dict[str, Any]     # the train block as written (profile + the model's overrides)
    cfg: TrainConfig
    seed: int
    rt: settings.Runtime
    dev: torch.device
    world: int
    precision: str
    split_path: Path
    data: PreparedSplit
    train_idx: np.ndarray
    val_idx: np.ndarray
    mirror: torch.Tensor | None

    @property
    def val(self) -> PreparedSplit:
        return self.data.subset(self.val_idx)

    def build_model(self) -> FaceModel:
        """The model, seeded, with the runtime's fixed-order gradients where asked (not yet on the device)."""
        torch.manual_seed(self.seed)
        model = build(self.entry["arch"], **self.entry["overrides"])
        if self.rt.fixed_order_grads:  # a runtime setting: same bits at 1 and 2 CPU threads, slower steps
            fixed_order_grads(model)
        model.set_protocol(self.data.protocol)
        return model


def setup(model_name: str, dataset: str, params: dict[str, Any], *, prepared: str | Path | None,
          device: str | None) -> TrainingSetup:
    """Settings, device (the process group under torchrun), data and validation faces of one run."""
    entry = model_entry(params, model_name)
    train_dict = model_train(params, model_name)
    cfg = TrainConfig.from_dict(train_dict, f"models.{model_name}.train")
    rt = settings.load(device=device)  # runtime settings: not in the run's fingerprint
    # Under torchrun: join the process group, on cuda:LOCAL_RANK (or the CPU). The run's fingerprint
    # does not hold the process count: N processes train the model one process trains.
    dev = distributed.setup(runtime.resolve_device(rt.device))
    world = distributed.world_size()
    if cfg.batch_size % world:
        raise ConfigError(f"train.batch_size={cfg.batch_size} does not split into {world} equal slices, one per process")
    split_path = Path(prepared or params["data"]["prepared"]) / dataset / "train.npz"
    data = load_split(split_path)
    if data.context is None:
        raise DataError(split_path, "no context crops (prepared as a test split?)")
    # The profile's protocol must be the one the training split was prepared with (error naming both).
    protocols.require_same(data.protocol, str(split_path), protocols.get(params["data"].get("protocol")).name,
                           f"profile {params['profile']!r} (data.protocol)")
    seed = int(params["seed"])
    train_idx, val_idx = carve_validation(len(data), seed, cfg.val_faces, cfg.max_faces)
    mirror = data.metadata.get("mirror_permutation")
    mirror_t = torch.tensor(mirror) if mirror else None
    if cfg.augment.flip > 0 and mirror_t is None:
        raise ConfigError(f"{split_path}: flipping needs the dataset's mirror permutation, absent from its metadata")
    # Landmark heads follow the dataset's markup (68 for 300W, 194 for HELEN, 19 for AFLW).
    entry["overrides"] = {**entry["overrides"], "num_points": data.num_points}
    return TrainingSetup(model_name, dataset, entry, train_dict, cfg, seed, rt, dev, world,
                         runtime.resolve_precision(cfg.precision, dev), split_path, data, train_idx, val_idx, mirror_t)
