"""One model on several processes: ``torchrun --nproc_per_node N -m jasrbench train …`` (issue 13).

The few helpers the training loop needs around PyTorch's DDP; outside torchrun every helper is a
no-op, so single-process training runs the code it always ran. :func:`setup` starts the process
group (NCCL on CUDA, gloo on the CPU); :func:`shard` keeps a rank's slice of the global batch
(every rank draws the whole batch from the same seeded generators, and the losses are batch
means, so DDP's averaged gradient is the full batch's); :func:`wrap` applies DDP, with
SyncBatchNorm on CUDA only (under gloo a batch-norm model normalizes per slice, with a logged
warning); :func:`gather_rows`, :func:`from_main`, :func:`barrier`, :func:`average_gradients` are
the collectives.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from .errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")


def launched_world_size() -> int:
    """How many processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def setup(dev: torch.device) -> torch.device:
    """Join torchrun's process group if there is one; returns this process's device.

    ``dev`` gives the device *type* (``cuda`` or ``cpu``); under torchrun the GPU index is ``LOCAL_RANK``.
    """
    if launched_world_size() <= 1:
        return dev
    if dev.type not in ("cuda", "cpu"):
        raise ConfigError(f"torchrun: device {dev} is not supported; use cuda or cpu")
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                device_id=dev if dev.type == "cuda" else None)
    if not is_main():  # rank 0 speaks for the run; the others report only problems
        logging.getLogger().setLevel(logging.WARNING)
    log.info("process group: %d processes (%s), this is rank %d on %s", world_size(), dist.get_backend(),
             rank(), dev)
    return dev


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(batch: dict[str, torch.Tensor], rank: int, world_size: int) -> dict[str, torch.Tensor]:
    """Rank ``rank``'s contiguous slice of every tensor of a global batch (equal slices; views)."""
    if world_size == 1:
        return batch
    out = {}
    for key, t in batch.items():
        if len(t) % world_size:
            raise ConfigError(f"a batch of {len(t)} does not split into {world_size} equal per-process slices "
                              "(train.batch_size must be a multiple of torchrun's --nproc_per_node)")
        n = len(t) // world_size
        out[key] = t[rank * n : (rank + 1) * n]
    return out


def wrap(model: nn.Module, dev: torch.device) -> nn.Module:
    """The module to call for forward passes: DDP over ``model`` under torchrun, else ``model`` itself.

    ``model`` stays the module to save, validate and reach ``loss``/decoding through (DDP's ``module``).
    Call before building the optimizer (SyncBatchNorm conversion replaces the batch-norm layers).
    """
    if not active() or not any(p.requires_grad for p in model.parameters()):
        return model
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_bn and dev.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif has_bn:
        log.warning("%s has batch norm: SyncBatchNorm needs CUDA, so under gloo each process normalizes "
                    "its own slice of the batch (close to, not the same as, one process)", type(model).__name__)
    return ddp(model, dev)


# Every registered model's own loss reaches every trainable parameter (tests/pipeline/test_gpu_path.py
# runs each one under DDP to show it), so DDP need not search the autograd graph for unused ones each
# step (issue 28). A model that leaves a parameter without a gradient fails at its second step, naming
# the parameter. (static_graph is no way out: with the models' dataclass outputs it leaves most
# gradients unreduced.)
DDP_OPTIONS = {"find_unused_parameters": False}


def ddp(model: nn.Module, dev: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel with :data:`DDP_OPTIONS` (the process group must exist)."""
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[dev.index] if dev.type == "cuda" else None, **DDP_OPTIONS)


def sync_batchnorm(module: nn.Module, dev: torch.device) -> nn.Module:
    """``module`` with SyncBatchNorm under torchrun on CUDA (a model trained outside DDP, e.g. a discriminator)."""
    if active() and dev.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """``world_size × …``: every rank's ``t`` stacked in rank order (``t`` as the one row when alone)."""
    if not active():
        return t.unsqueeze(0)
    rows = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(rows, t.contiguous())
    return torch.stack(rows)


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average gradients over the ranks in place (for a module not wrapped in DDP)."""
    if not active():
        return
    n = world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(n)


def from_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 only; every rank gets its (picklable) result. The others wait meanwhile."""
    value: Any = fn() if is_main() else None
    if active():
        box = [value]
        dist.broadcast_object_list(box, src=0)
        value = box[0]
    return value


def barrier() -> None:
    if active():
        dist.barrier()
