"""On-the-fly augmentation on real 300W faces: pixels and landmarks move together."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jasrbench.data import degrade
from jasrbench.data.augment import AugmentConfig, augment_batch, hr_center, rotation_bound
from jasrbench.data.crop import crop_face
from jasrbench.data.heatmaps import decode, encode
from jasrbench.data.images import load_rgb
from jasrbench.data.landmarks import MIRROR_68, landmark_box, read_pts


@pytest.fixture(scope="module")
def faces(w300_root):
    """Eight real common-test faces: context crops (uint8) and context-pixel landmarks."""
    files = sorted((w300_root / "helen" / "testset").glob("*.pts"))[:8]
    contexts, points = [], []
    for f in files:
        pts = read_pts(f)
        hr, context, mapping = crop_face(load_rgb(f.with_suffix(".jpg")), landmark_box(pts))
        off = (context.shape[0] - hr.shape[0]) / 2
        contexts.append(context)
        points.append(mapping.apply(pts) + off)
    return np.stack(contexts), np.stack(points).astype(np.float32)


def _run(faces, cfg, seed=0):
    context, points = faces
    ctx = degrade.to_tensor(context)
    vis = torch.ones(points.shape[:2], dtype=torch.bool)
    return augment_batch(ctx, torch.from_numpy(points), vis, cfg, torch.Generator().manual_seed(seed),
                         torch.tensor(MIRROR_68))


def test_identity_transform_reproduces_the_hr_crop_exactly(faces):
    cfg = AugmentConfig(scale=(1.0, 1.0), rotation=0.0, flip=0.0)
    hr, pts, vis = _run(faces, cfg)
    expected = hr_center(degrade.to_tensor(faces[0]))
    assert torch.equal(hr, expected)
    off = (faces[0].shape[1] - 128) / 2
    np.testing.assert_allclose(pts.numpy(), faces[1] - off, atol=1e-4)
    assert vis.all()


def test_landmarks_follow_the_pixels(faces):
    """Warp heatmaps of the true points with the image: decoding them gives the transformed points."""
    cfg = AugmentConfig(scale=(0.9, 1.1), rotation=30.0, flip=0.5, translate=0.03)
    context, points = faces
    # Render each face's points as 4-px Gaussians in a 192² "image", warp it like the face.
    c = context.shape[1]
    maps, _ = encode(torch.from_numpy(points), size=c, stride=1, sigma=2.0, image_size=c)
    hm = maps[:, :68]
    vis = torch.ones(points.shape[:2], dtype=torch.bool)
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    warped = []
    for k in range(0, 68, 3):  # three maps at a time through the 3-channel warp
        chans = hm[:, k : k + 3]
        if chans.shape[1] < 3:
            chans = torch.cat([chans, torch.zeros(len(hm), 3 - chans.shape[1], c, c)], 1)
        out, pts, _ = augment_batch(chans, torch.from_numpy(points), vis, cfg, g(), torch.tensor(MIRROR_68))
        warped.append(out[:, : min(3, 68 - k)])
    warped = torch.cat(warped, 1)
    # grid_sample of heatmaps quantizes to 8 bits (augment_batch returns images): decode still works.
    found, _ = decode(torch.cat([warped, torch.zeros_like(warped[:, :1])], 1), stride=1, window=7)
    # pts are relabelled by the mirror permutation for flipped faces; found is not: undo the relabelling.
    # The flip draws are the generator's third uniform per face (random_affine).
    u = torch.rand(len(hm), 5, generator=g(), dtype=torch.float64)
    flipped = u[:, 2] < cfg.flip
    expect = pts.clone()
    inv = torch.argsort(torch.tensor(MIRROR_68))
    expect[flipped] = pts[flipped][:, inv]
    inside = ((expect > 4) & (expect < 123)).all(-1)
    err = (found - expect).norm(dim=-1)[inside]
    assert flipped.any() and (~flipped).any()
    assert err.median() < 0.3 and err.max() < 1.0, err.max()


def test_flip_maps_left_eye_to_right_eye(faces):
    cfg = AugmentConfig(scale=(1.0, 1.0), rotation=0.0, flip=1.0)
    hr, pts, _ = _run(faces, cfg)
    # The subject's right eye (points 36–41) is on the image's left before and after the flip.
    assert (pts[:, 36:42, 0].mean(1) < pts[:, 42:48, 0].mean(1)).all()
    plain, plain_pts, _ = _run(faces, AugmentConfig(scale=(1.0, 1.0), rotation=0.0, flip=0.0))
    assert torch.equal(hr, plain.flip(-1))
    # The flipped right eye is the mirror image of the unflipped left eye, point by point.
    src = plain_pts[:, [45, 44, 43, 42, 47, 46]]
    expected = torch.stack([127 - src[..., 0], src[..., 1]], -1)
    np.testing.assert_allclose(pts[:, 36:42].numpy(), expected.numpy(), atol=1e-4)


def test_same_generator_same_batch(faces):
    cfg = AugmentConfig()
    a = _run(faces, cfg, seed=3)
    b = _run(faces, cfg, seed=3)
    c = _run(faces, cfg, seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_rotation_bound():
    assert rotation_bound(AugmentConfig(scale=(1.0, 1.1), rotation=20.0), 1.5)
    assert not rotation_bound(AugmentConfig(scale=(0.8, 1.0), rotation=45.0), 1.5)
