"""JASRNet fidelity: the suite's JASRNet run side by side with the authors' released code (issue 24).

The authors' code (github.com/YuYin1/JASRNet) is never copied into the project: clone it anywhere and
pass ``--authors-src`` (the clone or its ``src/``). This script imports it from there, applies the few
run-time patches a current torch needs and the import-level shims for APIs removed since 2019 (both
listed in the output), and compares, in fp32 on the CPU:

1. **Weights**: their ``make_model`` (their defaults from their ``option.py``, their ``weights_init_cpm``)
   and our ``build("jasrnet")``; their fresh weights are copied into ours by an explicit name map
   (:func:`name_map`; an unmapped or mis-shaped tensor on either side is an error naming it). Our own
   fresh mean shifts are compared with theirs before the copy.
2. **One real batch** from the prepared 300W training split (stored faces, no augmentation): SR and every
   stage's heatmaps (both models fed our bicubic input), the loss as their trainer computes it (their
   ``loss.Loss``: ``1*CPM+1*L1``) against ``model.loss``, the gradients, and one step of their optimizer
   (their ``utility.make_optimizer``, schedule stepped once as their trainer does before epoch 1) against
   Adam with our settings (``pipelines/paper.yaml``). Relative difference = max |ours − theirs| / max
   |theirs| per tensor (the worst tensor is named).
   Conventions that differ by design are run both ways: heatmap targets from 0-based points (ours) and
   from the 1-based ``.pts`` coordinates their code keeps (``heatmaps.encode(one_based=True)``), and the
   model input as ours (float bicubic) and as theirs (``cv2.resize`` of the uint8 LR, i.e. rounded to 8 bits).
3. **Data path**: one training face through their ``get_patch`` + ``augment`` + ``apply_bound`` +
   ``generate_label_map`` + ``resize_bi`` and through ours (:func:`jasrbench.data.augment.augment_batch`
   restricted to their transform, a horizontal flip; :func:`jasrbench.data.degrade.make_lr`;
   :func:`jasrbench.data.heatmaps.encode`), with the same random draw (their ``random.random()`` returns the
   uniform our generator draws for the flip), once with a flip and once without.
4. **Equal-budget training**: same initial weights, the same augmented batches (ours, fed to both), ``--steps``
   steps with their optimizer and schedule and ours; training loss per step and validation PSNR/NME (faces
   carved from the training split, never trained on) every ``--eval-every`` steps.

Writes ``results/fidelity/jasrnet.json`` and ``results/fidelity/jasrnet_curves.png`` (atomically).

Usage (one CPU thread, ~25 min at the defaults on one Xeon core)::

    git clone https://github.com/YuYin1/JASRNet /tmp/JASRNet
    .venv/bin/jasrbench prepare 300w --raw ../shared/datasets/300W --out /tmp/prepared/300w
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fidelity_jasrnet.py --authors-src /tmp/JASRNet \\
        --prepared /tmp/prepared/300w
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import platform
import random
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from jasrbench.data import degrade, heatmaps  # noqa: E402
from jasrbench.data.augment import AugmentConfig, augment_batch  # noqa: E402
from jasrbench.data.split import load_split  # noqa: E402
from jasrbench.files import atomic_write_json  # noqa: E402
from jasrbench.metrics import image_quality  # noqa: E402
from jasrbench.metrics import landmarks as lm_metrics  # noqa: E402
from jasrbench.models import build  # noqa: E402

GOAL_REL = 1e-5
# Their option.py's own flags, as given: the CPU instead of 2 GPUs (device only).
AUTHOR_ARGV = ["option.py", "--cpu", "--n_GPUs", "1"]


class UnmappedTensorError(RuntimeError):
    """A tensor of one model has no counterpart (or a different shape) in the other."""


# --------------------------------------------------------------------------------------------------
# The authors' code, imported from the user's clone
# --------------------------------------------------------------------------------------------------
class Authors:
    """Their modules (``option``, ``model.common``, ``model.jasr``, ``loss``, ``utility``, ``data.common``)."""

    def __init__(self, src: Path):
        src = Path(src)
        if (src / "src" / "model" / "jasr.py").exists():
            src = src / "src"
        for rel in ("model/jasr.py", "model/common.py", "loss/cpm.py", "loss/l1.py", "loss/__init__.py",
                    "utility.py", "option.py", "data/common.py", "trainer.py"):
            if not (src / rel).exists():
                raise FileNotFoundError(f"--authors-src: {src / rel} not found (a clone of github.com/YuYin1/JASRNet?)")
        self.src = src
        self.patches: list[str] = []
        self.shims: list[str] = []
        self.commit = _git_head(src.parent)
        sys.path.insert(0, str(src))

        # Shim: register their `data` package without running data/__init__.py, which imports their
        # dataloader.py (torch.utils.data.dataloader internals removed long ago: _DataLoaderIter, …).
        pkg = types.ModuleType("data")
        pkg.__path__ = [str(src / "data")]
        sys.modules["data"] = pkg
        self.shims.append("package `data` registered with its path only: data/__init__.py (imports dataloader.py, "
                          "written against torch 0.4 DataLoader internals) is not executed; data/common.py is imported")
        # Shim: skimage.measure.compare_psnr/compare_ssim (removed in scikit-image 0.18/0.19), imported by
        # utility.py; aliased to their successors, never called here.
        import skimage.measure
        import skimage.metrics
        if not hasattr(skimage.measure, "compare_psnr"):
            skimage.measure.compare_psnr = skimage.metrics.peak_signal_noise_ratio
            skimage.measure.compare_ssim = skimage.metrics.structural_similarity
            self.shims.append("skimage.measure.compare_psnr/compare_ssim aliased to skimage.metrics."
                              "peak_signal_noise_ratio/structural_similarity (removed in scikit-image ≥ 0.19; "
                              "imported by utility.py, not called here)")

        argv = sys.argv
        sys.argv = list(AUTHOR_ARGV)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self.option = importlib.import_module("option")
        finally:
            sys.argv = argv
        self.args = self.option.args

        # Patch: their Upsampler calls conv(n_feats, 4 * n_feats, 3, bias) positionally, so `bias=True` lands in
        # `stride`; torch ≥ 1.x's conv2d rejects a bool stride. model.common.default_conv is replaced (before
        # model.jasr is imported, which binds it as JASR's default `conv`) by the same function with int(stride).
        self.common = importlib.import_module("model.common")
        original = self.common.default_conv

        def default_conv(in_channels, out_channels, kernel_size, stride=1, bias=True):
            return original(in_channels, out_channels, kernel_size, stride=int(stride), bias=bias)

        self.common.default_conv = default_conv
        self.patches.append("model/common.py default_conv: stride=int(stride) (Upsampler passes bias=True "
                            "positionally as stride; current torch's conv2d rejects a bool stride)")
        with contextlib.redirect_stdout(io.StringIO()):
            self.jasr = importlib.import_module("model.jasr")
            self.utility = importlib.import_module("utility")
            self.loss_pkg = importlib.import_module("loss")
            self.data_common = importlib.import_module("data.common")
        self.patches.append("loss masks given as torch.bool: their loader makes torch.ByteTensor masks, which "
                            "current torch's masked_select (loss/cpm.py) rejects (\"expected BoolTensor for mask\")")

    def make_model(self, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return self.jasr.make_model(self.args)

    def make_loss(self):
        with contextlib.redirect_stdout(io.StringIO()):
            loss = self.loss_pkg.Loss(self.args, None)
        loss.start_log()
        return loss

    def make_optimizer(self, model: torch.nn.Module):
        with contextlib.redirect_stdout(io.StringIO()), _quiet():
            opt = self.utility.make_optimizer(self.args, model)
            opt.schedule()  # their Trainer.train() steps the schedule before each epoch's first batch
        return opt

    def settings(self) -> dict:
        a = self.args
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(a).items()
                if k in ("lr", "betas", "epsilon", "weight_decay", "decay", "gamma", "optimizer", "batch_size",
                         "epochs", "loss", "n_resblocks", "n_feats", "nParts", "scale", "rgb_range", "gclip",
                         "patch_size", "seed")}


@contextlib.contextmanager
def _quiet():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _git_head(path: Path) -> str | None:
    head = path / ".git" / "HEAD"
    if not head.exists():
        return None
    ref = head.read_text().strip()
    if ref.startswith("ref: "):
        f = path / ".git" / ref[5:]
        return f.read_text().strip() if f.exists() else None
    return ref


# --------------------------------------------------------------------------------------------------
# Weights: the explicit name map
# --------------------------------------------------------------------------------------------------
# Their module names → ours; every other name is the same on both sides (listed in DESIGN §3 terms).
RENAMES = (
    ("head.0.", "head."),                            # their head is Sequential(conv); ours is the conv
    ("encoder_a_downsample.0.", "down_a."),          # fusion's strided convs
    ("encoder_b1_downsample.0.", "down_b."),
    ("encoder_c1_downsample.0.", "down_c."),
    ("CPM_feature.", "cpm_feature."),
)
SAME_PREFIXES = ("sub_mean.", "add_mean.", "sub_mean_cpm.", "long_connection.", "encoder_a.", "encoder_b1.",
                 "encoder_c1.", "encoder_c2.", "features.", "sr_feature.", "sr_tail.", "stages.")


def name_map(theirs: dict[str, torch.Tensor], ours: dict[str, torch.Tensor]) -> dict[str, str]:
    """Their state-dict name → ours, for every tensor of both; raises :class:`UnmappedTensorError` naming any
    tensor without a counterpart or with a different shape."""
    mapping: dict[str, str] = {}
    problems: list[str] = []
    for name, tensor in theirs.items():
        target = None
        for old, new in RENAMES:
            if name.startswith(old):
                target = new + name[len(old):]
        if target is None and name.startswith(SAME_PREFIXES):
            target = name
        if target is None:
            problems.append(f"theirs {name!r} {tuple(tensor.shape)}: no rule maps it")
        elif target not in ours:
            problems.append(f"theirs {name!r} → ours {target!r}: no such tensor in ours")
        elif tuple(ours[target].shape) != tuple(tensor.shape):
            problems.append(f"theirs {name!r} {tuple(tensor.shape)} → ours {target!r} {tuple(ours[target].shape)}: "
                            "shapes differ")
        else:
            mapping[name] = target
    hit = set(mapping.values())
    problems += [f"ours {n!r} {tuple(t.shape)}: no tensor of theirs maps to it" for n, t in ours.items() if n not in hit]
    if len(hit) != len(mapping):
        problems.append("two of their tensors map to the same tensor of ours")
    if problems:
        raise UnmappedTensorError("JASRNet name map: " + "; ".join(problems))
    return mapping


def copy_weights(theirs: torch.nn.Module, ours: torch.nn.Module) -> dict[str, str]:
    t_sd, o_sd = theirs.state_dict(), ours.state_dict()
    mapping = name_map(t_sd, o_sd)
    with torch.no_grad():
        for t_name, o_name in mapping.items():
            o_sd[o_name].copy_(t_sd[t_name])
    return mapping


# --------------------------------------------------------------------------------------------------
# Differences
# --------------------------------------------------------------------------------------------------
def diff(ours: torch.Tensor, theirs: torch.Tensor) -> dict:
    a, b = ours.detach().double(), theirs.detach().double()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: ours {tuple(a.shape)}, theirs {tuple(b.shape)}")
    d = float((a - b).abs().max()) if a.numel() else 0.0
    ref = float(b.abs().max()) if b.numel() else 0.0
    return {"max_abs": d, "max_abs_theirs": ref, "rel": d / ref if ref > 0 else (0.0 if d == 0 else float("inf"))}


def diff_many(pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """Over named tensor pairs: the worst relative difference (and its tensor), the largest absolute one."""
    rows = {k: diff(a, b) for k, (a, b) in pairs.items()}
    worst = max(rows, key=lambda k: rows[k]["rel"])
    biggest = max(rows, key=lambda k: rows[k]["max_abs"])
    return {"tensors": len(rows), "max_rel": rows[worst]["rel"], "max_rel_tensor": worst,
            "max_abs": rows[biggest]["max_abs"], "max_abs_tensor": biggest,
            "within_goal": all(r["rel"] <= GOAL_REL for r in rows.values())}


def scalar(x) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


# --------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------
def stored_batch(split, idx) -> dict[str, torch.Tensor]:
    idx = np.asarray(idx)
    return {"lr": degrade.to_tensor(split.lr[idx]), "hr": degrade.to_tensor(split.hr[idx]),
            "landmarks": torch.from_numpy(split.landmarks[idx]).float(),
            "visible": torch.from_numpy(split.visible[idx]).bool()}


def their_targets(auth: Authors, points: np.ndarray, visible: np.ndarray, size: int = 128, stride: int = 8):
    """Heatmaps B×69×16×16 and mask B×69 made by their srdata.__getitem__ path (apply_bound +
    generate_label_map) from their 3×K points (1-based x, y, visibility)."""
    maps, masks = [], []
    for p, v in zip(points, visible):
        pts = np.stack([p[:, 0], p[:, 1], v.astype(np.float32)]).astype(np.float32)
        pts = auth.data_common.apply_bound(pts, size, size)
        hm, mask = auth.data_common.generate_label_map(pts, size // stride, size // stride, 4.0, stride, "gaussian")
        maps.append(torch.from_numpy(hm.transpose(2, 0, 1)).float())
        masks.append(torch.from_numpy(mask.reshape(-1)).bool())
    return torch.stack(maps), torch.stack(masks)


def their_loss(auth: Authors, loss_mod, sr, hr, maps, target, mask) -> torch.Tensor:
    """Their trainer's line: ``self.loss(sr=sr, hr=hr, output=batch_heatmaps, target=heatmaps, mask=mask)``;
    the mask has their loader's shape B×(K+1)×1×1, as bool (the listed patch)."""
    return loss_mod(sr=sr, hr=hr, output=maps, target=target, mask=mask.bool().view(*mask.shape, 1, 1))


