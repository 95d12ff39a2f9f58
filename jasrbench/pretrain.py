"""``jasrbench pretrain``: a joint model's landmark network trained alone on HR faces, before joint training.

Super-FAN (Bulat & Tzimiropoulos, CVPR 2018) starts its joint SR + FAN training from a FAN first
trained on high-resolution faces. A model opts in with ``pretrain_part`` (the attribute naming its
landmark network, ``"fan"``) and a profile asks for it per model::

    models:
      superfan:
        pretrain: {epochs: 2}        # optional: lr (default train.lr)

Its ``runs.pretrain`` entry (``jasrbench profile runs`` writes it) becomes the DVC stage
``pretrain@<model>_<part>-<dataset>``, whose output the model's training stage loads
(:meth:`load_pretrained`) before its first step.

Same training faces, validation carve (same seed: the pretraining never sees the validation faces) and
augmentation as ``train``, but on the **HR** face; the model's own heatmap loss; the profile's Adam at
a constant lr; the kept epoch has the lowest validation NME on HR faces. Outputs: ``--out``:
``<part>.pt`` (loaded with ``weights_only=True``); ``--results``: ``history.csv``, ``pretrain.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import params as paramsfile
from . import runtime
from . import step as stepmod
from .batcher import Batcher
from .data import degrade
from .errors import ConfigError
from .files import atomic_path, atomic_write_json
from .models import FaceModel, ModelOutput
from .pretrained_weights import PRETRAINED_FORMAT, PRETRAINED_VERSION, settings
from .train_state import TrainState
from .training_setup import setup

log = logging.getLogger(__name__)
def _network(model: FaceModel, model_name: str) -> tuple[str, torch.nn.Module]:
    part = getattr(model, "pretrain_part", None)
    if not part:
        raise ConfigError(f"models.{model_name}.pretrain: {type(model).__name__} has no landmark network to "
                          "pretrain (no `pretrain_part`)")
    return part, getattr(model, part)


@torch.no_grad()
def hr_nme(model: FaceModel, network: torch.nn.Module, val, dev: torch.device, batch_size: int = 32) -> float:
    """Mean NME (×100) of the landmark network on the validation faces' HR images."""
    from .metrics import landmarks as lm

    network.eval()
    hr = degrade.to_tensor(val.hr)
    points = []
    for i in range(0, len(hr), batch_size):
        x = hr[i : i + batch_size].to(dev)
        out = network(x)
        maps = out if isinstance(out, list) else [out]
        points.append(model.decode_landmarks(ModelOutput(sr=x, heatmaps=maps)).float().cpu())
    pred = torch.cat(points).numpy()
    nme = lm.nme(pred, val.landmarks, val.visible, normalizer=lm.default_normalizer(val.num_points), boxes=val.boxes)
    return float(np.mean(nme))


