"""``jasrbench train``: the one training loop of every model.

The pieces it puts together: the recipe's settings and validation carve
(:mod:`jasrbench.recipe`), batches made on the device (:mod:`jasrbench.batcher`),
the compiled or eager loss step (:mod:`jasrbench.step`), device, precision and
checkpoints (:mod:`jasrbench.runtime`), validation (:func:`jasrbench.scoring.validation_metrics`)
and DDP under torchrun (:mod:`jasrbench.distributed`).

Why it looks as it does:

- No host read inside a step: loss sums and the first non-finite loss live on the
  device (:class:`TrainState`) and are checked every ``check_every`` steps, every few
  seconds, before each checkpoint and at validation; a NaN stops the run naming the
  step, and only checked states are saved, so the last good checkpoint survives.
- Exact resume: every random draw comes from a generator seeded by (seed, epoch, step),
  and ``last.pt`` holds everything else. It is resumed only when the run's fingerprint
  (config, prepared split bytes, source of every imported module) matches and the run
  is unfinished, so a changed run never returns stale weights.
- Validation faces are carved from the training split, never the test set.

Outputs: ``--out``: ``model.pt`` (best validation epoch), ``last.pt`` (while unfinished);
``--results``: ``history.csv``, ``train.json``, ``samples.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from . import config as cfgmod
from . import deps, distributed, runtime, settings, tracking
from . import step as stepmod
from . import pretrained_weights as pretrain_mod
from .batcher import Batcher
from .data import protocols
from .data.augment import rotation_bound
from .data.split import PreparedSplit, load_split
from .errors import ConfigError, DataError, JasrbenchError
from .files import atomic_path, atomic_write_json
from .models import FaceModel, build
from .models.blocks import fixed_order_grads
from .recipe import TrainConfig, carve_validation, selection_key
from .runtime import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, load_checkpoint, model_from_checkpoint, save_checkpoint
from .scoring import score_split, validation_metrics

log = logging.getLogger(__name__)


class TrainingDiverged(JasrbenchError):
    """The loss became NaN or infinite."""


def config_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --- run fingerprint and the resume decision (issue 10) --------------------------------------------
# A run is resumed only when it is unfinished and its fingerprint matches: the resolved config, the bytes
# of the prepared split it reads and the source of every module it runs (deps.stage_code, the same files
# dvc.yaml declares). Otherwise a code or data change could "resume" a finished run and retrain nothing.
TRAIN_ENTRY = ("jasrbench.train",)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def run_fingerprint(run_config: dict[str, Any], split_path: Path, arch: str) -> dict[str, Any]:
    """{"config", "data", "code": {file: digest}, "id"}: what a run's weights depend on."""
    parts = {"config": config_hash(run_config), "data": file_digest(split_path),
             "code": deps.code_digest(deps.stage_code(TRAIN_ENTRY, arch))}
    return {**parts, "id": config_hash(parts)}