# --------------------------------------------------------------------------------------------------
# 1–2: weights, forward, loss, gradients, one step
# --------------------------------------------------------------------------------------------------
def our_optimizer(model, train: dict) -> torch.optim.Adam:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=float(train["lr"]), betas=tuple(train["betas"]),
                            weight_decay=float(train["weight_decay"]))


def one_batch_checks(auth: Authors, split, batch_idx, seed: int, train_cfg: dict) -> tuple[dict, dict]:
    out: dict = {"faces": [str(split.names[i]) for i in batch_idx]}
    theirs = auth.make_model(seed)
    ours = build("jasrnet")
    # Our fresh mean shifts against theirs (before the copy overwrites them).
    t_sd, o_sd = theirs.state_dict(), ours.state_dict()
    out["mean_shift_fresh"] = diff_many({n: (o_sd[n], t_sd[n]) for n in t_sd if n.split(".")[0] in
                                         ("sub_mean", "add_mean", "sub_mean_cpm")})
    mapping = copy_weights(theirs, ours)
    n_params = sum(p.numel() for p in ours.parameters())
    out["weights"] = {"tensors_mapped": len(mapping), "parameters_ours": n_params,
                      "parameters_theirs": sum(p.numel() for p in theirs.parameters()),
                      "renames": {a: b for a, b in RENAMES}}
    theirs.train(), ours.train()
    b = stored_batch(split, batch_idx)
    up = ours.upsample(b["lr"])

    # Forward, both on our input.
    t0 = time.perf_counter()
    sr_t, maps_t = theirs(up)
    t_fwd_t = time.perf_counter() - t0
    t0 = time.perf_counter()
    o = ours(b["lr"])
    t_fwd_o = time.perf_counter() - t0
    fwd = {"sr": (o.sr, sr_t)}
    fwd.update({f"heatmaps_stage{i + 1}": (a, c) for i, (a, c) in enumerate(zip(o.heatmaps, maps_t))})
    out["forward"] = diff_many(fwd)
    out["forward"]["per_output"] = {k: diff(*v) for k, v in fwd.items()}

    # Input convention: their model input is cv2.resize (INTER_CUBIC) of the uint8 LR, i.e. 8-bit.
    lr_u8 = degrade.to_uint8(b["lr"])
    up_theirs = torch.stack([torch.from_numpy(auth.data_common.resize_bi(im, 8).transpose(2, 0, 1).copy())
                             for im in lr_u8]).float().div(255)
    with torch.no_grad():
        sr_t8, maps_t8 = theirs(up_theirs)
    out["input_convention"] = {
        "note": "their input: cv2.resize(uint8 LR, INTER_CUBIC) → uint8 → /255 (8-bit); ours: the same cubic in "
                "float, not rounded (jasrbench.data.degrade.upsample)",
        "input_ours_vs_theirs": diff(up, up_theirs),
        "input_rounded_ours_vs_theirs": diff(degrade.quantize(up), up_theirs),
        "input_rounded_levels_differing": int((degrade.quantize(up) - up_theirs).abs().gt(0.5 / 255).sum()),
        "input_elements": int(up.numel()),
        "sr_on_own_inputs": diff(o.sr, sr_t8),
        "last_stage_on_own_inputs": diff(o.heatmaps[-1], maps_t8[-1]),
    }

    # Loss, our convention (0-based targets) fed to their loss.
    target, mask = ours.heatmap_targets(b)
    loss_mod = auth.make_loss()
    with _quiet():
        lt = their_loss(auth, loss_mod, sr_t, b["hr"], maps_t, target, mask)
    lo = ours.loss(o, b)
    out["loss"] = {"ours": scalar(lo["total"]), "theirs": scalar(lt), **diff(lo["total"], lt),
                   "ours_sr": scalar(lo["sr"]), "ours_heatmap": scalar(lo["heatmap"])}

    # Loss, their convention: their targets from 1-based points (their .pts) vs ours switched (one_based=True).
    pts1 = b["landmarks"].numpy() + 1.0
    tgt_t, mask_t = their_targets(auth, pts1, b["visible"].numpy())
    tgt_o1, mask_o1 = heatmaps.encode(b["landmarks"], b["visible"], one_based=True)
    with torch.no_grad(), _quiet():
        lt1 = their_loss(auth, loss_mod, sr_t, b["hr"], maps_t, tgt_t, mask_t)
        lo1 = ours.sr_loss_value(o.sr, b["hr"]) + ours.alpha * ours.heatmap_loss_value(o.heatmaps, tgt_o1, mask_o1)
    shift = scalar(lo["total"]) - scalar(lt1)
    shift_switch = scalar(lo["total"]) - scalar(lo1)
    out["loss_their_convention"] = {
        "ours_one_based": scalar(lo1), "theirs": scalar(lt1), **diff(lo1, lt1),
        "targets_one_based_vs_theirs": diff(tgt_o1, tgt_t), "masks_equal": bool(torch.equal(mask_o1, mask_t)),
        "targets_zero_based_vs_theirs": diff(target, tgt_t),
        "loss_ours_minus_theirs": shift, "loss_ours_minus_ours_switched": shift_switch,
        "difference_explained_by_convention": abs(shift - shift_switch) <= GOAL_REL * abs(scalar(lt1)),
    }

    # Gradients.
    t0 = time.perf_counter()
    lt.backward()
    t_bwd_t = time.perf_counter() - t0
    t0 = time.perf_counter()
    lo["total"].backward()
    t_bwd_o = time.perf_counter() - t0
    o_params, t_params = dict(ours.named_parameters()), dict(theirs.named_parameters())
    grads = {o_name: (o_params[o_name].grad, t_params[t_name].grad) for t_name, o_name in mapping.items()
             if t_params[t_name].requires_grad}
    out["gradients"] = diff_many(grads)

    # One optimizer step: theirs (utility.make_optimizer + schedule) vs Adam with our settings.
    before = {k: p.detach().clone() for k, p in o_params.items()}
    opt_t = auth.make_optimizer(theirs)
    opt_o = our_optimizer(ours, train_cfg)
    t0 = time.perf_counter()
    with _quiet():
        opt_t.step()
    t_step_t = time.perf_counter() - t0
    t0 = time.perf_counter()
    opt_o.step()
    t_step_o = time.perf_counter() - t0
    after = {o_name: (o_params[o_name].detach(), t_params[t_name].detach()) for t_name, o_name in mapping.items()
             if t_params[t_name].requires_grad}
    deltas = {k: (a - before[k], c - before[k]) for k, (a, c) in after.items()}
    out["one_step"] = {"optimizer_theirs": {"class": "Adam (utility.make_optimizer)",
                                            "lr": opt_t.param_groups[0]["lr"],
                                            "betas": list(opt_t.param_groups[0]["betas"]),
                                            "eps": opt_t.param_groups[0]["eps"],
                                            "weight_decay": opt_t.param_groups[0]["weight_decay"]},
                       "optimizer_ours": {"class": "torch.optim.Adam (pipelines/paper.yaml train)",
                                          "lr": opt_o.param_groups[0]["lr"],
                                          "betas": list(opt_o.param_groups[0]["betas"]),
                                          "eps": opt_o.param_groups[0]["eps"],
                                          "weight_decay": opt_o.param_groups[0]["weight_decay"]},
                       "parameters_after": diff_many(after), "updates": diff_many(deltas)}
    timing = {"batch": len(batch_idx), "theirs_s": t_fwd_t + t_bwd_t + t_step_t, "ours_s": t_fwd_o + t_bwd_o + t_step_o}
    out["timing_first_step"] = timing
    return out, timing


