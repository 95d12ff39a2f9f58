"""``jasrbench train``: the one training loop of every model.

The pieces it puts together: settings, data and validation carve (:mod:`jasrbench.training_setup`),
batches made on the device (:mod:`jasrbench.batcher`), the compiled or eager loss step
(:mod:`jasrbench.step`), what survives a restart (:mod:`jasrbench.train_state`), the fingerprint that
decides a resume (:mod:`jasrbench.fingerprint`), the optional GAN terms (:mod:`jasrbench.extra_terms`),
device, precision and checkpoints (:mod:`jasrbench.runtime`), validation
(:func:`jasrbench.scoring.validation_metrics`) and DDP under torchrun (:mod:`jasrbench.distributed`).

Why it looks as it does:

- No host read inside a step: loss sums and the first non-finite loss live on the
  device (:class:`~jasrbench.train_state.TrainState`) and are checked every ``check_every`` steps,
  every few seconds, before each checkpoint and at validation; a NaN stops the run naming the
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

from . import distributed, runtime, tracking
from . import params as paramsfile
from . import pretrained_weights
from . import step as stepmod
from .data.augment import rotation_bound
from .data.split import PreparedSplit
from .batcher import Batcher
from .errors import ConfigError, JasrbenchError
from .extra_terms import ExtraTerms
from .files import atomic_path, atomic_write_json
from .fingerprint import config_hash, resume_decision, retire_resume_state, run_fingerprint
from .holdout import selection_key
from .runtime import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, model_from_checkpoint, save_checkpoint
from .scoring import score_split, validation_metrics
from .train_state import TrainState
from .training_setup import TrainingSetup, setup

log = logging.getLogger(__name__)


class TrainingDiverged(JasrbenchError):
    """The loss became NaN or infinite."""


class StoppedEarly(Exception):
    """``stop_after_steps`` reached (tests of resumption): the run ends KILLED in MLflow, not FINISHED."""


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

    ``stop_after_steps`` ends the process's work early (tests of resumption); its MLflow run ends KILLED.
    """
    s = setup(model_name, dataset, params, prepared=prepared, device=device)
    runtime.configure_backends(s.dev)
    if not rotation_bound(s.cfg.augment, s.data.context.shape[1] / s.data.hr.shape[1]):
        log.warning("augmentation can reach outside the context crop: some corners will be black")
    model = _trainable_model(s, params)
    job = _Run(s, params, model, Path(out_dir), Path(results_dir or out_dir), resume)
    with job.tracked() as run:
        run.log_split(s.split_path, s.data.metadata, len(s.data), "training", train_faces=len(s.train_idx),
                      val_faces=len(s.val_idx))
        try:
            for epoch in range(job.ts.epoch, s.cfg.epochs):
                job.run_epoch(epoch, run, stop_after_steps)
        except StoppedEarly:
            run.end("KILLED")  # an interrupted run is not a finished one
            return {"stopped_early": True}
        return job.finish(run)


def _trainable_model(s: TrainingSetup, params: dict[str, Any]):
    """The model on its device: fitted first if closed-form (the mean-shape floor), from its pretrained
    landmark network if the profile pretrains one (Super-FAN's FAN, ``jasrbench pretrain``)."""
    model = s.build_model()
    if not model.trainable:
        raise ConfigError(f"model {s.model_name!r} has no weights to train")
    # A closed-form model is fitted once on the un-augmented training faces; the loop then takes no
    # optimizer step and only validates and saves.
    if getattr(model, "closed_form", False):
        model.fit_training_faces(s.data.landmarks[s.train_idx], s.data.visible[s.train_idx])
    if pretrained_weights.settings(params, s.model_name) is not None:
        model.load_pretrained(pretrained_weights.pretrained_file(params["profile"], s.model_name, model.pretrain_part,
                                                                 s.dataset))
    return model.to(s.dev).to(memory_format=runtime.memory_format(s.dev, s.precision))


