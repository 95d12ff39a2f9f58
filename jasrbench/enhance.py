"""``jasrbench enhance``: super-resolve and landmark tiny faces in your own images (DESIGN §1, user (d)).

    jasrbench enhance models/paper/jasrnet-300w/model.pt photo.jpg faces/ --out enhanced/ [--detect]

Each input image is one face crop (its centred square, padded with black, as the benchmark's crops are
the face box × the margin) or, with ``--detect``, a photograph in which facenet-pytorch's MTCNN
(weights inside its wheel) finds the faces, each framed as its box × the margin of the model's
protocol (:mod:`jasrbench.data.protocols`). The square becomes the model's LR input exactly as ``prepare`` makes
the benchmark's (a face already that small is used as it is).

Per face, in ``--out``: ``<name>_lr.png``, ``<name>_sr.png``, ``<name>_overlay.png`` (SR ×2 with the
predicted landmarks in green), ``<name>.pts`` (SR pixels, iBUG format, 1-based), and one
``enhance.json`` with every face's source, square and landmarks in SR and source pixels. Files are
written atomically; an unreadable image is an error naming it (``--skip-bad`` logs and skips it).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .data import crop, degrade, protocols
from .data.images import IMAGE_SUFFIXES, load_rgb
from .data.landmarks import write_pts
from .errors import DataError, JasrbenchError
from .files import atomic_path, atomic_write_json, read_json
from .runtime import load_model, predict, resolve_device

log = logging.getLogger(__name__)


@dataclass
class Face:
    source: Path
    name: str
    lr: np.ndarray  # 16×16×3 uint8
    square: tuple[float, float, float]  # centre x, centre y, side (source pixels)
    mapping: crop.SquareMap  # source → LR pixels


def list_images(inputs: list[str]) -> list[Path]:
    """Image files named or inside the named folders (sorted); a missing input is an error."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(path, "no such image or folder")
    if not files:
        raise DataError(None, f"no images found in {inputs}")
    return files


def face_squares(image: np.ndarray, detector, margin: float = crop.MARGIN) -> list[tuple[float, float, float]]:
    """(centre x, centre y, side) of each face: the whole image's centred square, or detected boxes × ``margin``
    (the model's protocol's crop margin, so a detected face is framed as the model's training faces were)."""
    h, w = image.shape[:2]
    if detector is None:
        return [((w - 1) / 2, (h - 1) / 2, float(max(h, w)))]
    with torch.no_grad():
        boxes, _ = detector.detect(Image.fromarray(image))
    if boxes is None:
        return []
    return [crop.face_square(np.asarray(b, dtype=np.float32), margin) for b in boxes]


def extract_faces(path: Path, detector, protocol: str | None = None, scale: int = degrade.SCALE) -> list[Face]:
    """Each face's LR as ``prepare`` makes it: square (the protocol's margin) → HR 128² → LR (128/``scale``)² by
    the protocol (``scale`` is the model's: 8 for 16×16 faces, 2 for ``jasrnet_lr64``)."""
    proto = protocols.get(protocol)
    lr_size = degrade.HR_SIZE // scale
    image = load_rgb(path)
    faces = []
    squares = face_squares(image, detector, proto.margin)
    for i, (cx, cy, side) in enumerate(squares):
        if round(side) <= lr_size:  # already a tiny face: used as it is (padded/centred)
            lr, mapping = crop.render_square(image, cx, cy, side, lr_size)
        else:
            hr, hr_map = crop.render_square(image, cx, cy, side, degrade.HR_SIZE)
            lr = degrade.to_uint8(degrade.make_lr(degrade.to_tensor(hr[None]), scale, protocol=proto))[0]
            # LR pixel centres: (hr + 0.5)/scale − 0.5, i.e. the same square at 1/scale the pixel scale.
            mapping = crop.SquareMap(hr_map.origin_x, hr_map.origin_y, hr_map.scale / scale)
        name = path.stem if len(squares) == 1 and detector is None else f"{path.stem}_face{i + 1}"
        faces.append(Face(path, name, lr, (cx, cy, side), mapping))
    return faces


def sr_to_source(points: np.ndarray, mapping: crop.SquareMap, scale: int) -> np.ndarray:
    """SR pixel centres → source pixel centres (through the LR pixels of the face square)."""
    lr = (np.asarray(points, dtype=np.float64) + 0.5) / scale - 0.5
    return np.stack([(lr[..., 0] + 0.5) / mapping.scale + mapping.origin_x - 0.5,
                     (lr[..., 1] + 0.5) / mapping.scale + mapping.origin_y - 0.5], -1)


