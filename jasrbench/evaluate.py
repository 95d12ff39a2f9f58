"""``jasrbench evaluate``: every metric of DESIGN §4 that a test split supports, per image.

Input: a checkpoint (``model.pt``) or a model without weights (``bicubic``), and a prepared test split
(``DATASET/SPLIT``, e.g. ``300w/common``, ``lfw/test``). Per-image values come
from :func:`jasrbench.scoring.score_split`:

- SR models: PSNR and SSIM on Y in the face box (standard convention), over the whole image, over the
  image minus an 8-pixel border (``*_border8``: how the authors scored LFW, Table 3) and under the
  authors'-code convention (``*_jasrnet_code``), so both can be reported.
- Landmark models on splits with landmarks: NME (inter-ocular for 68 points, box-normalized for AFLW's
  19), its CED curve, AUC@0.08 and failure rate.
- LFW-layout splits (pairs): 10-fold verification accuracy of the SR faces with the profile's
  recognizer (and of HR with ``--hr-reference``).

Outputs (``--out``): ``per_image.csv``, ``summary.json`` (means with 95% bootstrap intervals; DVC
metrics) and ``ced.csv``. A split the data at hand cannot give (300W challenge without iBUG) yields a
``summary.json`` with ``available: false`` and the reason, so a table can say why a cell is empty.
A checkpoint carries its degradation protocol; a model without weights takes ``--protocol`` (default:
the profile's ``data.protocol``); a split prepared under another protocol is an error naming both.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import params as paramsfile
from . import runtime, settings, tracking
from .data import crop, degrade, protocols
from .data.split import PreparedSplit, load_split
from .errors import ConfigError, DataError
from .files import atomic_path, atomic_write_json, read_json
from .runtime import load_model, resolve_device
from .scoring import VARIANTS, score_split
from .seeds import generator

log = logging.getLogger(__name__)


def resolve_split(prepared: Path, split: str) -> tuple[Path, str | None]:
    """(split file, reason it is unavailable or None)."""
    dataset, _, name = split.partition("/")
    path = Path(prepared) / dataset / f"{name}.npz"
    if path.is_file():
        return path, None
    summary_path = Path(prepared) / dataset / "summary.json"
    if summary_path.is_file():
        reason = (read_json(summary_path).get("unavailable") or {}).get(name)
        if reason:
            return path, str(reason)
    raise DataError(path, f"prepared split {split!r} not found (run `jasrbench prepare {dataset}` first)")


def select_faces(split: PreparedSplit, max_faces: int | None, seed: int, pairs_per_fold: int | None = None) -> PreparedSplit:
    """A seeded subset of ``max_faces`` faces; for a pairs split, ``pairs_per_fold`` same + different pairs per fold."""
    if split.pairs is not None:
        return split if pairs_per_fold is None else split.subset_pairs(pairs_per_fold)
    if max_faces is None or max_faces >= len(split):
        return split
    perm = torch.randperm(len(split), generator=generator(seed, -2)).numpy()
    return split.subset(np.sort(perm[:max_faces]))


def landmark_set_metrics(nme: np.ndarray, split: PreparedSplit) -> tuple[dict[str, Any], pd.DataFrame]:
    """The set-level AUC@0.08 and failure rate, the normalizer's name, and the CED curve of per-image NMEs."""
    from .metrics import landmarks as lm

    set_level = {"auc_0.08": {"mean": lm.auc(nme, threshold=0.08), "n": len(nme)},
                 "failure_rate_0.08": {"mean": lm.failure_rate(nme, threshold=0.08), "n": len(nme)}}
    thresholds, fractions = lm.ced(nme)
    return ({"metrics": set_level, "nme_normalizer": lm.default_normalizer(split.num_points)},
            pd.DataFrame({"nme": thresholds, "fraction": fractions}))


def recognizer_window(recognizer: str, margin: float):
    """The recognizer's face window (calibrated on ``crop.MARGIN`` crops) for crops of ``margin`` × the face box.

    Windows are in face-box units, and a crop's pixels per box side scale as 1/margin, so the same
    pixels of a ``margin`` crop are the window scaled by ``crop.MARGIN / margin`` in a 1.3 crop's units.
    """
    from .metrics import recognizers

    window = {"dlib": recognizers.DLIB_WINDOW, "facenet": recognizers.FACENET_WINDOW}.get(recognizer)
    if window is None or abs(margin - crop.MARGIN) < 1e-9:
        return None
    k = crop.MARGIN / margin
    return recognizers.Window(window.dx * k, window.dy * k, window.width * k, window.height * k)


