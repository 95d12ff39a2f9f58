"""Helpers for the metric tests: real faces (300W common test set, verify/) as HR crops."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from jasrbench.data.crop import crop_face, lfw_face_box
from jasrbench.data.images import load_rgb
from jasrbench.data.landmarks import landmark_box, read_pts
from jasrbench.data.lfw import image_name, image_path, read_pairs


@dataclass
class Faces:
    hr: np.ndarray  # N×128×128×3 uint8
    points: np.ndarray  # N×68×2 HR pixel centres
    boxes: np.ndarray  # N×4 landmark min/max in HR pixels
    names: list[str]


def common_test_files(w300_root: Path) -> list[Path]:
    """The 554 faces of 300W's common test set (LFPW test + HELEN test), sorted."""
    files = sorted((w300_root / "lfpw" / "testset").glob("*.pts")) + sorted((w300_root / "helen" / "testset").glob("*.pts"))
    assert len(files) == 554, f"expected the 554 common-test faces, found {len(files)}"
    return files


def load_faces(files: list[Path]) -> Faces:
    hrs, pts, boxes = [], [], []
    with one_torch_thread():
        for f in files:
            p = read_pts(f)
            hr, _, mapping = crop_face(load_rgb(f.with_suffix(".jpg")), landmark_box(p))
            q = mapping.apply(p)
            hrs.append(hr)
            pts.append(q)
            boxes.append(landmark_box(q))
    return Faces(np.stack(hrs), np.stack(pts).astype(np.float32), np.stack(boxes),
                 [f"{f.parent.parent.name}/{f.stem}" for f in files])


@dataclass
class VerifyFaces:
    hr: np.ndarray  # M×128×128×3 uint8, the faces used by the pairs
    names: list[str]  # LFW image names, NAME_0001
    pairs: list  # read_pairs output


def load_verify_faces(verify_root: Path) -> VerifyFaces:
    """HR crops (LFW central-box rule) of every image that verify/pairs.txt uses."""
    pairs = read_pairs(verify_root / "pairs.txt")
    keys = sorted({(p.name1, p.index1) for p in pairs} | {(p.name2, p.index2) for p in pairs})
    crops = []
    with one_torch_thread():
        for name, index in keys:
            image = load_rgb(image_path(verify_root, name, index))
            crops.append(crop_face(image, lfw_face_box(*image.shape[:2]))[0])
    return VerifyFaces(np.stack(crops), [image_name(n, i) for n, i in keys], pairs)


@contextlib.contextmanager
def one_torch_thread():
    """Thousands of tiny torch resizes: on a busy 2-core machine torch's thread pool makes
    them ~30× slower than one thread (measured: 66 s vs 2.3 s for the verify crops)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