# --------------------------------------------------------------------------------------------------
# 3: the data path
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def python_random_returns(value: float):
    """Their ``random.random()`` returns ``value`` (the uniform our generator drew); other calls untouched."""
    original = random.random
    random.random = lambda: value
    try:
        yield
    finally:
        random.random = original


def data_path(auth: Authors, split, face: int, seed: int) -> dict:
    mirror = split.metadata.get("mirror_permutation")
    mirror_t = torch.tensor(mirror) if mirror else None
    cfg = AugmentConfig(scale=(1.0, 1.0), rotation=0.0, flip=0.5, translate=0.0)
    # Seeds whose flip draw is a flip / not a flip.
    draws: dict[bool, tuple[int, float]] = {}
    s = seed
    while len(draws) < 2:
        u = float(torch.rand(1, 5, generator=torch.Generator().manual_seed(s), dtype=torch.float64)[0, 2])
        draws.setdefault(u < cfg.flip, (s, u))
        s += 1
    results = {}
    for flipped, (s, u) in sorted(draws.items()):
        # Ours.
        ctx = torch.from_numpy(split.context[face:face + 1]).permute(0, 3, 1, 2)
        pts = torch.from_numpy(split.landmarks[face:face + 1] + split.context_offset)
        vis = torch.from_numpy(split.visible[face:face + 1])
        hr_o, pts_o, vis_o = augment_batch(ctx, pts, vis, cfg, torch.Generator().manual_seed(s), mirror_t)
        lr_o = degrade.make_lr(hr_o, protocol=split.protocol)
        up_o = degrade.upsample(lr_o, protocol=split.protocol)
        hm_o, mask_o = heatmaps.encode(pts_o, vis_o)
        hm_o1, mask_o1 = heatmaps.encode(pts_o, vis_o, one_based=True)
        # Theirs: the stored LR/HR (uint8 H×W×3) and their 3×K points, 1-based as their .pts files.
        lr_np, hr_np = split.lr[face].copy(), split.hr[face].copy()
        p = split.landmarks[face]
        pts_np = np.stack([p[:, 0] + 1, p[:, 1] + 1, split.visible[face].astype(np.float32)]).astype(np.float32)
        random.seed(s)
        with python_random_returns(u):
            lr_t, hr_t, pts_t = auth.data_common.get_patch(lr_np, hr_np, pts_np, patch_size=128, scale=8)
            lr_t, hr_t, pts_t = auth.data_common.augment(lr_t, hr_t, pts_t)
        pts_t = auth.data_common.apply_bound(pts_t, hr_t.shape[1], hr_t.shape[0])
        hm_t, mask_t = auth.data_common.generate_label_map(pts_t, 16, 16, 4.0, 8, "gaussian")
        lr_large = auth.data_common.resize_bi(np.ascontiguousarray(lr_t), 8)
        lr_t_t, hr_t_t, up_t = auth.data_common.np2Tensor(np.ascontiguousarray(lr_t), np.ascontiguousarray(hr_t),
                                                          lr_large, rgb_range=1)
        hm_t = torch.from_numpy(hm_t.transpose(2, 0, 1)).float().unsqueeze(0)
        mask_t = torch.from_numpy(mask_t.reshape(1, -1)).bool()
        pts_theirs = torch.from_numpy(pts_t[:2].T.copy()).float().unsqueeze(0)
        offset = pts_theirs - pts_o
        # Their flip maps x → W − x on 1-based coordinates (the 1-based mirror is W + 1 − x): emulate it on ours.
        their_flip_shift = torch.tensor([-1.0, 0.0]) if flipped else torch.zeros(2)
        hm_emul, mask_emul = heatmaps.encode(pts_o + their_flip_shift, vis_o, one_based=True)
        results["flip" if flipped else "no_flip"] = {
            "seed": s, "uniform": u, "flipped_theirs": bool(not np.array_equal(hr_t, split.hr[face])),
            "hr": diff(hr_o, hr_t_t.unsqueeze(0)),
            "lr": diff(lr_o, lr_t_t.unsqueeze(0)),
            "upsampled_input": diff(up_o, up_t.unsqueeze(0)),
            "upsampled_input_ours_rounded_to_8_bits": diff(degrade.quantize(up_o), up_t.unsqueeze(0)),
            "landmarks_theirs_minus_ours": {"x_min": float(offset[..., 0].min()), "x_max": float(offset[..., 0].max()),
                                            "y_min": float(offset[..., 1].min()), "y_max": float(offset[..., 1].max())},
            "visible_equal": bool(torch.equal(vis_o, torch.from_numpy(pts_t[2].astype(bool)).unsqueeze(0))),
            "heatmaps_ours_vs_theirs": diff(hm_o, hm_t),
            "heatmaps_ours_one_based_vs_theirs": diff(hm_o1, hm_t),
            "heatmaps_ours_one_based_with_their_flip_vs_theirs": diff(hm_emul, hm_t),
            "masks_equal": bool(torch.equal(mask_o, mask_t)) and bool(torch.equal(mask_emul, mask_t)),
        }
    return {"face": str(split.names[face]), "our_transform": "augment_batch with scale (1, 1), rotation 0, "
            "translate 0, flip 0.5 (their augment() has only the flip)", **results}