def verification_metrics(sr: np.ndarray, hr: np.ndarray, split: PreparedSplit, recognizer: str,
                         hr_reference: bool, device: torch.device | None = None) -> dict[str, Any]:
    """LFW 10-fold accuracy (percent, mean ± population std over folds) and ROC AUC of SR (and HR) faces.

    ``device``: evaluate's (``--device`` / ``$JASRBENCH_DEVICE``), for a recognizer that runs on torch (facenet).
    """
    from .metrics import recognizers, verification

    window = recognizer_window(recognizer, float(split.metadata.get("margin", crop.MARGIN)))
    rec = recognizers.get(recognizer, device=device, **({"window": window} if window is not None else {}))
    metrics: dict[str, Any] = {}
    sources = {"": sr} | ({"_hr": hr} if hr_reference else {})
    for suffix, faces in sources.items():
        emb = rec.embed(faces)
        res = verification.evaluate_pairs(emb, split.pairs, split.pair_same, split.pair_fold)
        metrics[f"acc{suffix}"] = {"mean": 100 * res["accuracy_mean"], "std": 100 * res["accuracy_std"],
                                   "folds": [100 * float(a) for a in res["fold_accuracies"]], "n": int(res["pairs"])}
        metrics[f"roc_auc{suffix}"] = {"mean": float(res["roc_auc"]), "n": int(res["pairs"])}
    return {"metrics": metrics, "recognizer": recognizer}