def pretrain(model_name: str, dataset: str, params: dict[str, Any], out_dir: str | Path,
             results_dir: str | Path | None = None, *, prepared: str | Path | None = None,
             device: str | None = None) -> dict[str, Any]:
    """Pretrain ``model_name``'s landmark network on ``dataset``'s HR training faces; returns ``pretrain.json``."""
    pre = settings(params, model_name)
    if pre is None:
        raise ConfigError(f"models.{model_name} has no `pretrain` entry in profile {params['profile']!r}")
    # The same setup as train: settings, device, data, the protocol check and the validation carve.
    s = setup(model_name, dataset, params, prepared=prepared, device=device)
    cfg, dev, precision = s.cfg, s.dev, s.precision
    runtime.configure_backends(dev)
    out_dir, results_dir = Path(out_dir), Path(results_dir or out_dir)
    train_idx, val_idx, val = s.train_idx, s.val_idx, s.val
    entry, data = s.entry, s.data

    model = s.build_model().to(dev)
    part, network = _network(model, model_name)
    network.to(memory_format=runtime.memory_format(dev, precision))
    lr = float(pre.get("lr", cfg.lr))
    # train's fast step: fused Adam on CUDA, channels_last and autocast where they are fast, loss sums on the
    # device read only every check_every steps (TrainState), not two host syncs per step.
    optimizer = stepmod.make_optimizer(network, lr, cfg.betas, cfg.weight_decay, dev)
    sums = TrainState(network, optimizer, None, None, ["total"], dev)
    batcher = Batcher(data, train_idx, cfg.augment, s.mirror, dev, seed=s.seed, batch_size=cfg.batch_size,
                      copies_per_epoch=cfg.copies_per_epoch)
    steps = batcher.steps_per_epoch()
    layout = runtime.memory_format(dev, precision)

    def check(epoch: int) -> float:
        first_bad, value, means = sums.check()
        if first_bad is not None:
            raise ConfigError(f"pretrain {model_name}: loss became {value} at epoch {epoch + 1}, "
                              f"step {first_bad + 1}; lower models.{model_name}.pretrain.lr")
        return means["total"]

    history, best, best_state = [], None, None
    start = time.perf_counter()
    for epoch in range(int(pre["epochs"])):
        network.train()
        sums.step = 0
        sums.begin_epoch(reset=True)
        t0 = time.perf_counter()
        for step in range(steps):
            batch = batcher.batch(epoch, step)
            with runtime.autocast(dev, precision):
                out = network(batch["hr"].contiguous(memory_format=layout))
            stages = [o.float() for o in (out if isinstance(out, list) else [out])]
            target, mask = model.heatmap_targets(batch)
            loss = model.heatmap_loss_value(stages, target, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums.accumulate({"total": loss})
            if sums.step - sums.checked >= cfg.check_every:
                check(epoch)
        mean_loss = check(epoch)
        nme = hr_nme(model, network, val, dev, s.rt.eval_batch_size)
        history.append({"epoch": epoch + 1, "loss_heatmap": mean_loss, "val_nme_hr": nme,
                        "img_per_s": steps * cfg.batch_size / max(time.perf_counter() - t0, 1e-9)})
        log.info("pretrain %s.%s epoch %d: loss %.4g, HR val NME %.2f", model_name, part, epoch + 1, mean_loss, nme)
        if best is None or nme < best["val_nme_hr"]:
            best = history[-1]
            best_state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}

    payload = {"format": PRETRAINED_FORMAT, "version": PRETRAINED_VERSION, "model": model_name,
               "arch": entry["arch"], "part": part, "overrides": entry["overrides"], "num_points": data.num_points,
               "dataset": dataset, "profile": params["profile"], "epoch": best["epoch"],
               "val_nme_hr": best["val_nme_hr"], "state_dict": best_state}
    with atomic_path(out_dir / f"{part}.pt", suffix=".pt") as tmp:
        torch.save(payload, tmp)
    summary = {"model": model_name, "part": part, "dataset": dataset, "profile": params["profile"],
               "epochs": int(pre["epochs"]), "steps_per_epoch": steps, "lr": lr, "train_faces": len(train_idx),
               "val_faces": len(val_idx), "best_epoch": best["epoch"], "best_val_nme_hr": best["val_nme_hr"],
               "seconds": time.perf_counter() - start, **runtime.describe(dev, precision, False)}
    results_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(results_dir / "history.csv", suffix=".csv") as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False, float_format="%.6g")
    atomic_write_json(results_dir / "pretrain.json", summary)
    return summary


# --- CLI -----------------------------------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model of the profile's `models` with a `pretrain` entry (e.g. superfan)")
    parser.add_argument("--dataset", required=True, help="prepared dataset to pretrain on (e.g. 300w)")
    parser.add_argument("--params", default=None, help="a params file (default: params.yaml)")
    parser.add_argument("--out", required=True, help="folder of the pretrained weights (<part>.pt)")
    parser.add_argument("--results", help="folder for history.csv and pretrain.json (default: --out)")
    parser.add_argument("--prepared", help="prepared-data root (default: the profile's data.prepared)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: $JASRBENCH_DEVICE, else auto)")


def run(args: argparse.Namespace) -> int:
    params = paramsfile.load_params(args.params)
    summary = pretrain(args.model, args.dataset, params, args.out, args.results, prepared=args.prepared,
                       device=args.device)
    print(json.dumps(summary, indent=2, default=str))
    return 0
