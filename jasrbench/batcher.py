"""Training batches built on the device from a resident uint8 split (issue 12).

The split's context crops move to the device once, as stored uint8 (no float copy of the split);
each step indexes, warps (:func:`jasrbench.data.augment.augment_batch`) and degrades
(:func:`jasrbench.data.degrade.make_lr`) its batch there, so the only host→device traffic is a
small block of transform parameters. The randomness comes from CPU generators seeded by (seed,
epoch, step), so a resumed run sees the batches an uninterrupted one sees, on any device; under
torchrun every rank builds the same global batch and keeps its slice
(:func:`jasrbench.distributed.shard`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .data import degrade
from .data.augment import AugmentConfig, augment_batch
from .data.split import PreparedSplit
from .distributed import shard
from .seeds import generator


class Batcher:
    """Augmented training batches ``{lr, hr, landmarks, visible}`` of faces ``train_idx`` on ``dev``."""

    def __init__(self, data: PreparedSplit, train_idx: np.ndarray, augment: AugmentConfig,
                 mirror: torch.Tensor | None, dev: torch.device, *, seed: int, batch_size: int,
                 copies_per_epoch: float, scale: int = degrade.SCALE, rank: int = 0, world_size: int = 1,
                 degradation: str | None = None):
        if data.context is None:
            raise ValueError("the split has no context crops")
        self.augment, self.dev, self.seed, self.protocol = augment, dev, seed, data.protocol
        self.scale = int(scale)  # the model's LR→HR factor (8; 2 for jasrnet_lr64)
        self.batch_size, self.copies = batch_size, copies_per_epoch  # the global batch, over all ranks
        self.rank, self.world_size = rank, world_size
        self.num_faces = len(train_idx)
        self.context = self._to_device(torch.from_numpy(data.context))  # N×C×C×3 uint8
        self.points = self._to_device(torch.from_numpy(data.landmarks + data.context_offset))
        self.visible = self._to_device(torch.from_numpy(data.visible))
        self.faces = torch.as_tensor(np.asarray(train_idx), dtype=torch.long)
        self.mirror = None if mirror is None else mirror.to(dev, torch.long)
        # Training on a camera degradation: each face's draw is seeded by its name (jasrbench.data.degradations),
        # so the names travel on the host, in the order's host copy (no device read).
        self.degradation = degradation
        self.names = np.asarray(data.names) if degradation else None
        self._epoch, self._order, self._order_host = None, None, None

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        # A plain (pageable) copy, on every device (issue 28): pinning the whole split first would leave
        # a block that size locked in torch's caching host allocator for the life of the process (AFLW:
        # about 2.2 GB per rank) to speed up a copy made once; the per-epoch order is a few kB.
        return t.to(self.dev)

    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.num_faces * self.copies / self.batch_size))

    def order(self, epoch: int) -> torch.Tensor:
        """The epoch's face order (split indices, on the device): one permutation per copy."""
        if self._epoch != epoch:
            perm = torch.cat([torch.randperm(self.num_faces, generator=generator(self.seed, epoch, c))
                              for c in range(math.ceil(self.copies))])
            self._order_host = self.faces[perm]
            self._order, self._epoch = self._to_device(self._order_host), epoch
        return self._order

    def indices(self, epoch: int, step: int) -> torch.Tensor:
        order = self.order(epoch)
        pos = (step * self.batch_size + torch.arange(self.batch_size, device=self.dev)) % len(order)
        return order[pos]

    def batch(self, epoch: int, step: int) -> dict[str, torch.Tensor]:
        """This rank's slice of step ``step``'s global batch (all of it in one process)."""
        return shard(self.global_batch(epoch, step), self.rank, self.world_size)

    def global_batch(self, epoch: int, step: int) -> dict[str, torch.Tensor]:
        idx = self.indices(epoch, step)
        context = self.context[idx].permute(0, 3, 1, 2)  # B×3×C×C uint8 (a view: channels-last strides)
        hr, pts, vis = augment_batch(context, self.points[idx], self.visible[idx], self.augment,
                                     generator(self.seed, epoch, step, 1), self.mirror)
        # The LR is made as the split's stored LR was (its protocol's kernel), so on-the-fly equals prepared.
        if self.degradation is None:
            lr = degrade.make_lr(hr, self.scale, protocol=self.protocol)
        else:
            # Epoch 1 draws as a prepared degraded split does (an identity augmentation gives its LR bit for bit);
            # later epochs draw afresh per face.
            from .data.degradations import degrade_lr

            self.order(epoch)
            pos = (step * self.batch_size + np.arange(self.batch_size)) % len(self._order_host)
            names = self.names[self._order_host.numpy()[pos]].tolist()
            lr = degrade_lr(hr, self.degradation, names, scale=self.scale, salt=None if epoch == 0 else f"epoch{epoch}")
        return {"lr": lr, "hr": hr, "landmarks": pts, "visible": vis}
