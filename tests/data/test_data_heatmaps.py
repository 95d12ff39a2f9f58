"""Heatmaps as the authors encode them (DESIGN §2 item 5), on the real prepared 300W points."""

from __future__ import annotations

import pytest
import torch

from jasrbench.data.heatmaps import THRESHOLD, cell_centres, decode, encode
from jasrbench.data.split import load_split


@pytest.fixture(scope="module")
def real_points(prepared_300w):
    split = load_split(prepared_300w.out / "common.npz")
    return torch.from_numpy(split.landmarks), torch.from_numpy(split.visible)


def test_round_trip_on_real_points_is_under_half_a_pixel(real_points):
    points, visible = real_points
    maps, mask = encode(points, visible)
    assert maps.shape == (554, 69, 16, 16) and mask.all()
    decoded, _ = decode(maps)
    error = (decoded - points).norm(dim=-1)
    print(f"\nheatmap round trip on {error.numel()} real points: mean {error.mean():.3f} px, max {error.max():.3f} px")
    assert error.mean() < 0.5
    assert error.max() < 1.0


def test_cell_centres_sit_at_8i_plus_3_5():
    assert torch.equal(cell_centres(16, 8), torch.arange(16) * 8 + 3.5)
    # A point exactly on cell (row 5, column 2) peaks there with value 1 and decodes back exactly.
    pt = torch.tensor([[[2 * 8 + 3.5, 5 * 8 + 3.5]]])
    maps, _ = encode(pt)
    assert maps[0, 0, 5, 2] == 1.0 and maps[0, 0].argmax() == 5 * 16 + 2
    decoded, score = decode(maps)
    torch.testing.assert_close(decoded, pt)
    assert score.item() == 1.0


def test_small_values_are_zeroed_and_background_is_one_minus_max(real_points):
    points, visible = real_points
    maps, _ = encode(points[:32], visible[:32])
    fg = maps[:, :68]
    assert ((fg == 0) | (fg >= THRESHOLD)).all()
    assert (fg == 0).any()  # far cells really are cut off
    torch.testing.assert_close(maps[:, 68], 1 - fg.amax(dim=1))
    # Without the cut, the Gaussian (σ = 4) reaches every cell with a value below 0.01 somewhere.
    d2 = (cell_centres(16, 8).view(1, 16) - points[:1, :1, 0:1]) ** 2
    assert torch.exp(-d2 / 32).min() < THRESHOLD


def test_invisible_and_outside_points_are_masked_and_empty(real_points):
    points, visible = real_points
    pts = points[:4].clone()
    vis = visible[:4].clone()
    vis[0, 30] = False  # not annotated
    pts[1, 8] = torch.tensor([-3.0, 60.0])  # left of the image
    pts[2, 57] = torch.tensor([64.0, 128.5])  # below it
    maps, mask = encode(pts, vis)
    assert mask.shape == (4, 69) and mask[:, 68].all()
    for b, k in ((0, 30), (1, 8), (2, 57)):
        assert not mask[b, k]
        assert maps[b, k].abs().sum() == 0
    assert mask.sum() == 4 * 69 - 3
    # The background ignores the masked maps.
    torch.testing.assert_close(maps[:, 68], 1 - maps[:, :68].amax(dim=1))
