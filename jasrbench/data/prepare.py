"""``jasrbench prepare DATASET --raw DIR --out DIR``: raw dataset → prepared split files (DESIGN §2).

Per face from a reader (:mod:`.w300`, :mod:`.helen`, :mod:`.aflw`, :mod:`.lfw`): the face box,
the protocol's square crop (:func:`.crop.crop_face`: HR 128², plus the context crop for training
splits), the LR (:func:`.degrade.make_lr`, 8-bit), the landmarks moved with the crop, and
``boxes`` (the face box in HR pixels: the metrics' region). Each split goes to
``<out>/<split>.npz`` (:mod:`.split`) and ``<out>/summary.json`` says what was built and what
could not be, and why. ``--protocol`` (default: ``params.yaml``'s ``data.protocol``) is recorded
in every file, and ``train``/``evaluate`` refuse a split of another protocol.

A visible landmark outside the photograph by more than ``OUTSIDE_TOLERANCE`` of the face's size
is an error naming the annotation file; closer, it is an annotator's estimate at a face cut by
the frame and is kept. Without ``--skip-bad`` the first bad file stops the stage and ``--out``
is untouched (everything is written beside it and swapped in when complete); with it, bad
inputs are left out, counted and listed. Same inputs, byte-identical outputs.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..errors import DataError
from ..files import atomic_write_json, read_json
from . import crop, degrade, degradations, protocols
from .images import load_rgb
from .landmarks import landmark_box
from .records import BadInput, DatasetPlan, FaceRecord
from .split import FORMAT_VERSION, PreparedSplit, save_split

log = logging.getLogger(__name__)

DATASETS = ("300w", "helen", "aflw", "lfw")
LFW_CROPS = ("central", "mtcnn")
LR_CHUNK = 512


@dataclass
class CroppedFace:
    hr: np.ndarray
    context: np.ndarray
    points: np.ndarray  # K×2 HR pixels
    visible: np.ndarray  # K bool
    box: np.ndarray  # 4, HR pixels, clamped
    made_invisible: int = 0
    fallback: bool = False  # mtcnn found no face: central box used


# ---------------------------------------------------------------- reading

def read_plan(dataset: str, raw: Path, bad: BadInput, *, pairs: Path | None = None,
              reader_options: dict[str, Any] | None = None) -> DatasetPlan:
    """Run the dataset's reader on ``raw``."""
    opts = dict(reader_options or {})
    if dataset == "300w":
        from .w300 import read_300w

        return read_300w(raw, bad)
    if dataset == "helen":
        from .helen import read_helen

        return read_helen(raw, bad)
    if dataset == "aflw":
        from .aflw import TRAIN_FACES, read_aflw

        return read_aflw(raw, bad, train_faces=int(opts.get("train_faces", TRAIN_FACES)))
    if dataset == "lfw":
        from .lfw import read_lfw

        return read_lfw(raw, bad, pairs_file=pairs)
    raise DataError(None, f"unknown dataset {dataset!r}: choose from {', '.join(DATASETS)}")


# ---------------------------------------------------------------- cropping

# A visible point may lie a little beyond the photograph (annotators place an occluded chin or ear
# at the border of a face cut by the frame; the crop pads with black); beyond this fraction of the
# face's size it is an annotation error.
OUTSIDE_TOLERANCE = 0.1


def inside_image(points: np.ndarray, width: int, height: int, tolerance: float = 0.0) -> np.ndarray:
    """K bool: the point lies on the photograph's pixel area (0-based pixel centres), ± ``tolerance`` px."""
    x, y = points[:, 0], points[:, 1]
    lo = -0.5 - tolerance
    return (x >= lo) & (x <= width - 0.5 + tolerance) & (y >= lo) & (y <= height - 0.5 + tolerance)