def evaluate(
    target: str,
    split_name: str,
    out_dir: str | Path,
    params: dict[str, Any],
    *,
    prepared: str | Path | None = None,
    device: str | None = None,
    hr_reference: bool = False,
    label: str | None = None,
    protocol: str | None = None,
    degradation: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``target`` on ``split_name``; writes and returns the summary.

    ``protocol``: of a model without weights (default: the profile's ``data.protocol``).
    """
    from .metrics import statistics

    ev = params["evaluate"]
    seed = int(params["seed"])
    prepared = Path(prepared or params["data"]["prepared"])
    out_dir = Path(out_dir)
    rt = settings.load(device=device)  # runtime settings (device, batch): never in the params
    dev = resolve_device(rt.device)
    # fp32 unless the profile asks otherwise: one checkpoint's metrics must not depend on the device.
    precision = runtime.resolve_precision(ev.get("precision", "fp32"), dev)
    dataset = split_name.partition("/")[0]
    stand_in = (params["data"]["datasets"].get(dataset) or {}).get("stand_in")
    split_path, unavailable = resolve_split(prepared, split_name)
    explicit = protocol
    protocol = protocols.get(protocol or params["data"].get("protocol")).name
    model, ckpt = load_model(target, dev, protocol)
    if explicit and model.trainable and model.protocol != protocol:
        raise ConfigError(f"--protocol {protocol}: checkpoint {target} was trained under protocol {model.protocol!r}")
    if degradation is not None:
        check_degradation(degradation, model.scale)
    name = label or ckpt["model"]
    entry = params["models"].get(name) or {}
    head = {"model": name, "arch": ckpt["arch"], "split": split_name, "profile": params["profile"],
            "trained_on": ckpt.get("dataset"), "params": sum(p.numel() for p in model.parameters()),
            "protocol": model.protocol, "lr_size": degrade.HR_SIZE // model.scale,
            "runtime": runtime.describe(dev, precision, False),
            **({"stand_in": stand_in} if stand_in else {}),
            # The robustness track: the camera degradation of the test LR, and the one the model trained on.
            **({"degradation": degradation} if degradation else {}),
            **({"trained_degradation": ckpt["degradation"]} if ckpt.get("degradation") else {})}
    if unavailable:
        summary = {**head, "available": False, "reason": unavailable, "metrics": {}}
        atomic_write_json(out_dir / "summary.json", summary)
        _write_csv(out_dir / "per_image.csv", pd.DataFrame({"name": []}))
        _write_csv(out_dir / "ced.csv", pd.DataFrame({"nme": [], "fraction": []}))
        log.warning("%s on %s: unavailable (%s)", name, split_name, unavailable)
        return summary

    full = load_split(split_path)
    what = (f"checkpoint {target}" if model.trainable
            else f"model {name!r} (the --protocol option, else profile {params['profile']!r}'s data.protocol)")
    protocols.require_same(full.protocol, str(split_path), model.protocol, what)
    split = select_faces(full, ev.get("max_faces"), seed, ev.get("pairs_per_fold"))
    if degradation is not None:
        split = degrade_split(split, degradation)
    scores = score_split(model, split, dev, rt.eval_batch_size, precision, variants=tuple(VARIANTS),
                         inter_pupil=True, keep_sr=split.pairs is not None)
    per_image: dict[str, np.ndarray] = scores.per_image
    extra: dict[str, Any] = {}
    ced = None
    if "nme" in per_image:
        lm_extra, ced = landmark_set_metrics(per_image["nme"], split)
        extra.setdefault("metrics", {}).update(lm_extra.pop("metrics"))
        extra.update(lm_extra)
    if split.pairs is not None:
        ver = verification_metrics(scores.sr, split.hr, split, ev.get("recognizer", "dlib"), hr_reference, dev)
        extra.setdefault("metrics", {}).update(ver.pop("metrics"))
        extra.update(ver)

    resamples = int(ev.get("bootstrap_resamples", 1000))
    metrics = {key: statistics.summarize(values, seed=seed, resamples=resamples) for key, values in per_image.items()}
    metrics.update(extra.pop("metrics", {}))
    summary = {**head, "available": True, "faces": len(split), "metrics": metrics, **extra}
    if split.pairs is not None:
        summary["pairs"] = int(len(split.pairs))

    frame = pd.DataFrame({"name": split.names, **per_image})
    _write_csv(out_dir / "per_image.csv", frame)
    # Always written (header only for models without landmarks): DVC declares it as a plot.
    _write_csv(out_dir / "ced.csv", ced if ced is not None else pd.DataFrame({"nme": [], "fraction": []}))
    atomic_write_json(out_dir / "summary.json", summary)
    tracking.log_evaluation(summary, entry, out_dir, checkpoint=target if model.trainable else None,
                            overrides=ckpt.get("overrides"), split_path=split_path, split_metadata=split.metadata)
    return summary


def check_degradation(name: str, scale: int) -> None:
    """A camera degradation of the robustness track (``jasrbench.data.degradations``), at the ×8 it is defined for."""
    p = protocols.get(name)
    if not p.per_face:
        raise ConfigError(f"--degradation {name}: not a camera degradation; choose one of "
                          f"{', '.join(sorted(n for n, q in protocols.PROTOCOLS.items() if q.per_face))}")
    if scale != degrade.SCALE:
        raise ConfigError(f"--degradation {name}: camera degradations are defined at ×{degrade.SCALE}, "
                          f"the model reads ×{scale} LR")


def degrade_split(split: PreparedSplit, name: str) -> PreparedSplit:
    """The split with its LR made again from its HR by camera degradation ``name`` (each face's seeded draw,
    the bytes ``prepare --protocol NAME`` writes for the same crops); the crop and HR stay the prepared ones."""
    from dataclasses import replace

    from .data.degradations import lr_uint8

    return replace(split, lr=lr_uint8(split.hr, name, split.names), metadata={**split.metadata, "degradation": name})


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="a checkpoint (model.pt) or the name of a model without weights (bicubic)")
    parser.add_argument("--split", required=True, help="DATASET/SPLIT, e.g. 300w/common, lfw/test")
    parser.add_argument("--out", required=True, help="output folder (summary.json, per_image.csv, ced.csv)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--profile", help="read pipelines/PROFILE.yaml (default: the active params.yaml)")
    src.add_argument("--params", default=None, help="a params file (default: params.yaml)")
    parser.add_argument("--prepared", help="prepared-data root (default: the profile's data.prepared)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: $JASRBENCH_DEVICE, else auto)")
    parser.add_argument("--hr-reference", action="store_true", help="also verify HR faces (LFW-layout splits)")
    parser.add_argument("--label", help="model name in outputs (default: the checkpoint's)")
    parser.add_argument("--protocol", choices=sorted(protocols.PROTOCOLS),
                        help="protocol of a model without weights (bicubic; default: the profile's data.protocol); "
                             "a checkpoint keeps the protocol it was trained under")
    parser.add_argument("--degradation", help="robustness track: make the test LR by this camera degradation "
                        "(blur2, noise5, jpeg50, mixed, …: jasrbench/data/degradations.py) from the prepared HR")


def run(args: argparse.Namespace) -> int:
    params = paramsfile.load_profile(args.profile) if args.profile else paramsfile.load_params(args.params)
    summary = evaluate(args.target, args.split, args.out, params, prepared=args.prepared, device=args.device,
                       hr_reference=args.hr_reference, label=args.label, protocol=args.protocol,
                       degradation=args.degradation)
    print(json.dumps({k: v for k, v in summary.items() if k != "metrics"} | {
        "metrics": {k: round(v["mean"], 4) for k, v in summary["metrics"].items()}}, indent=2))
    return 0
