"""Real faces for the metric tests: HR crops of the 300W common test set and of the verify set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

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
    for f in files:
        p = read_pts(f)
        hr, _, mapping = crop_face(load_rgb(f.with_suffix(".jpg")), landmark_box(p))
        q = mapping.apply(p)
        hrs.append(hr)
        pts.append(q)
        boxes.append(landmark_box(q))
    return Faces(np.stack(hrs), np.stack(pts).astype(np.float32), np.stack(boxes), [f"{f.parent.parent.name}/{f.stem}" for f in files])


@pytest.fixture(scope="session")
def common_faces(w300_root) -> Faces:
    """64 real common-test faces spread over LFPW and HELEN (every ~9th face)."""
    files = common_test_files(w300_root)
    pick = np.linspace(0, len(files) - 1, 64).round().astype(int)
    return load_faces([files[i] for i in pick])


@dataclass
class VerifyFaces:
    hr: np.ndarray  # M×128×128×3 uint8, the faces used by the pairs
    names: list[str]  # LFW image names, NAME_0001
    pairs: list  # read_pairs output


@pytest.fixture(scope="session")
def verify_faces(verify_root) -> VerifyFaces:
    """HR crops (LFW central-box rule) of every image that verify/pairs.txt uses."""
    pairs = read_pairs(verify_root / "pairs.txt")
    keys = sorted({(p.name1, p.index1) for p in pairs} | {(p.name2, p.index2) for p in pairs})
    crops = []
    for name, index in keys:
        image = load_rgb(image_path(verify_root, name, index))
        crops.append(crop_face(image, lfw_face_box(*image.shape[:2]))[0])
    return VerifyFaces(np.stack(crops), [image_name(n, i) for n, i in keys], pairs)