class _Run:
    """One training run's moving parts: optimizer, schedule, state, batches, loss step and its files."""

    def __init__(self, s: TrainingSetup, params: dict[str, Any], model, out_dir: Path, results_dir: Path,
                 resume: bool):
        cfg, dev = s.cfg, s.dev
        self.s, self.model, self.profile = s, model, params["profile"]
        self.main = distributed.is_main()
        self.net = distributed.wrap(model, dev)  # what forward passes call: DDP under torchrun, else the model
        self.optimizer = stepmod.make_optimizer(model, cfg.lr, cfg.betas, cfg.weight_decay, dev)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=cfg.milestones,
                                                              gamma=cfg.gamma)
        self.extra = ExtraTerms(cfg, model, dev)
        self.closed_form = bool(getattr(model, "closed_form", False))
        self.n_params = sum(p.numel() for p in model.parameters())
        self.val = s.val
        self.run_config = {
            "model": s.model_name, "arch": s.entry["arch"], "overrides": s.entry["overrides"], "dataset": s.dataset,
            "profile": self.profile, "seed": s.seed, "train": s.train_dict, "protocol": s.data.protocol,
            "precision": s.precision, "split": str(s.split_path), "split_faces": len(s.data),
            "train_faces": len(s.train_idx), "val_faces": len(s.val_idx),
        }
        self.chash = config_hash(self.run_config)
        self.fingerprint = run_fingerprint(self.run_config, s.split_path, s.entry["arch"])
        self.steps_per_epoch = 0 if self.closed_form else max(
            1, math.ceil(len(s.train_idx) * cfg.copies_per_epoch / cfg.batch_size))
        self.metric_key, self.sign = selection_key(model, cfg.select)
        loss_keys = ["total", "sr", "heatmap"]
        if self.extra.perceptual is not None:
            loss_keys.append("perceptual")
        if self.extra.disc is not None:
            loss_keys += ["adversarial", "discriminator"]
        self.ts = TrainState(model, self.optimizer, self.scheduler, self.extra, loss_keys, dev)
        self.last_path, self.best_path = out_dir / "last.pt", out_dir / "model.pt"
        self.results_dir = results_dir
        state = resume_decision(self.last_path, self.fingerprint, cfg.epochs, resume)
        distributed.barrier()  # every rank has read last.pt before rank 0 may replace it
        if state is not None:
            self.ts.load_state_dict(state)
            log.info("resuming %s in epoch %d after %d of its %d steps", s.model_name, self.ts.epoch + 1,
                     self.ts.step, self.steps_per_epoch)
        elif self.main:
            self.best_path.unlink(missing_ok=True)  # a fresh run never leaves another run's model.pt beside its own
        self.batcher = Batcher(s.data, s.train_idx, cfg.augment, s.mirror, dev, seed=s.seed,
                               batch_size=cfg.batch_size, copies_per_epoch=cfg.copies_per_epoch, scale=model.scale,
                               rank=distributed.rank(), world_size=s.world, degradation=cfg.degradation)
        decision = stepmod.compile_decision(s.rt.compile, dev.type, world=s.world,
                                            sync_batchnorm=stepmod.has_sync_batchnorm(self.net),
                                            eager_terms=self.extra.active, closed_form=self.closed_form)
        log.info("torch.compile: %s", decision.reason)
        self.loss_fn = stepmod.loss_function(model, dev, s.precision, decision.compile, forward=self.net,
                                             extra=self.extra)
        self.hardware = runtime.describe(dev, s.precision, decision.compile)
        if decision.compile or "SyncBatchNorm" in decision.reason:
            self.hardware["compile_reason"] = decision.reason
        if s.world > 1:
            self.hardware["processes"] = s.world
        if dev.type == "cpu":
            self.hardware["fixed_order_grads"] = bool(s.rt.fixed_order_grads and not decision.compile)
        self.steps_done_here, self.t_start = 0, time.perf_counter()

    def tracked(self):
        """The MLflow run (rank 0 only; the others get an inactive one)."""
        s = self.s
        if not self.main:
            return contextlib.nullcontext(tracking.Run())
        tags = {"stage": "train", "model": s.model_name, "arch": s.entry["arch"], "dataset": s.dataset,
                "profile": self.profile, "device": s.dev.type, "precision": s.precision,
                **tracking.table_tags(s.entry["tables"])}
        return tracking.start_run(tracking.train_experiment(self.profile), f"train {s.model_name} on {s.dataset}",
                                  tags, {**self.run_config, "params": self.n_params,
                                         **tracking.arch_params(s.entry["arch"], s.entry["overrides"]),
                                         "runtime": self.hardware})

    def save_resume_state(self) -> None:
        """last.pt (by rank 0), written only after the finiteness check passed (so it is always a good state)."""
        if self.main:
            save_checkpoint(self.last_path, {
                "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config_hash": self.chash,
                "kind": "resume", "fingerprint": self.fingerprint, "finished": self.ts.epoch >= self.s.cfg.epochs,
                **self.ts.state_dict(),
            })

    def check_finite(self, epoch: int) -> dict[str, float]:
        """Read the device-side sums; stop on the first non-finite loss, naming it and the steps checked."""
        first_bad, value, means = self.ts.check()
        if first_bad is not None:
            lo, hi = self.ts.checked_range
            raise TrainingDiverged(
                f"{self.s.model_name}: loss became {value} at epoch {epoch + 1}, step {first_bad + 1} "
                f"(found by the check of steps {lo}–{hi}); stopped. The last good checkpoint is kept in "
                f"{self.last_path}" + (f" (and the best in {self.best_path})" if self.best_path.exists() else "")
                + ". Lower train.lr or check the data.")
        return means

    def best_payload(self, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        s, model = self.s, self.model
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config_hash": self.chash,
            "kind": "model", "fingerprint": self.fingerprint["id"],
            "model": s.model_name, "arch": s.entry["arch"], "overrides": s.entry["overrides"],
            "num_points": model.num_points, "dataset": s.dataset, "profile": self.profile, "protocol": model.protocol,
            **({"degradation": s.cfg.degradation} if s.cfg.degradation else {}),
            "epoch": epoch, "val": metrics, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        }

    def run_epoch(self, epoch: int, run: tracking.Run, stop_after_steps: int | None) -> None:
        """The epoch's steps (host reads only at checks), then the schedule, validation and checkpoints."""
        s, cfg, ts, rt = self.s, self.s.cfg, self.ts, self.s.rt
        ts.epoch = epoch
        ts.begin_epoch(reset=ts.step == 0)
        self.model.train()
        ran, t0, shown = 0, time.perf_counter(), time.perf_counter()
        bar = tqdm(total=self.steps_per_epoch, initial=ts.step, desc=f"{s.model_name} epoch {epoch + 1}/{cfg.epochs}",
                   leave=False, dynamic_ncols=True, mininterval=2, disable=not self.main)
        while ts.step < self.steps_per_epoch:
            self.model.set_training_step(epoch * self.steps_per_epoch + ts.step)
            batch = self.batcher.batch(epoch, ts.step)
            losses = self.loss_fn(batch)
            self.optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            self.optimizer.step()
            if self.extra.disc is not None:
                losses["discriminator"] = self.extra.discriminator_step(losses["sr_output"], batch["hr"])
            ts.accumulate(losses)
            ran += 1
            self.steps_done_here += 1
            stop = stop_after_steps is not None and self.steps_done_here >= stop_after_steps
            checkpoint = rt.checkpoint_every and ts.step % rt.checkpoint_every == 0 and ts.step < self.steps_per_epoch
            # Host reads only here: before any checkpoint, every check_every steps, or every few seconds
            # (not under torchrun: every rank must check at the same steps, and their clocks differ).
            timed = s.world == 1 and time.perf_counter() - shown > 5
            if stop or checkpoint or ts.step - ts.checked >= cfg.check_every or timed:
                means = self.check_finite(epoch)
                shown = time.perf_counter()
                bar.set_postfix(loss=f"{means['total']:.4f}", img_s=f"{ran * cfg.batch_size / (shown - t0):.1f}")
                bar.update(ts.step - bar.n)
            if stop or checkpoint:
                self.save_resume_state()
            if stop:
                raise StoppedEarly
        means = self.check_finite(epoch)
        bar.close()
        lr_used = self.optimizer.param_groups[0]["lr"]  # the epoch's rate, read before the schedule moves on
        if not self.closed_form:  # a closed-form model takes no optimizer step; its schedule has nothing to move
            self.scheduler.step()
            self.extra.epoch_done()
        elapsed = time.perf_counter() - t0
        metrics = distributed.from_main(lambda: validation_metrics(self.model, self.val, s.dev, rt.eval_batch_size))
        row = {"epoch": epoch + 1, "lr": lr_used, **{f"loss_{k}": v for k, v in means.items()},
               "img_per_s": ran * cfg.batch_size / elapsed if elapsed > 0 else float("nan"), **metrics}
        ts.history.append(row)
        score = self.sign * metrics[self.metric_key]
        if ts.best is None or score > ts.best["score"]:
            ts.best = {"score": score, "epoch": epoch + 1, "metrics": metrics}
            if self.main:
                save_checkpoint(self.best_path, self.best_payload(epoch + 1, metrics))
        ts.epoch, ts.step = epoch + 1, 0
        self.save_resume_state()
        run.log_metrics({k: v for k, v in row.items() if k != "epoch" and math.isfinite(v)}, step=epoch + 1)
        log.info("%s epoch %d/%d: %s", s.model_name, epoch + 1, cfg.epochs,
                 ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))

    def finish(self, run: tracking.Run) -> dict[str, Any]:
        """train.json, history.csv, samples.png and the MLflow artifacts; the resume state retired."""
        s, cfg, history, best = self.s, self.s.cfg, self.ts.history, self.ts.best
        if best is None:
            raise ConfigError(f"{s.model_name}: train.epochs={cfg.epochs} trains nothing")
        if self.main and not self.best_path.exists():
            raise JasrbenchError(f"{self.best_path} is missing although training finished; rerun without --resume")
        if isinstance(self.loss_fn, stepmod.CompiledLoss):
            self.hardware["compile"] = self.loss_fn.status  # "compiled" or "failed → eager (reason)"
        throughput = [r["img_per_s"] for r in history if math.isfinite(r.get("img_per_s", float("nan")))]
        summary = {
            "model": s.model_name, "arch": s.entry["arch"], "dataset": s.dataset, "profile": self.profile,
            "params": self.n_params, "epochs": cfg.epochs, "steps_per_epoch": self.steps_per_epoch,
            "train_faces": len(s.train_idx), "val_faces": len(s.val_idx), "best_epoch": best["epoch"],
            "selected_by": self.metric_key, **{f"best_{k}": v for k, v in best["metrics"].items()},
            "final_loss": history[-1]["loss_total"],
            "img_per_s": float(np.median(throughput)) if throughput else None,
            **self.hardware, "config_hash": self.chash, "fingerprint": self.fingerprint["id"],
            "plugin": tracking.plugin_record(s.entry["arch"]),  # a plugin model's distribution and version
        }
        if self.main:
            out = self.results_dir
            out.mkdir(parents=True, exist_ok=True)
            with atomic_path(out / "history.csv") as tmp:
                pd.DataFrame(history).to_csv(tmp, index=False, float_format="%.6g")
            atomic_write_json(out / "train.json", {k: v for k, v in summary.items() if v is not None})
            _write_samples(s.model_name, self.best_path, self.val, s.dev, out / "samples.png")
            run.log_metrics({k: v for k, v in summary.items() if k.startswith("best_")})
            run.tag_checkpoint(self.best_path)
            for name in ("history.csv", "train.json", "samples.png"):
                run.log_artifact(out / name)
            retire_resume_state(self.last_path)
        distributed.barrier()  # the other ranks wait until rank 0 has written the results
        log.info("%s: best epoch %d (%s), %.1f s", s.model_name, best["epoch"], self.metric_key,
                 time.perf_counter() - self.t_start)
        return summary


def _write_samples(model_name: str, best_path: Path, val: PreparedSplit, dev: torch.device, path: Path) -> None:
    """LR / SR / HR of four validation faces with landmarks, from the kept checkpoint."""
    from .plotting import sample_grid

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
    params = paramsfile.load_profile(args.profile) if args.profile else paramsfile.load_params(args.params)
    try:
        summary = train(args.model, args.dataset, params, args.out, args.results, prepared=args.prepared,
                        resume=args.resume, device=args.device, stop_after_steps=args.stop_after_steps)
        if distributed.is_main():
            print(json.dumps(summary, indent=2, default=str))
    finally:
        distributed.shutdown()
    return 0
