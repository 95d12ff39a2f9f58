"""``jasrbench train``: one training loop for every model (DESIGN §2–§3, issue 5).

Data: the prepared training split's context crops, sliced and split into
train/validation by the profile (``train.max_faces``, ``train.val_faces``; the
validation faces are carved from the *training* data — the authors picked their
best epoch on the test set, we do not). Each step draws a batch, augments it on
the device (:mod:`jasrbench.data.augment`) and makes the LR from the augmented
HR in torch. An epoch is ``copies_per_epoch`` passes over the training faces
(the paper's 15 offline copies).

Optimizer and schedule as the paper (``paper`` profile): Adam (lr 5e-5,
β 0.9/0.999, weight decay 5e-4), ×0.5 at epochs 20 and 30, 40 epochs, batch 8.
channels_last everywhere, bf16 autocast on CUDA.

Reproducibility: every random draw (data order, augmentation) comes from a
generator seeded by (seed, epoch, step), and the model is initialized from the
seed, so a run resumed from its last checkpoint (``last.pt``: model,
optimizer, scheduler, RNG states, position) ends exactly where an
uninterrupted run ends (on the CPU). Checkpoints are written atomically at
every epoch (and every ``checkpoint_every`` steps if set). A NaN/inf loss
stops the run with a clear message; the last good checkpoint is kept.

Outputs (``--out``): ``model.pt`` (the best epoch on validation: weights and
how to build the model; loaded with ``weights_only=True``), ``last.pt``
(resume state, while the run is unfinished: it carries the run's fingerprint —
config, prepared split, source of every module the run imports — and is
resumed only when all three match; a finished run removes it). ``--results``: ``history.csv`` (per-epoch losses and
validation metrics, a DVC plot), ``train.json`` (final numbers, DVC metrics),
``samples.png`` (validation LR/SR/HR with landmarks).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from . import config as cfgmod
from . import deps, tracking
from .data import degrade, protocols
from .data.augment import AugmentConfig, augment_batch, rotation_bound
from .data.split import PreparedSplit, load_split
from .errors import ConfigError, DataError, JasrbenchError
from .io import atomic_path, atomic_write_json
from .models import FaceModel, build

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "jasrbench-checkpoint"
CHECKPOINT_VERSION = 1


class TrainingDiverged(JasrbenchError):
    """The loss became NaN or infinite."""


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
    checkpoint_every: int
    eval_batch_size: int
    device: str
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
        d.setdefault("checkpoint_every", 0)
        d.setdefault("eval_batch_size", 32)
        d.setdefault("device", "auto")
        d.setdefault("max_faces", None)
        try:
            # YAML 1.1 reads "1e-3" (no dot) as a string: coerce the numbers explicitly.
            for key in ("adversarial_weight", "perceptual_weight"):
                d[key] = float(d.get(key, 0.0))
            d["discriminator_width"] = int(d.get("discriminator_width", 64))
            for key in ("lr", "weight_decay", "gamma", "copies_per_epoch"):
                d[key] = float(d[key])
            for key in ("epochs", "batch_size", "val_faces", "checkpoint_every", "eval_batch_size"):
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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of integers (seed, epoch, step, …)."""
    digest = hashlib.sha256(json.dumps(list(keys)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


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


# --- checkpoints --------------------------------------------------------------------------------
def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    # The default temporary suffix (.tmp) is covered by .gitignore and .dvcignore: a kill mid-write
    # leaves nothing DVC would cache in the stage's output folder.
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/foreign files
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(path, f"not a loadable checkpoint, truncated or not written by torch ({reason})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DataError(path, "not a jasrbench checkpoint")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise DataError(path, f"checkpoint version {ckpt.get('version')}, this code reads {CHECKPOINT_VERSION}")
    return ckpt


def model_from_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[FaceModel, dict[str, Any]]:
    """Rebuild a trained model from ``model.pt``."""
    ckpt = load_checkpoint(path)
    if "state_dict" not in ckpt or "arch" not in ckpt:
        raise DataError(path, "is a resume state (last.pt), not a trained model (model.pt)")
    model = build(ckpt["arch"], **ckpt["overrides"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:  # torch lists every mismatching tensor over many lines
        raise DataError(path, f"its weights do not fit model {ckpt['arch']!r} "
                              f"({str(exc).strip().splitlines()[0][:200]})") from exc
    model.name = ckpt["model"]
    model.set_protocol(ckpt.get("protocol", "clean"))  # checkpoints from before protocols: clean
    return model.to(device).eval(), ckpt


# --- evaluation on the validation faces ------------------------------------------------------------
@torch.no_grad()
def predict(model: FaceModel, lr: torch.Tensor, device: torch.device, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``model`` over an LR stack in batches → (SR in [0,1] on CPU, landmarks or None)."""
    model.eval()
    srs, pts = [], []
    for i in range(0, len(lr), batch_size):
        x = lr[i : i + batch_size].to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(x)
        srs.append(degrade.quantize(out.sr.float()).cpu())
        p = model.decode_landmarks(out)
        if p is not None:
            pts.append(p.float().cpu())
    return torch.cat(srs), (torch.cat(pts) if pts else None)


def validation_metrics(model: FaceModel, val: PreparedSplit, device: torch.device, batch_size: int) -> dict[str, float]:
    from .metrics import image_quality, landmarks as lm_metrics

    lr = degrade.to_tensor(val.lr)
    hr = degrade.to_tensor(val.hr)
    sr, pts = predict(model, lr, device, batch_size)
    boxes = torch.from_numpy(val.boxes)
    out: dict[str, float] = {}
    if model.predicts_sr:
        q = image_quality.psnr_ssim(sr, hr, boxes)
        out["val_psnr"] = float(q["psnr"].mean())
        out["val_ssim"] = float(q["ssim"].mean())
    if pts is not None:
        nme = lm_metrics.nme(pts.numpy(), val.landmarks, val.visible, normalizer=lm_metrics.default_normalizer(val.num_points),
                             boxes=val.boxes)
        out["val_nme"] = float(np.mean(nme))
    return out


def selection_key(model: FaceModel, select: str) -> tuple[str, int]:
    """(metric, sign): the validation metric that picks the kept epoch; sign +1 = higher is better."""
    if select == "auto":
        select = "psnr" if model.predicts_sr else "nme"
    if select == "psnr":
        return "val_psnr", 1
    if select == "nme":
        return "val_nme", -1
    raise ConfigError(f"train.select must be auto, psnr or nme, got {select!r}")


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
            self.disc = adversarial.Discriminator(cfg.discriminator_width).to(dev).to(memory_format=torch.channels_last)
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


# --- one step ---------------------------------------------------------------------------------------
def training_batch(data: PreparedSplit, idx: np.ndarray, augment: AugmentConfig, gen: torch.Generator,
                   mirror: torch.Tensor | None, dev: torch.device) -> dict[str, torch.Tensor]:
    """Faces ``idx`` of a training split → an augmented batch {lr, hr, landmarks, visible} on ``dev``."""
    context = degrade.to_tensor(data.context[idx]).to(dev)
    pts = torch.from_numpy(data.landmarks[idx] + data.context_offset)
    vis = torch.from_numpy(data.visible[idx])
    hr, pts, vis = augment_batch(context, pts, vis, augment, gen, mirror)
    # The LR is made as the split's stored LR was (its protocol's kernel), so on-the-fly equals prepared.
    return {"lr": degrade.make_lr(hr, protocol=data.protocol), "hr": hr, "landmarks": pts, "visible": vis}


def forward_loss(model: FaceModel, batch: dict[str, torch.Tensor], dev: torch.device,
                 extra: ExtraTerms | None = None) -> dict[str, torch.Tensor]:
    """The model's losses on a batch: channels_last input, bf16 autocast on CUDA (loss in fp32).

    With ``extra`` active, the perceptual/adversarial terms are added and the SR
    output is returned under ``"sr_output"`` for the discriminator step.
    """
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        out = model(batch["lr"].contiguous(memory_format=torch.channels_last))
    losses = model.loss(out, batch)
    if extra is not None and extra.active:
        losses = extra.add(losses, out.sr.float(), batch["hr"])
        losses["sr_output"] = out.sr.float()
    return losses


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
    dev = resolve_device(device or cfg.device)
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
    model = model.to(dev).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.milestones, gamma=cfg.gamma)
    extra = ExtraTerms(cfg, model, dev)
    n_params = sum(p.numel() for p in model.parameters())

    run_config = {
        "model": model_name, "arch": entry["arch"], "overrides": entry["overrides"], "dataset": dataset,
        "profile": params["profile"], "seed": seed, "train": train_dict, "protocol": data.protocol,
        "split": str(split_path), "split_faces": len(data), "train_faces": len(train_idx), "val_faces": len(val_idx),
    }
    chash = config_hash(run_config)
    fingerprint = run_fingerprint(run_config, split_path, entry["arch"])
    steps_per_epoch = 0 if closed_form else max(1, math.ceil(len(train_idx) * cfg.copies_per_epoch / cfg.batch_size))
    metric_key, sign = selection_key(model, cfg.select)

    start_epoch, start_step, history, best, partial = 0, 0, [], None, None
    loss_keys = ["total", "sr", "heatmap"]
    if extra.perceptual is not None:
        loss_keys.append("perceptual")
    if extra.disc is not None:
        loss_keys += ["adversarial", "discriminator"]
    sums, seen = dict.fromkeys(loss_keys, 0.0), 0
    last_path, best_path = out_dir / "last.pt", out_dir / "model.pt"
    state = resume_decision(last_path, fingerprint, cfg.epochs, resume)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        extra.load_state_dict(state.get("extra"))
        torch.set_rng_state(state["rng_cpu"])
        if dev.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"])
        start_epoch, start_step = int(state["epoch"]), int(state["step"])
        history, best, partial = list(state["history"]), state["best"], state.get("partial")
        log.info("resuming %s in epoch %d after %d of its %d steps", model_name, start_epoch + 1, start_step,
                 steps_per_epoch)
    else:
        best_path.unlink(missing_ok=True)  # a fresh run never leaves another run's model.pt beside its own

    def resume_state(epoch: int, step: int) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config_hash": chash,
            "kind": "resume", "fingerprint": fingerprint, "finished": epoch >= cfg.epochs,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "rng_cpu": torch.get_rng_state(), "rng_cuda": torch.cuda.get_rng_state() if dev.type == "cuda" else None,
            "epoch": epoch, "step": step, "history": history, "best": best,
            "partial": {"sums": dict(sums), "seen": seen} if step else None,
            "extra": extra.state_dict(),
        }

    def best_payload(epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config_hash": chash,
            "kind": "model", "fingerprint": fingerprint["id"],
            "model": model_name, "arch": entry["arch"], "overrides": entry["overrides"],
            "num_points": model.num_points, "dataset": dataset, "profile": params["profile"], "protocol": model.protocol,
            "epoch": epoch, "val": metrics, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        }

    tags = {"stage": "train", "model": model_name, "arch": entry["arch"], "dataset": dataset,
            "profile": params["profile"], **tracking.table_tags(entry["tables"])}
    experiment = tracking.train_experiment(params["profile"])
    steps_done_here = 0
    t_start = time.perf_counter()
    with tracking.start_run(experiment, f"train {model_name} on {dataset}", tags,
                            {**run_config, "params": n_params, **tracking.arch_params(entry["arch"], entry["overrides"])}) as run:
        run.log_split(split_path, data.metadata, len(data), "training", train_faces=len(train_idx), val_faces=len(val_idx))
        for epoch in range(start_epoch, cfg.epochs):
            order = torch.cat([torch.randperm(len(train_idx), generator=generator(seed, epoch, c))
                               for c in range(math.ceil(cfg.copies_per_epoch))])
            model.train()
            sums = dict.fromkeys(loss_keys, 0.0)
            seen, ran, t0 = 0, 0, time.perf_counter()
            first = start_step if epoch == start_epoch else 0
            if first and partial:  # the loss sums of the steps done before the interruption
                sums, seen = dict(partial["sums"]), int(partial["seen"])
            bar = tqdm(range(first, steps_per_epoch), desc=f"{model_name} epoch {epoch + 1}/{cfg.epochs}",
                       leave=False, dynamic_ncols=True, mininterval=2)
            for step in bar:
                pick = order[(step * cfg.batch_size + torch.arange(cfg.batch_size)) % len(order)]
                batch = training_batch(data, train_idx[pick.numpy()], cfg.augment, generator(seed, epoch, step, 1),
                                       mirror_t, dev)
                losses = forward_loss(model, batch, dev, extra)
                total = losses["total"]
                if not torch.isfinite(total):
                    raise TrainingDiverged(
                        f"{model_name}: loss became {total.item()} at epoch {epoch + 1}, step {step + 1}; "
                        f"stopped. The last good checkpoint is kept in {last_path}"
                        + (f" (and the best in {best_path})" if best_path.exists() else "")
                        + ". Lower train.lr or check the data.")
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                if extra.disc is not None:
                    losses["discriminator"] = extra.discriminator_step(losses["sr_output"], batch["hr"])
                for k in sums:
                    sums[k] += losses[k].detach().item()
                seen += 1
                ran += 1
                steps_done_here += 1
                bar.set_postfix(loss=f"{total.detach().item():.4f}",
                                img_s=f"{ran * cfg.batch_size / (time.perf_counter() - t0):.1f}")
                if stop_after_steps is not None and steps_done_here >= stop_after_steps:
                    save_checkpoint(last_path, resume_state(epoch, step + 1))
                    return {"stopped_early": True}
                if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < steps_per_epoch:
                    save_checkpoint(last_path, resume_state(epoch, step + 1))
            bar.close()
            scheduler.step()
            extra.epoch_done()
            elapsed = time.perf_counter() - t0
            metrics = validation_metrics(model, val, dev, cfg.eval_batch_size)
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                   **{f"loss_{k}": v / max(seen, 1) for k, v in sums.items()},
                   "img_per_s": ran * cfg.batch_size / elapsed if elapsed > 0 else float("nan"), **metrics}
            history.append(row)
            score = sign * metrics[metric_key]
            if best is None or score > best["score"]:
                best = {"score": score, "epoch": epoch + 1, "metrics": metrics}
                save_checkpoint(best_path, best_payload(epoch + 1, metrics))
            save_checkpoint(last_path, resume_state(epoch + 1, 0))
            run.log_metrics({k: v for k, v in row.items() if k != "epoch" and math.isfinite(v)}, step=epoch + 1)
            log.info("%s epoch %d/%d: %s", model_name, epoch + 1, cfg.epochs,
                     ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))

        if best is None:
            raise ConfigError(f"{model_name}: train.epochs={cfg.epochs} trains nothing")
        if not best_path.exists():
            raise JasrbenchError(f"{best_path} is missing although training finished; rerun without --resume")
        throughput = [r["img_per_s"] for r in history if math.isfinite(r.get("img_per_s", float("nan")))]
        summary = {
            "model": model_name, "arch": entry["arch"], "dataset": dataset, "profile": params["profile"],
            "params": n_params, "epochs": cfg.epochs, "steps_per_epoch": steps_per_epoch,
            "train_faces": len(train_idx), "val_faces": len(val_idx), "best_epoch": best["epoch"],
            "selected_by": metric_key, **{f"best_{k}": v for k, v in best["metrics"].items()},
            "final_loss": history[-1]["loss_total"],
            "img_per_s": float(np.median(throughput)) if throughput else None,
            "device": dev.type, "config_hash": chash, "fingerprint": fingerprint["id"],
        }
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
        log.info("%s: best epoch %d (%s), %.1f s", model_name, best["epoch"], metric_key, time.perf_counter() - t_start)
    return summary


def _write_samples(model_name: str, best_path: Path, val: PreparedSplit, dev: torch.device, path: Path) -> None:
    """LR / SR / HR of four validation faces with landmarks, from the kept checkpoint."""
    from .report.figures import sample_grid

    model, _ = model_from_checkpoint(best_path, dev)
    k = min(4, len(val))
    sr, pts = predict(model, degrade.to_tensor(val.lr[:k]), dev, k)
    sample_grid(val.lr[:k], degrade.to_uint8(sr), val.hr[:k], val.landmarks[:k],
                None if pts is None else pts.numpy(), path, title=model_name)


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
    parser.add_argument("--device", help="cpu, cuda, cuda:1, or auto (default: the profile's train.device)")
    parser.add_argument("--stop-after-steps", type=int, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    params = cfgmod.load_profile(args.profile) if args.profile else cfgmod.load_params(args.params)
    summary = train(args.model, args.dataset, params, args.out, args.results, prepared=args.prepared,
                    resume=args.resume, device=args.device, stop_after_steps=args.stop_after_steps)
    print(json.dumps(summary, indent=2, default=str))
    return 0