# --------------------------------------------------------------------------------------------------
# 4: equal-budget training
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def validate(model, split, val_idx, kind: str, chunk: int = 8) -> dict:
    model.eval()
    psnrs, nmes = [], []
    for start in range(0, len(val_idx), chunk):
        idx = val_idx[start:start + chunk]
        b = stored_batch(split, idx)
        up = degrade.upsample(b["lr"], protocol=split.protocol)
        if kind == "ours":
            o = model(b["lr"])
            sr, maps = o.sr, o.heatmaps
        else:
            sr, maps = model(up)
        psnrs.append(image_quality.psnr(sr, b["hr"], split.boxes[idx]))
        pts, _ = heatmaps.decode(maps[-1], stride=8, num_points=68)
        nmes.append(lm_metrics.nme(pts.numpy(), split.landmarks[idx], split.visible[idx]))
    model.train()
    return {"psnr": float(torch.cat(psnrs).mean()), "nme": float(np.concatenate(nmes).mean())}


def train_both(auth: Authors, split, train_idx, val_idx, *, steps: int, batch: int, seed: int, train_cfg: dict,
               eval_every: int) -> dict:
    theirs = auth.make_model(seed)
    ours = build("jasrnet")
    copy_weights(theirs, ours)
    ours.set_protocol(split.protocol)
    theirs.train(), ours.train()
    opt_t, opt_o = auth.make_optimizer(theirs), our_optimizer(ours, train_cfg)
    loss_mod = auth.make_loss()
    aug = AugmentConfig.from_dict(train_cfg.get("augment"))
    mirror = split.metadata.get("mirror_permutation")
    mirror_t = torch.tensor(mirror) if mirror else None
    ctx_all = torch.from_numpy(split.context)
    pts_all = torch.from_numpy(split.landmarks + split.context_offset)
    vis_all = torch.from_numpy(split.visible)
    g = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=g)]
                       for _ in range(max(1, -(-steps * batch // len(train_idx))))])
    curve = {"step": [], "loss_ours": [], "loss_theirs": [], "loss_sr_ours": [], "loss_heatmap_ours": []}
    val = {"step": [], "psnr_ours": [], "psnr_theirs": [], "nme_ours": [], "nme_theirs": []}
    times_o, times_t = [], []

    def evaluate(step):
        vo, vt = validate(ours, split, val_idx, "ours"), validate(theirs, split, val_idx, "theirs")
        val["step"].append(step)
        val["psnr_ours"].append(vo["psnr"]), val["psnr_theirs"].append(vt["psnr"])
        val["nme_ours"].append(vo["nme"]), val["nme_theirs"].append(vt["nme"])
        print(f"step {step}: val PSNR ours {vo['psnr']:.4f} theirs {vt['psnr']:.4f}; "
              f"NME ours {vo['nme']:.4f} theirs {vt['nme']:.4f}", flush=True)

    evaluate(0)
    for step in range(1, steps + 1):
        idx = order[(step - 1) * batch: step * batch]
        hr, pts, vis = augment_batch(ctx_all[idx].permute(0, 3, 1, 2), pts_all[idx], vis_all[idx], aug,
                                     torch.Generator().manual_seed(seed * 1_000_003 + step), mirror_t)
        b = {"lr": degrade.make_lr(hr, protocol=split.protocol), "hr": hr, "landmarks": pts, "visible": vis}
        # Ours.
        t0 = time.perf_counter()
        opt_o.zero_grad(set_to_none=True)
        lo = ours.loss(ours(b["lr"]), b)
        lo["total"].backward()
        opt_o.step()
        times_o.append(time.perf_counter() - t0)
        # Theirs: their trainer's lines, fed our batch (our bicubic input, our targets and mask).
        target, mask = ours.heatmap_targets(b)
        up = ours.upsample(b["lr"])
        t0 = time.perf_counter()
        opt_t.zero_grad()
        sr, maps = theirs(up)
        with _quiet():
            lt = their_loss(auth, loss_mod, sr, b["hr"], maps, target, mask)
        lt.backward()
        opt_t.step()
        times_t.append(time.perf_counter() - t0)
        curve["step"].append(step)
        curve["loss_ours"].append(scalar(lo["total"])), curve["loss_theirs"].append(scalar(lt))
        curve["loss_sr_ours"].append(scalar(lo["sr"])), curve["loss_heatmap_ours"].append(scalar(lo["heatmap"]))
        if step % 10 == 0:
            print(f"step {step}: loss ours {curve['loss_ours'][-1]:.6f} theirs {curve['loss_theirs'][-1]:.6f} "
                  f"({np.mean(times_o):.2f} s / {np.mean(times_t):.2f} s per step)", flush=True)
        if step % eval_every == 0 or step == steps:
            evaluate(step)
    lo_a, lt_a = np.array(curve["loss_ours"]), np.array(curve["loss_theirs"])
    rel = np.abs(lo_a - lt_a) / np.abs(lt_a)
    final = {"loss_ours": float(lo_a[-1]), "loss_theirs": float(lt_a[-1]), "loss_rel": float(rel[-1]),
             "val_psnr_ours": val["psnr_ours"][-1], "val_psnr_theirs": val["psnr_theirs"][-1],
             "val_psnr_abs": abs(val["psnr_ours"][-1] - val["psnr_theirs"][-1]),
             "val_nme_ours": val["nme_ours"][-1], "val_nme_theirs": val["nme_theirs"][-1],
             "val_nme_abs": abs(val["nme_ours"][-1] - val["nme_theirs"][-1])}
    params_o, params_t = dict(ours.named_parameters()), dict(theirs.named_parameters())
    mapping = name_map(theirs.state_dict(), ours.state_dict())
    final_weights = diff_many({o: (params_o[o], params_t[t]) for t, o in mapping.items() if t in params_t})
    bicubic = []
    for start in range(0, len(val_idx), 8):
        idx = val_idx[start:start + 8]
        b = stored_batch(split, idx)
        bicubic.append(image_quality.psnr(degrade.upsample(b["lr"], protocol=split.protocol), b["hr"], split.boxes[idx]))
    return {"steps": steps, "batch": batch, "faces_seen": steps * batch, "validation_faces": len(val_idx),
            "augment": train_cfg.get("augment"), "lr_schedule": "constant 5e-5 (their MultiStepLR milestones are "
            "epochs 20 and 30; N steps are inside epoch 1 for both)",
            "loss_max_rel_over_steps": float(rel.max()), "loss_max_rel_step": int(rel.argmax()) + 1,
            "at_N": final, "weights_at_N": final_weights,
            "val_psnr_max_abs_over_evals": float(np.max(np.abs(np.subtract(val["psnr_ours"], val["psnr_theirs"])))),
            "val_nme_max_abs_over_evals": float(np.max(np.abs(np.subtract(val["nme_ours"], val["nme_theirs"])))),
            "bicubic_val_psnr": float(torch.cat(bicubic).mean()),
            "step_time_s": {"ours": float(np.mean(times_o)), "theirs": float(np.mean(times_t))},
            "curve": curve, "validation": val}


def plot(training: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c, v = training["curve"], training["validation"]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    ax[0].plot(c["step"], c["loss_theirs"], label="authors' code", lw=3, alpha=0.5)
    ax[0].plot(c["step"], c["loss_ours"], label="jasrbench", lw=1)
    ax[0].set_yscale("log"), ax[0].set_xlabel("step"), ax[0].set_ylabel("training loss (L1 + CPM)")
    ax[1].plot(v["step"], v["psnr_theirs"], "o-", label="authors' code", lw=3, alpha=0.5)
    ax[1].plot(v["step"], v["psnr_ours"], "x-", label="jasrbench", lw=1)
    ax[1].axhline(training["bicubic_val_psnr"], color="grey", ls="--", label="bicubic")
    ax[1].set_xlabel("step"), ax[1].set_ylabel("validation PSNR (dB)")
    ax[2].plot(v["step"], v["nme_theirs"], "o-", label="authors' code", lw=3, alpha=0.5)
    ax[2].plot(v["step"], v["nme_ours"], "x-", label="jasrbench", lw=1)
    ax[2].set_xlabel("step"), ax[2].set_ylabel("validation NME (%)")
    for a in ax:
        a.legend(), a.grid(True, alpha=0.3)
    fig.suptitle(f"JASRNet, same init and batches: {training['steps']} steps of batch {training['batch']}, fp32, "
                 f"Adam 5e-5 / wd 5e-4")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--authors-src", required=True, type=Path, help="a clone of github.com/YuYin1/JASRNet (or its src/)")
    ap.add_argument("--prepared", type=Path, default=ROOT / "datasets/prepared/300w",
                    help="prepared 300W folder (train.npz with context crops)")
    ap.add_argument("--out", type=Path, default=ROOT / "results/fidelity")
    ap.add_argument("--batch", type=int, default=8, help="faces in the one-batch comparison (their batch_size)")
    ap.add_argument("--steps", type=int, default=200, help="equal-budget training steps (0: skip)")
    ap.add_argument("--train-batch", type=int, default=0,
                    help="training batch (0: the largest of 8, 4, 2, 1 whose estimated time fits --budget-min)")
    ap.add_argument("--budget-min", type=float, default=30.0, help="CPU minutes allowed for the training comparison")
    ap.add_argument("--val-faces", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    auth = Authors(args.authors_src)
    train_cfg = yaml.safe_load((ROOT / "pipelines/paper.yaml").read_text())["train"]
    split = load_split(args.prepared / "train.npz")
    if split.context is None:
        raise SystemExit(f"{args.prepared / 'train.npz'} has no context crops (a training split is needed)")
    n = len(split)
    val_idx = np.arange(n - args.val_faces, n)
    train_idx = np.arange(0, n - args.val_faces)
    result: dict = {
        "what": "JASRNet: jasrbench vs the authors' released code (benchmarks/fidelity_jasrnet.py, issue 24)",
        "authors": {"repository": "github.com/YuYin1/JASRNet", "commit": auth.commit, "argv": AUTHOR_ARGV[1:],
                    "option_defaults": auth.settings(), "patches": auth.patches, "import_shims": auth.shims},
        "ours": {"model": "build('jasrnet')", "optimizer": "torch.optim.Adam, pipelines/paper.yaml train: "
                 f"lr {train_cfg['lr']}, betas {train_cfg['betas']}, weight_decay {train_cfg['weight_decay']}, eps 1e-8 "
                 "(torch default; jasrbench.step.make_optimizer passes no eps)"},
        "precision": "fp32", "device": "cpu", "cpu": cpu_name(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(),
        "data": {"prepared": str(args.prepared), "split": "train", "faces": n, "protocol": split.protocol},
        "goal_rel": GOAL_REL,
        "relative_difference": "max |ours − theirs| / max |theirs| per tensor; max_rel is the worst tensor",
    }
    batch_idx = np.arange(args.batch)
    checks, timing = one_batch_checks(auth, split, batch_idx, args.seed, train_cfg)
    result["one_batch"] = checks
    result["data_path"] = data_path(auth, split, face=0, seed=args.seed)
    print("one batch and data path done", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "jasrnet.json", result)  # the training comparison is added when it ends

    if args.steps > 0:
        per_face = (timing["ours_s"] + timing["theirs_s"]) / args.batch
        est = {b: per_face * b * args.steps + (args.steps // args.eval_every + 1) * args.val_faces * per_face / 3
               for b in (8, 4, 2, 1)}
        tb = args.train_batch or next((b for b in (8, 4, 2, 1) if est[b] <= args.budget_min * 60), 1)
        training = train_both(auth, split, train_idx, val_idx, steps=args.steps, batch=tb, seed=args.seed,
                              train_cfg=train_cfg, eval_every=args.eval_every)
        training["batch_choice"] = {
            "paper_batch": 8, "used": tb, "budget_min": args.budget_min,
            "estimated_min": {str(b): round(e / 60, 1) for b, e in est.items()},
            "reason": "the largest batch whose estimated time (first-step time per face, both models, plus "
                      "validation) fits the budget" if not args.train_batch else "--train-batch"}
        result["training"] = training
        args.out.mkdir(parents=True, exist_ok=True)
        plot(training, args.out / "jasrnet_curves.png")
    result["step_time_batch8_s"] = timing
    result["wall_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "jasrnet.json", result)
    print(f"wrote {args.out / 'jasrnet.json'} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