def _save_png(array: np.ndarray, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def overlay(sr: np.ndarray, points: np.ndarray | None, zoom: int = 2) -> np.ndarray:
    """The SR face ×``zoom`` (nearest) with the landmarks as green dots (the paper's Figure 1b colour)."""
    img = Image.fromarray(sr).resize((sr.shape[1] * zoom, sr.shape[0] * zoom), Image.NEAREST)
    if points is not None:
        draw = ImageDraw.Draw(img)
        for x, y in (np.asarray(points) + 0.5) * zoom - 0.5:
            draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=(0, 192, 0))
    return np.asarray(img)


def enhance(target: str, inputs: list[str], out: str | Path, *, detect: bool = False, device: str = "auto",
            skip_bad: bool = False, batch_size: int = 32) -> list[dict]:
    """Run ``target`` on every face of ``inputs``; returns the records written to ``enhance.json``."""
    out = Path(out)
    dev = resolve_device(device)
    model, ckpt = load_model(target, dev)
    detector = None
    if detect:
        from facenet_pytorch import MTCNN

        detector = MTCNN(keep_all=True, device="cpu")
    faces: list[Face] = []
    skipped = []
    for path in list_images(inputs):
        try:
            found = extract_faces(path, detector, model.protocol, model.scale)
        except DataError as exc:
            if not skip_bad:
                raise
            log.warning("skipped %s", exc)
            skipped.append({"file": str(path), "problem": exc.problem})
            continue
        if not found:
            log.warning("%s: no face detected", path)
            skipped.append({"file": str(path), "problem": "no face detected"})
        faces += found
    names = [f.name for f in faces]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise DataError(None, f"several inputs give the same output name {dupes}: rename them or enhance them separately")
    records = []
    if faces:
        lr = degrade.to_tensor(np.stack([f.lr for f in faces]))
        sr, points = predict(model, lr, dev, batch_size)
        sr8 = degrade.to_uint8(sr)
        for i, face in enumerate(faces):
            pts = None if points is None else points[i].numpy()
            _save_png(face.lr, out / f"{face.name}_lr.png")
            _save_png(sr8[i], out / f"{face.name}_sr.png")
            _save_png(overlay(sr8[i], pts), out / f"{face.name}_overlay.png")
            record = {"name": face.name, "source": str(face.source),
                      "face_square": {"cx": face.square[0], "cy": face.square[1], "side": face.square[2]}}
            if pts is not None:
                write_pts(out / f"{face.name}.pts", pts)
                record["landmarks_sr"] = pts.round(3).tolist()
                record["landmarks_source"] = sr_to_source(pts, face.mapping, model.scale).round(3).tolist()
            records.append(record)
    atomic_write_json(out / "enhance.json", {"model": ckpt["model"], "arch": ckpt["arch"], "detect": detect,
                                             **trained_on(model, ckpt), "faces": records, "skipped": skipped})
    return records


def trained_on(model, ckpt: dict) -> dict[str, str]:
    """What the checkpoint learned from: its protocol (crop, kernel) and, if any, the camera degradation of its
    training LR (``mixed``…); a practitioner's blurry or JPEG'd faces are served better by the latter."""
    return {"protocol": model.protocol, "trained_degradation": ckpt.get("degradation") or "none (clean bicubic LR)"}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="a checkpoint (model.pt) or a model without weights (bicubic)")
    parser.add_argument("inputs", nargs="+", help="images or folders of images")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--detect", action="store_true",
                        help="find faces with MTCNN (default: each image is one face crop)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--skip-bad", action="store_true", help="log and skip unreadable images instead of stopping")


def run(args: argparse.Namespace) -> int:
    records = enhance(args.target, args.inputs, args.out, detect=args.detect, device=args.device,
                      skip_bad=args.skip_bad)
    if not records:
        raise JasrbenchError("no face was enhanced (see the warnings above)")
    info = read_json(Path(args.out) / "enhance.json")
    print(f"{len(records)} face(s) → {args.out} (model {info['model']}, trained under protocol {info['protocol']}, "
          f"training degradation: {info['trained_degradation']})")
    return 0