class MtcnnBoxes:
    """Face boxes from facenet-pytorch's MTCNN (weights inside its wheel): the face nearest the centre."""

    def __init__(self) -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise DataError(None, f"--lfw-crop mtcnn needs facenet-pytorch ({exc})") from exc
        self._mtcnn = MTCNN(keep_all=True, device="cpu")
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        import torch
        from PIL import Image

        with self._lock, torch.no_grad():
            boxes, _ = self._mtcnn.detect(Image.fromarray(image))
        if boxes is None or len(boxes) == 0:
            return None
        h, w = image.shape[:2]
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        dist = ((centres - np.array([(w - 1) / 2, (h - 1) / 2])) ** 2).sum(axis=1)
        return np.asarray(boxes[int(np.argmin(dist))], dtype=np.float32)


def crop_record(rec: FaceRecord, image: np.ndarray, *, outside_policy: str,
                box_rule: Callable[[np.ndarray], np.ndarray | None] | None = None,
                margin: float = crop.MARGIN) -> CroppedFace:
    """Crop one face out of its decoded photograph (see the module doc)."""
    h, w = image.shape[:2]
    points, visible = rec.points, rec.visible.copy()
    made_invisible = 0
    if len(points):
        tolerance = 0.0
        on_photo = visible & inside_image(points, w, h)
        if outside_policy == "error" and on_photo.sum() >= 2:  # the face's size from the points on the photo
            x0, y0, x1, y1 = landmark_box(points, on_photo)
            tolerance = OUTSIDE_TOLERANCE * max(x1 - x0, y1 - y0)
        outside = visible & ~inside_image(points, w, h, tolerance)
        if outside.any():
            if outside_policy == "invisible":
                visible &= ~outside
                made_invisible = int(outside.sum())
            else:
                i = int(np.flatnonzero(outside)[0])
                x, y = (float(v) for v in points[i])
                raise DataError(rec.annotation, f"landmark {i} at ({x:.1f}, {y:.1f}) lies outside the {w}×{h} image "
                                                f"{rec.image.name} by more than {tolerance:.1f} px (10% of the face) "
                                                f"({int(outside.sum())} point(s) outside)")
    fallback = False
    if box_rule is not None:
        box = box_rule(image)
        if box is None:
            box, fallback = crop.lfw_face_box(h, w), True
    elif rec.box is not None:
        box = rec.box
    else:
        if not visible.any():
            raise DataError(rec.annotation, "no visible landmark to make a face box from")
        box = landmark_box(points, visible)
    try:
        hr, context, mapping = crop.crop_face(image, box, margin=margin)
    except ValueError as exc:
        raise DataError(rec.annotation, f"cannot crop the face: {exc}") from exc
    pts_hr = mapping.apply(points) if len(points) else np.zeros((0, 2), dtype=np.float32)
    corners = mapping.apply(np.asarray(box, dtype=np.float64).reshape(2, 2)).reshape(4)
    box_hr = np.clip(corners, 0, hr.shape[0] - 1).astype(np.float32)
    return CroppedFace(hr, context, pts_hr.astype(np.float32), visible, box_hr, made_invisible, fallback)


def _crop_group(records: list[FaceRecord], policy: str, box_rule, margin: float) -> list[CroppedFace | DataError]:
    """Decode one photograph once and crop each of its faces; errors are returned, not raised."""
    try:
        image = load_rgb(records[0].image)
    except DataError as exc:
        return [exc] * len(records)
    out: list[CroppedFace | DataError] = []
    for rec in records:
        try:
            out.append(crop_record(rec, image, outside_policy=policy, box_rule=box_rule, margin=margin))
        except DataError as exc:
            out.append(exc)
    return out


def crop_all(records: list[FaceRecord], bad: BadInput, *, policy: str, box_rule=None, workers: int = 1,
             desc: str = "prepare", margin: float = crop.MARGIN) -> dict[str, CroppedFace]:
    """Crop every face (photographs decoded once, in a thread pool); face name → result."""
    groups: dict[Path, list[FaceRecord]] = {}
    for rec in records:
        groups.setdefault(rec.image, []).append(rec)
    items = list(groups.values())
    results: dict[str, CroppedFace] = {}
    with tqdm(total=len(records), desc=desc, unit="face", mininterval=1.0) as bar, \
            ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        try:
            for group, outcome in zip(items, pool.map(lambda g: _crop_group(g, policy, box_rule, margin), items), strict=True):
                for rec, res in zip(group, outcome, strict=True):
                    if isinstance(res, DataError):
                        bad.handle(res, "face")
                    else:
                        results[rec.name] = res
                bar.update(len(group))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results