def fingerprint_difference(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """What differs, for the log: e.g. ``code (jasrbench/models/jasrnet.py)``, ``config``, ``data``."""
    if not isinstance(old, dict) or "id" not in old:
        return "it has no fingerprint (written by older code)"
    why = [name for key, name in (("config", "config"), ("data", "prepared data")) if old.get(key) != new[key]]
    old_code, new_code = old.get("code") or {}, new["code"]
    changed = sorted(f for f in set(old_code) | set(new_code) if old_code.get(f) != new_code.get(f))
    if changed:
        why.append("code (" + ", ".join(changed[:5]) + (", …" if len(changed) > 5 else "") + ")")
    why = why or ["fingerprint"]
    return "its " + " and ".join(why) + (" differs" if len(why) == 1 else " differ")


def resume_decision(last_path: Path, fingerprint: dict[str, Any], epochs: int, resume: bool) -> dict[str, Any] | None:
    """The resume state to continue from, or None to start afresh (the reason is logged).

    A truncated or foreign ``last.pt`` is an error naming the file (never silently replaced).
    """
    if not resume or not last_path.is_file():
        return None
    state = load_checkpoint(last_path)
    if state.get("kind", "resume") != "resume" or "optimizer" not in state:
        raise DataError(last_path, "holds a trained model, not a resume state; delete it or pass --no-resume")
    if state.get("fingerprint", {}).get("id") != fingerprint["id"]:
        log.warning("%s not resumed: %s; starting afresh", last_path,
                    fingerprint_difference(state.get("fingerprint"), fingerprint))
        return None
    if state.get("finished") or int(state["epoch"]) >= epochs:
        log.info("%s is a finished run: starting afresh", last_path)
        return None
    return state


def retire_resume_state(last_path: Path) -> None:
    """A finished run's ``last.pt`` is removed so that no later run can resume it."""
    last_path.unlink(missing_ok=True)


# --- optional adversarial / perceptual terms ---------------------------------------------------------
class ExtraTerms:
    """The GAN and perceptual terms a profile may add to any SR model's own loss (off by default).

    Owns the discriminator and its Adam optimizer (same lr, betas and schedule as the model's),
    and the frozen VGG; :meth:`add` extends the model's losses, :meth:`discriminator_step`
    trains the discriminator on (HR, detached SR) after each generator step.
    """

    def __init__(self, cfg: TrainConfig, model: FaceModel, dev: torch.device):
        from .models import adversarial

        self.cfg, self.adv = cfg, adversarial
        self.disc = self.disc_opt = self.disc_sched = self.perceptual = None
        wants = cfg.adversarial_weight > 0 or cfg.perceptual_weight > 0
        if wants and not model.predicts_sr:
            raise ConfigError(f"adversarial/perceptual terms need an SR model; {type(model).__name__} "
                              "is alignment-only here")
        if cfg.adversarial_weight > 0:
            layout = runtime.memory_format(dev, runtime.resolve_precision(cfg.precision, dev))
            disc = adversarial.Discriminator(cfg.discriminator_width).to(dev).to(memory_format=layout)
            self.disc = distributed.sync_batchnorm(disc, dev)  # not DDP-wrapped: its gradients are averaged below
            self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr, betas=cfg.betas)
            self.disc_sched = torch.optim.lr_scheduler.MultiStepLR(self.disc_opt, cfg.milestones, cfg.gamma)
        if cfg.perceptual_weight > 0:
            self.perceptual = adversarial.PerceptualLoss(cfg.perceptual_layer).to(dev)

    @property
    def active(self) -> bool:
        return self.disc is not None or self.perceptual is not None

    def add(self, losses: dict[str, torch.Tensor], sr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.perceptual is not None:
            losses["perceptual"] = self.perceptual(sr, hr)
            losses["total"] = losses["total"] + self.cfg.perceptual_weight * losses["perceptual"]
        if self.disc is not None:
            for p in self.disc.parameters():
                p.requires_grad_(False)
            losses["adversarial"] = self.adv.generator_adversarial_loss(self.disc(sr))
            for p in self.disc.parameters():
                p.requires_grad_(True)
            losses["total"] = losses["total"] + self.cfg.adversarial_weight * losses["adversarial"]
        return losses

    def discriminator_step(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor | None:
        if self.disc is None:
            return None
        loss = self.adv.discriminator_loss(self.disc(hr), self.disc(sr.detach()))
        self.disc_opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(self.disc.parameters())
        self.disc_opt.step()
        return loss.detach()

    def state_dict(self) -> dict[str, Any] | None:
        if self.disc is None:
            return None
        return {"model": self.disc.state_dict(), "optimizer": self.disc_opt.state_dict(),
                "scheduler": self.disc_sched.state_dict()}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.disc is not None and state is not None:
            self.disc.load_state_dict(state["model"])
            self.disc_opt.load_state_dict(state["optimizer"])
            self.disc_sched.load_state_dict(state["scheduler"])

    def epoch_done(self) -> None:
        if self.disc_sched is not None:
            self.disc_sched.step()


# --- one step and the state that survives a restart -------------------------------------------------
def forward_loss(model: FaceModel, batch: dict[str, torch.Tensor], dev: torch.device,
                 extra: ExtraTerms | None = None, precision: str = "fp32",
                 forward: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The model's losses on a batch (eager): input in the hardware's layout, autocast at ``precision`` (loss in fp32).

    With ``extra`` active, the perceptual/adversarial terms are added and the SR
    output is returned under ``"sr_output"`` for the discriminator step. ``forward``:
    the module to call (the DDP wrapper under torchrun; default ``model``).
    """
    net = model if forward is None else forward
    with runtime.autocast(dev, precision):
        out = net(batch["lr"].contiguous(memory_format=runtime.memory_format(dev, precision)))
    losses = model.loss(out, batch)
    if extra is not None and extra.active:
        losses = extra.add(losses, out.sr.float(), batch["hr"])
        losses["sr_output"] = out.sr.float()
    return losses


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


# --- the loop ---------------------------------------------------------------------------------------
def train(
    model_name: str,
    dataset: str,
    params: dict[str, Any],
    out_dir: str | Path,
    results_dir: str | Path | None = None,
    *,
    prepared: str | Path | None = None,
    resume: bool = True,
    device: str | None = None,
    stop_after_steps: int | None = None,
) -> dict[str, Any]:
    """Train ``model_name`` (a key of the profile's ``models``) on ``dataset``; returns ``train.json``'s content.

    ``stop_after_steps`` ends the process's work early (tests of resumption).
    """
    entry = cfgmod.model_entry(params, model_name)
    train_dict = {**params["train"], **(params["models"][model_name] or {}).get("train", {})}
    cfg = TrainConfig.from_dict(train_dict)
    seed = int(params["seed"])
    rt = settings.load(device=device)  # runtime settings: not in the fingerprint below
    # Under torchrun: join the process group, on cuda:LOCAL_RANK (or the CPU). The run's fingerprint
    # does not hold the process count: N processes train the model one process trains.
    dev = distributed.setup(runtime.resolve_device(rt.device))
    world, main = distributed.world_size(), distributed.is_main()
    if cfg.batch_size % world:
        raise ConfigError(f"train.batch_size={cfg.batch_size} does not split into {world} equal slices, one per process")
    precision = runtime.resolve_precision(cfg.precision, dev)
    runtime.configure_backends(dev)
    out_dir, results_dir = Path(out_dir), Path(results_dir or out_dir)
    prepared = Path(prepared or params["data"]["prepared"])
    split_path = prepared / dataset / "train.npz"

    data = load_split(split_path)
    if data.context is None:
        raise ConfigError(f"{split_path}: no context crops (prepared as a test split?)")
    train_idx, val_idx = carve_validation(len(data), seed, cfg.val_faces, cfg.max_faces)
    val = data.subset(val_idx)
    mirror = data.metadata.get("mirror_permutation")
    mirror_t = torch.tensor(mirror) if mirror else None
    if cfg.augment.flip > 0 and mirror_t is None:
        raise ConfigError(f"{split_path}: flipping needs the dataset's mirror permutation, absent from its metadata")
    if not rotation_bound(cfg.augment, data.context.shape[1] / data.hr.shape[1]):
        log.warning("augmentation can reach outside the context crop: some corners will be black")

    # Landmark heads follow the dataset's markup (68 for 300W, 194 for HELEN, 19 for AFLW).
    entry["overrides"] = {**entry["overrides"], "num_points": data.num_points}
    torch.manual_seed(seed)
    model = build(entry["arch"], **entry["overrides"])
    if rt.fixed_order_grads:  # a runtime setting: same bits at 1 and 2 CPU threads, slower steps
        fixed_order_grads(model)
    # The profile's protocol must be the one the training split was prepared with (error naming both).
    protocols.require_same(data.protocol, str(split_path), protocols.get(params["data"].get("protocol")).name,
                           f"profile {params['profile']!r} (data.protocol)")
    model.set_protocol(data.protocol)
    if not model.trainable:
        raise ConfigError(f"model {model_name!r} has no weights to train")
    # A closed-form model (the mean_shape floor) is fitted once on the un-augmented training
    # faces; the loop below then takes no optimizer step and only validates and saves.
    closed_form = bool(getattr(model, "closed_form", False))
    if closed_form:
        model.fit_training_faces(data.landmarks[train_idx], data.visible[train_idx])
    # A joint model whose landmark network was pretrained alone on HR faces (Super-FAN's FAN, the
    # `pretrain` stage of jasrbench/pretrain.py) starts from those weights.
    if pretrain_mod.settings(params, model_name) is not None:
        model.load_pretrained(pretrain_mod.pretrained_file(params["profile"], model_name, model.pretrain_part, dataset))
    model = model.to(dev).to(memory_format=runtime.memory_format(dev, precision))
    net = distributed.wrap(model, dev)  # what forward passes call: DDP under torchrun, else the model itself
    optimizer = stepmod.make_optimizer(model, cfg.lr, cfg.betas, cfg.weight_decay, dev)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.gamma)
    extra = ExtraTerms(cfg, model, dev)
    n_params = sum(p.numel() for p in model.parameters())

    run_config = {
        "model": model_name, "arch": entry["arch"], "overrides": entry["overrides"], "dataset": dataset,
        "profile": params["profile"], "seed": seed, "train": train_dict, "protocol": data.protocol,
        "precision": precision,
        "split": str(split_path), "split_faces": len(data), "train_faces": len(train_idx), "val_faces": len(val_idx),
    }
    chash = config_hash(run_config)
    fingerprint = run_fingerprint(run_config, split_path, entry["arch"])
    steps_per_epoch = 0 if closed_form else max(1, math.ceil(len(train_idx) * cfg.copies_per_epoch / cfg.batch_size))
    metric_key, sign = selection_key(model, cfg.select)

    loss_keys = ["total", "sr", "heatmap"]
    if extra.perceptual is not None:
        loss_keys.append("perceptual")
    if extra.disc is not None:
        loss_keys += ["adversarial", "discriminator"]
    ts = TrainState(model, optimizer, scheduler, extra, loss_keys, dev)
    last_path, best_path = out_dir / "last.pt", out_dir / "model.pt"
    state = resume_decision(last_path, fingerprint, cfg.epochs, resume)
    distributed.barrier()  # every rank has read last.pt before rank 0 may replace it
    if state is not None:
        ts.load_state_dict(state)
        log.info("resuming %s in epoch %d after %d of its %d steps", model_name, ts.epoch + 1, ts.step,
                 steps_per_epoch)
    elif main:
        best_path.unlink(missing_ok=True)  # a fresh run never leaves another run's model.pt beside its own
    batcher = Batcher(data, train_idx, cfg.augment, mirror_t, dev, seed=seed, batch_size=cfg.batch_size,
                      copies_per_epoch=cfg.copies_per_epoch, scale=model.scale, rank=distributed.rank(),
                      world_size=world)
    # The extra terms need the SR output: they run eagerly. Everything else goes through step.loss_function.
    compiled = stepmod.resolve_compile(rt.compile, dev) and not extra.active and not closed_form
    loss_fn = (stepmod.loss_function(model, dev, precision, compiled, forward=net) if not extra.active
               else lambda batch: forward_loss(model, batch, dev, extra, precision, forward=net))
    hardware = runtime.describe(dev, precision, compiled)
    if world > 1:
        hardware["processes"] = world
    if dev.type == "cpu":
        hardware["fixed_order_grads"] = bool(rt.fixed_order_grads and not compiled)

    def save_resume_state() -> None:
        """last.pt (by rank 0), written only after the finiteness check passed (so it is always a good state)."""
        if main:
            save_checkpoint(last_path, {
                "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config_hash": chash,
                "kind": "resume", "fingerprint": fingerprint, "finished": ts.epoch >= cfg.epochs, **ts.state_dict(),
            })

    def check_finite(epoch: int) -> dict[str, float]:
        """Read the device-side sums; stop on the first non-finite loss, naming it and the steps checked."""
        first_bad, value, means = ts.check()
        if first_bad is not None:
            lo, hi = ts.checked_range
            raise TrainingDiverged(
                f"{model_name}: loss became {value} at epoch {epoch + 1}, step {first_bad + 1} "
                f"(found by the check of steps {lo}–{hi}); stopped. The last good checkpoint is kept in {last_path}"
                + (f" (and the best in {best_path})" if best_path.exists() else "")
                + ". Lower train.lr or check the data.")
        return means

    def best_payload(epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config_hash": chash,
            "kind": "model", "fingerprint": fingerprint["id"],
            "model": model_name, "arch": entry["arch"], "overrides": entry["overrides"],
            "num_points": model.num_points, "dataset": dataset, "profile": params["profile"], "protocol": model.protocol,
            "epoch": epoch, "val": metrics, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        }

    tags = {"stage": "train", "model": model_name, "arch": entry["arch"], "dataset": dataset,
            "profile": params["profile"], "device": dev.type, "precision": precision,
            **tracking.table_tags(entry["tables"])}
    experiment = tracking.train_experiment(params["profile"])
    steps_done_here = 0
    t_start = time.perf_counter()
    # MLflow, the progress bar, validation and every file: rank 0 only.
    tracked = (tracking.start_run(experiment, f"train {model_name} on {dataset}", tags,
                                  {**run_config, "params": n_params, **tracking.arch_params(entry["arch"], entry["overrides"]),
                                   "runtime": hardware}) if main else contextlib.nullcontext(tracking.Run()))
    with tracked as run:
        run.log_split(split_path, data.metadata, len(data), "training", train_faces=len(train_idx), val_faces=len(val_idx))
        for epoch in range(ts.epoch, cfg.epochs):
            ts.epoch = epoch
            ts.begin_epoch(reset=ts.step == 0)
            model.train()
            ran, t0, shown = 0, time.perf_counter(), time.perf_counter()
            bar = tqdm(total=steps_per_epoch, initial=ts.step, desc=f"{model_name} epoch {epoch + 1}/{cfg.epochs}",
                       leave=False, dynamic_ncols=True, mininterval=2, disable=not main)
            while ts.step < steps_per_epoch:
                batch = batcher.batch(epoch, ts.step)
                losses = loss_fn(batch)
                optimizer.zero_grad(set_to_none=True)
                losses["total"].backward()
                optimizer.step()
                if extra.disc is not None:
                    losses["discriminator"] = extra.discriminator_step(losses["sr_output"], batch["hr"])
                ts.accumulate(losses)
                ran += 1
                steps_done_here += 1
                stop = stop_after_steps is not None and steps_done_here >= stop_after_steps
                checkpoint = (rt.checkpoint_every and ts.step % rt.checkpoint_every == 0
                              and ts.step < steps_per_epoch)
                # Host reads only here: before any checkpoint, every check_every steps, or every few seconds
                # (not under torchrun: every rank must check at the same steps, and their clocks differ).
                timed = world == 1 and time.perf_counter() - shown > 5
                if stop or checkpoint or ts.step - ts.checked >= cfg.check_every or timed:
                    means = check_finite(epoch)
                    shown = time.perf_counter()
                    bar.set_postfix(loss=f"{means['total']:.4f}", img_s=f"{ran * cfg.batch_size / (shown - t0):.1f}")
                    bar.update(ts.step - bar.n)
                if stop:
                    save_resume_state()
                    return {"stopped_early": True}
                if checkpoint:
                    save_resume_state()
            means = check_finite(epoch)
            bar.close()
            lr_used = optimizer.param_groups[0]["lr"]  # the epoch's rate, read before the schedule moves on
            if not closed_form:  # a closed-form model takes no optimizer step; its schedule has nothing to move
                scheduler.step()
                extra.epoch_done()
            elapsed = time.perf_counter() - t0
            metrics = distributed.from_main(lambda: validation_metrics(model, val, dev, rt.eval_batch_size))
            row = {"epoch": epoch + 1, "lr": lr_used,
                   **{f"loss_{k}": v for k, v in means.items()},
                   "img_per_s": ran * cfg.batch_size / elapsed if elapsed > 0 else float("nan"), **metrics}
            history, best = ts.history, ts.best
            history.append(row)
            score = sign * metrics[metric_key]
            if best is None or score > best["score"]:
                ts.best = best = {"score": score, "epoch": epoch + 1, "metrics": metrics}
                if main:
                    save_checkpoint(best_path, best_payload(epoch + 1, metrics))
            ts.epoch, ts.step = epoch + 1, 0
            save_resume_state()
            run.log_metrics({k: v for k, v in row.items() if k != "epoch" and math.isfinite(v)}, step=epoch + 1)
            log.info("%s epoch %d/%d: %s", model_name, epoch + 1, cfg.epochs,
                     ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))

        history, best = ts.history, ts.best
        if best is None:
            raise ConfigError(f"{model_name}: train.epochs={cfg.epochs} trains nothing")
        if main and not best_path.exists():
            raise JasrbenchError(f"{best_path} is missing although training finished; rerun without --resume")
        throughput = [r["img_per_s"] for r in history if math.isfinite(r.get("img_per_s", float("nan")))]
        summary = {
            "model": model_name, "arch": entry["arch"], "dataset": dataset, "profile": params["profile"],
            "params": n_params, "epochs": cfg.epochs, "steps_per_epoch": steps_per_epoch,
            "train_faces": len(train_idx), "val_faces": len(val_idx), "best_epoch": best["epoch"],
            "selected_by": metric_key, **{f"best_{k}": v for k, v in best["metrics"].items()},
            "final_loss": history[-1]["loss_total"],
            "img_per_s": float(np.median(throughput)) if throughput else None,
            **hardware, "config_hash": chash, "fingerprint": fingerprint["id"],
        }
        if main:
            results_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(results_dir / "history.csv") as tmp:
                pd.DataFrame(history).to_csv(tmp, index=False, float_format="%.6g")
            atomic_write_json(results_dir / "train.json", {k: v for k, v in summary.items() if v is not None})
            _write_samples(model_name, best_path, val, dev, results_dir / "samples.png")
            run.log_metrics({k: v for k, v in summary.items() if k.startswith("best_")})
            run.tag_checkpoint(best_path)
            for name in ("history.csv", "train.json", "samples.png"):
                run.log_artifact(results_dir / name)
            retire_resume_state(last_path)
        distributed.barrier()  # the other ranks wait until rank 0 has written the results
        log.info("%s: best epoch %d (%s), %.1f s", model_name, best["epoch"], metric_key, time.perf_counter() - t_start)
    return summary


def _write_samples(model_name: str, best_path: Path, val: PreparedSplit, dev: torch.device, path: Path) -> None:
    """LR / SR / HR of four validation faces with landmarks, from the kept checkpoint."""
    from .report.figures import sample_grid

    model, _ = model_from_checkpoint(best_path, dev)
    faces = val.subset(np.arange(min(4, len(val))))
    scores = score_split(model, faces, dev, len(faces), keep_sr=True)
    sample_grid(faces.lr_at(model.scale), scores.sr, faces.hr, faces.landmarks, scores.landmarks, path,
                title=model_name)


# --- CLI -----------------------------------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model of the profile's `models` (e.g. jasrnet, jasrnet_bl_sr)")
    parser.add_argument("--dataset", required=True, help="prepared dataset to train on (e.g. 300w)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--profile", help="read pipelines/PROFILE.yaml (default: the active params.yaml)")
    src.add_argument("--params", default=None, help="a params file (default: params.yaml)")
    parser.add_argument("--out", required=True, help="checkpoint folder (model.pt, last.pt)")
    parser.add_argument("--results", help="folder for history.csv, train.json, samples.png (default: --out)")
    parser.add_argument("--prepared", help="prepared-data root (default: the profile's data.prepared)")
    parser.add_argument("--resume", dest="resume", action="store_true", default=True,
                        help="continue an unfinished run from OUT/last.pt when config, data and code match (default)")
    parser.add_argument("--no-resume", dest="resume", action="store_false", help="start afresh")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, or auto (default: $JASRBENCH_DEVICE, else auto)")
    parser.add_argument("--stop-after-steps", type=int, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    params = cfgmod.load_profile(args.profile) if args.profile else cfgmod.load_params(args.params)
    try:
        summary = train(args.model, args.dataset, params, args.out, args.results, prepared=args.prepared,
                        resume=args.resume, device=args.device, stop_after_steps=args.stop_after_steps)
        if distributed.is_main():
            print(json.dumps(summary, indent=2, default=str))
    finally:
        distributed.shutdown()
    return 0
