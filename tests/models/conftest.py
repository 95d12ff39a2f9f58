"""Fixtures of the model tests: two real 300W test faces as a training batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jasrbench.data import degrade
from jasrbench.data.crop import crop_face
from jasrbench.data.images import load_rgb
from jasrbench.data.landmarks import landmark_box, read_pts


@pytest.fixture(scope="module")
def faces(w300_root) -> dict:
    """Two real 300W test faces: HR 128×128, LR 16×16, 68 landmarks (HR pixels), all visible."""
    hrs, points = [], []
    for stem in ("lfpw/testset/image_0001", "helen/testset/2968560214_1"):
        image_path = w300_root / f"{stem}.jpg"
        if not image_path.exists():
            image_path = sorted((w300_root / stem.rsplit("/", 1)[0]).glob("*.jpg"))[len(hrs)]
        pts = read_pts(image_path.with_suffix(".pts"))
        hr, _, mapping = crop_face(load_rgb(image_path), landmark_box(pts))
        hrs.append(hr)
        points.append(mapping.apply(pts))
    hr = degrade.to_tensor(np.stack(hrs))
    landmarks = torch.from_numpy(np.stack(points)).float()
    assert hr.shape == (2, 3, 128, 128)
    return {
        "lr": degrade.make_lr(hr),
        "hr": hr,
        "landmarks": landmarks,
        "visible": torch.ones(landmarks.shape[:2], dtype=torch.bool),
    }