def make_lr_batch(hr: np.ndarray, protocol: str | protocols.Protocol | None = None, names=None) -> np.ndarray:
    """N×128×128×3 uint8 → N×16×16×3 uint8, :func:`degrade.make_lr` in chunks; a robustness protocol's
    per-face draw comes from ``names`` (:func:`.degradations.lr_uint8`, the code path training uses)."""
    if len(hr) == 0:
        return np.zeros((0, degrade.LR_SIZE, degrade.LR_SIZE, 3), np.uint8)
    return degradations.lr_uint8(hr, protocol, names, chunk=LR_CHUNK)


# ---------------------------------------------------------------- writing

def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(out, "--out exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "summary.json").is_file():
        raise DataError(out, "--out is a non-empty folder that prepare did not write (no summary.json): "
                             "refusing to replace it; choose an empty or new folder")


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` by the complete ``tmp`` folder."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    for f in tmp.iterdir():  # atomic writes create their files 0600
        os.chmod(f, 0o666 & ~umask)
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _protocol_info(p: protocols.Protocol) -> dict[str, Any]:
    info = {"protocol": p.name, "margin": p.margin, "degradation": f"{p.kernel} x8, quantized to 8 bits",
            "jpeg_quality": p.jpeg_quality}
    if isinstance(p, degradations.Degraded):  # the robustness track's blur/noise/JPEG (issue 26)
        info["degradations"] = p.parameters()
    return info


def _metadata(plan: DatasetPlan, split: str, crop_rule: str, with_context: bool,
              protocol: protocols.Protocol) -> dict[str, Any]:
    meta = {
        "dataset": plan.dataset,
        "split": split,
        "num_points": plan.num_points,
        "mirror_permutation": list(plan.mirror) if plan.mirror is not None else None,
        "hr_size": degrade.HR_SIZE,
        "lr_size": degrade.LR_SIZE,
        "scale": degrade.SCALE,
        **_protocol_info(protocol),
        "context_factor": crop.CONTEXT_FACTOR,
        "crop_rule": crop_rule,
        "outside_points": plan.outside_policy,
    }
    if with_context:
        meta["context_size"] = crop.context_size()
    return meta


def build_split(plan: DatasetPlan, split: str, records: list[FaceRecord], crops: dict[str, CroppedFace],
                crop_rule: str, bad: BadInput, protocol: protocols.Protocol | None = None) -> PreparedSplit | None:
    protocol = protocols.get(protocol)
    kept = [r for r in records if r.name in crops]
    if not kept:
        return None
    faces = [crops[r.name] for r in kept]
    with_context = split in plan.training_splits
    hr = np.stack([f.hr for f in faces])
    k = plan.num_points
    result = PreparedSplit(
        hr=hr,
        lr=make_lr_batch(hr, protocol, [r.name for r in kept]),
        landmarks=np.stack([f.points for f in faces]).reshape(len(faces), k, 2).astype(np.float32),
        visible=np.stack([f.visible for f in faces]).reshape(len(faces), k).astype(bool),
        boxes=np.stack([f.box for f in faces]).astype(np.float32),
        names=np.asarray([r.name for r in kept], dtype=str),
        metadata=_metadata(plan, split, crop_rule, with_context, protocol),
        context=np.stack([f.context for f in faces]) if with_context else None,
    )
    if any(r.identity is not None for r in kept):
        result.identities = np.asarray([r.identity or "" for r in kept], dtype=str)
    spec = plan.pairs.get(split)
    if spec is not None:
        index = {r.name: i for i, r in enumerate(kept)}
        pairs, same, fold = [], [], []
        for a, b, s, f in zip(spec.names1, spec.names2, spec.same, spec.fold, strict=True):
            if a not in index or b not in index:
                gone = a if a not in index else b
                bad.handle(DataError(None, f"pair ({a}, {b}) of fold {f + 1}: face {gone} was skipped"), "pair")
                continue
            pairs.append((index[a], index[b]))
            same.append(s)
            fold.append(f)
        result.pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        result.pair_same = np.asarray(same, dtype=bool)
        result.pair_fold = np.asarray(fold, dtype=np.int64)
    return result


def prepare(dataset: str, raw: str | Path, out: str | Path, *, skip_bad: bool = False, lfw_crop: str = "central",
            pairs: str | Path | None = None, workers: int | None = None,
            reader_options: dict[str, Any] | None = None,
            protocol: str | protocols.Protocol | None = None) -> dict[str, Any]:
    """Prepare ``dataset`` from ``raw`` into ``out`` under ``protocol`` (default ``paper``); returns the summary
    written to ``out/summary.json``."""
    dataset = dataset.lower()
    proto = protocols.get(protocol)
    if dataset not in DATASETS:
        raise DataError(None, f"unknown dataset {dataset!r}: choose from {', '.join(DATASETS)}")
    if lfw_crop not in LFW_CROPS:
        raise DataError(None, f"unknown --lfw-crop {lfw_crop!r}: choose from {', '.join(LFW_CROPS)}")
    raw, out = Path(raw), Path(out)
    if not raw.is_dir():
        raise DataError(raw, "raw dataset folder not found")
    if not any(p for p in raw.iterdir() if not p.name.startswith(".")):
        raise DataError(raw, "empty dataset folder")
    _check_out(out)
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    bad = BadInput(skip_bad, root=raw)
    plan = read_plan(dataset, raw, bad, pairs=Path(pairs) if pairs is not None else None,
                     reader_options=reader_options)

    # One record per face name across all splits (300W's full shares common's faces).
    unique: dict[str, FaceRecord] = {}
    for records in plan.splits.values():
        for rec in records:
            first = unique.setdefault(rec.name, rec)
            if first is not rec:
                if first.image != rec.image or not np.array_equal(first.points, rec.points):
                    raise DataError(rec.annotation, f"duplicate face name {rec.name!r} (also {first.annotation})")
    box_rule = None
    crop_rule = plan.crop_rule
    if dataset == "lfw":
        if lfw_crop == "mtcnn":
            box_rule = MtcnnBoxes()
            crop_rule = "mtcnn: facenet-pytorch MTCNN box nearest the image centre (central box where none is found)"
        else:
            box_rule = lambda image: crop.lfw_face_box(*image.shape[:2])  # noqa: E731
            crop_rule = f"central: the central square of side min(H, W)/{crop.LFW_BOX_SCALE} (LFW's Viola-Jones box)"
    crops = crop_all(list(unique.values()), bad, policy=plan.outside_policy, box_rule=box_rule, workers=workers,
                     desc=f"prepare {dataset} ({proto.name})", margin=proto.margin)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        faces: dict[str, int] = {}
        unavailable = dict(plan.unavailable)
        split_info: dict[str, Any] = {}
        for split, records in plan.splits.items():
            result = build_split(plan, split, records, crops, crop_rule, bad, proto)
            if result is None:
                unavailable[split] = (f"all {len(records)} faces were skipped as bad input" if records
                                      else f"no faces found for {split} under {raw}")
                continue
            save_split(tmp / f"{split}.npz", result)
            faces[split] = len(result)
            split_info[split] = {**plan.split_info.get(split, {}), "file": f"{split}.npz", "faces": len(result),
                                 "context": result.context is not None}
            if result.pairs is not None:
                split_info[split].update(pairs=len(result.pairs), folds=int(len(np.unique(result.pair_fold))),
                                         identities=int(len(np.unique(result.identities))))
        if not faces:
            raise DataError(raw, "no split could be prepared: " + "; ".join(f"{k}: {v}" for k, v in unavailable.items()))
        summary = {
            **plan.info,
            "dataset": dataset,
            "format_version": FORMAT_VERSION,
            "raw": str(raw),
            "source": plan.source,
            "faces": faces,
            "unavailable": unavailable,
            "splits": split_info,
            "points": plan.num_points,
            "mirror_permutation": list(plan.mirror) if plan.mirror is not None else None,
            "hr_size": degrade.HR_SIZE,
            "lr_size": degrade.LR_SIZE,
            "scale": degrade.SCALE,
            "context_size": crop.context_size(),
            **_protocol_info(proto),
            "context_factor": crop.CONTEXT_FACTOR,
            "crop_rule": crop_rule,
            "outside_points": plan.outside_policy,
            "points_made_invisible": sum(c.made_invisible for c in crops.values()),
            "skip_bad": skip_bad,
            "skipped": bad.summary(),
            "notes": plan.notes,
        }
        if box_rule is not None and lfw_crop == "mtcnn":
            fallbacks = sorted(n for n, c in crops.items() if c.fallback)
            summary["mtcnn_fallbacks"] = {"count": len(fallbacks), "faces": fallbacks}
        atomic_write_json(tmp / "summary.json", summary)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for split, n in faces.items():
        log.info("%s/%s: %d faces → %s", dataset, split, n, out / f"{split}.npz")
    for split, reason in unavailable.items():
        log.info("%s/%s unavailable: %s", dataset, split, reason)
    if bad.count:
        log.warning("%d bad input(s) skipped (listed in %s)", bad.count, out / "summary.json")
    return summary


def read_summary(out: str | Path) -> dict[str, Any]:
    return read_json(Path(out) / "summary.json")


# ---------------------------------------------------------------- CLI

def _yes_no(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=DATASETS, help="which reader: 300w, helen, aflw, lfw (any LFW-layout set)")
    parser.add_argument("--raw", required=True, help="the raw dataset folder (its official layout)")
    parser.add_argument("--out", required=True, help="output folder: <split>.npz per split + summary.json")
    # `--skip-bad` alone or `--skip-bad true|false` (dvc.yaml passes data.datasets.NAME.skip_bad).
    parser.add_argument("--skip-bad", nargs="?", const=True, default=False, type=_yes_no, metavar="BOOL",
                        help="skip bad files/faces/pairs (logged, counted, listed in summary.json) instead of stopping")
    parser.add_argument("--lfw-crop", choices=LFW_CROPS, default="central",
                        help="LFW-layout face box: central square (default) or facenet-pytorch's MTCNN")
    parser.add_argument("--pairs", help="LFW-layout pairs file (default: RAW/pairs.txt)")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: min(4, CPUs))")
    parser.add_argument("--protocol", choices=sorted(protocols.PROTOCOLS), default=None,
                        help="degradation protocol: paper (the authors' crop and LR, calibrated), clean "
                             "(margin 1.3, antialiased), or paper + seeded per-face camera degradations "
                             "(blur1-4, noise2-20, jpeg90-30, mixed; README); default: params.yaml's "
                             "data.protocol, else paper")


def default_protocol(params_file: str | Path = "params.yaml") -> str:
    """The active profile's ``data.protocol`` (``params.yaml`` in the current directory), else ``paper``."""
    import yaml  # read directly: prepare imports no params code (dvc.yaml passes --protocol anyway)

    path = Path(params_file)
    if not path.is_file():
        return protocols.DEFAULT
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DataError(path, f"invalid YAML ({exc})") from exc
    name = (data.get("data") or {}).get("protocol") if isinstance(data, dict) else None
    name = name or protocols.DEFAULT
    return protocols.get(name).name


def run(args: argparse.Namespace) -> int:
    summary = prepare(args.dataset, args.raw, args.out, skip_bad=args.skip_bad, lfw_crop=args.lfw_crop,
                      pairs=args.pairs, workers=args.workers, protocol=args.protocol or default_protocol())
    parts = [f"{k}: {v}" for k, v in summary["faces"].items()]
    parts += [f"{k}: unavailable ({v})" for k, v in summary["unavailable"].items()]
    print(f"prepared {summary['dataset']} → {args.out}: " + "; ".join(parts))
    if summary["skipped"]["count"]:
        print(f"skipped {summary['skipped']['count']} bad input(s), listed in {Path(args.out) / 'summary.json'}")
    return 0
