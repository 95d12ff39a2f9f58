"""What survives a restart of a training run: :class:`TrainState` (model, optimizer, schedule, extra terms,
RNG, position, history and the device-side loss sums)."""

from __future__ import annotations

from typing import Any

import torch

from . import distributed
from .extra_terms import ExtraTerms
from .models import FaceModel


class TrainState:
    """What a resumed run needs: model, optimizer, scheduler, extra terms, RNG, position, history, loss sums.

    The epoch's loss sums live on the device (float64) and are read on the host only by
    :meth:`check`, which also acts on the device-side record of the first non-finite loss.
    Under torchrun each rank sums its slice's losses (means over the slice); :meth:`check`
    gathers every rank's sums and first bad step in one collective and reports (and keeps
    for a resume) their average over the ranks: the full batch's mean losses.
    """

    def __init__(self, model: FaceModel, optimizer: torch.optim.Optimizer, scheduler: Any, extra: ExtraTerms,
                 loss_keys: list[str], dev: torch.device):
        self.model, self.optimizer, self.scheduler, self.extra = model, optimizer, scheduler, extra
        self.keys, self.dev = loss_keys, dev
        self.epoch, self.step, self.history, self.best = 0, 0, [], None
        self.begin_epoch(reset=True)

    def begin_epoch(self, reset: bool) -> None:
        """Start the epoch's accumulators (``reset``: from zero; else keep a resumed epoch's sums)."""
        if reset:
            self.sums = torch.zeros(len(self.keys), dtype=torch.float64, device=self.dev)
            self.seen = 0
        self.first_bad = torch.full((), -1, dtype=torch.long, device=self.dev)
        self.bad_value = torch.zeros((), dtype=torch.float32, device=self.dev)
        self.checked = self.step  # steps up to here are known finite

    def accumulate(self, losses: dict[str, torch.Tensor]) -> None:
        """Add one step's losses on the device and remember the first non-finite total (no host sync)."""
        values = torch.stack([losses[k].detach().float().reshape(()) for k in self.keys])
        self.sums += values.double()
        newly = ~torch.isfinite(values[0]) & (self.first_bad < 0)
        self.first_bad = torch.where(newly, self.step, self.first_bad)
        self.bad_value = torch.where(newly, values[0], self.bad_value)
        self.seen += 1
        self.step += 1

    def check(self) -> tuple[int | None, float, dict[str, float]]:
        """One host read: (first non-finite step of the epoch or None, its loss, mean losses so far).

        A collective under torchrun: every rank calls it at the same steps.
        """
        row = torch.cat([self.sums, self.first_bad.double().reshape(1), self.bad_value.double().reshape(1)])
        rows = distributed.gather_rows(row).cpu()  # one row per rank (exact for one process)
        self.checked_sums = (rows[:, :-2].sum(0) / len(rows)).tolist()
        bad = [(int(r[-2]), float(r[-1])) for r in rows if r[-2] >= 0]
        first_bad, bad_value = min(bad) if bad else (-1, 0.0)
        checked_from, self.checked = self.checked, self.step
        self.checked_range = (checked_from + 1, self.step)
        means = {k: v / max(self.seen, 1) for k, v in zip(self.keys, self.checked_sums)}
        return (None if first_bad < 0 else first_bad), bad_value, means

    def state_dict(self) -> dict[str, Any]:
        """The resume state, taken right after a :meth:`check` (mid-epoch, it keeps the checked sums)."""
        if self.step and self.checked != self.step:
            raise RuntimeError("TrainState.state_dict mid-epoch must follow check()")
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "extra": self.extra.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.dev) if self.dev.type == "cuda" else None,
            "epoch": self.epoch, "step": self.step, "history": self.history, "best": self.best,
            "partial": {"sums": dict(zip(self.keys, self.checked_sums)), "seen": self.seen} if self.step else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.extra.load_state_dict(state.get("extra"))
        torch.set_rng_state(state["rng_cpu"])
        if self.dev.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], self.dev)
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history, self.best = list(state["history"]), state["best"]
        partial = state.get("partial")
        self.begin_epoch(reset=True)
        # The loss sums of the steps done before the interruption; under torchrun every rank holds
        # them, as check() averages over the ranks.
        if self.step and partial:
            self.sums = torch.tensor([float(partial["sums"][k]) for k in self.keys], dtype=torch.float64,
                                     device=self.dev)
            self.seen = int(partial["seen"])
