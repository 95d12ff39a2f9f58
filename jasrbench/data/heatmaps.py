"""Landmark heatmaps: encoding as the authors' code does it, and decoding (DESIGN §2 item 5, §3).

Encoding (JASRNet's released code): one Gaussian per point, σ = 4 HR pixels, on a grid whose cell
``i`` sits at ``i·stride + (stride − 1)/2`` HR pixels, values below 0.01 set to 0, plus a
background channel ``1 − max``; invisible or outside points get an all-zero map and are masked
out of the loss (background always counts). Decoding: argmax cell, then a soft-argmax in a 9×9
window, mapped back by the same rule; batched. Coordinates are 0-based pixel centres (x, y).

``encode(..., one_based=True)`` switches to the authors' convention (benchmarks/fidelity_jasrnet.py,
results/fidelity/): their code kept the ``.pts`` files' 1-based (MATLAB) coordinates, so each target sits
1 HR pixel right of and below ours, and a point counts as inside for 0 ≤ x, y ≤ size (their
``apply_bound``). Off by default.
"""

from __future__ import annotations

import torch

SIGMA = 4.0
THRESHOLD = 0.01
WINDOW = 9


def cell_centres(size: int, stride: int, device=None) -> torch.Tensor:
    """HR-pixel coordinate of each grid cell's centre."""
    return torch.arange(size, device=device, dtype=torch.float32) * stride + (stride - 1) / 2


def inside_image(points: torch.Tensor, image_size: int) -> torch.Tensor:
    """B×K bool: the point lies on the image (0 ≤ x, y ≤ size − 1)."""
    return ((points >= 0) & (points <= image_size - 1)).all(dim=-1)


def encode(
    points: torch.Tensor,
    visible: torch.Tensor | None = None,
    *,
    size: int = 16,
    stride: int = 8,
    sigma: float = SIGMA,
    threshold: float = THRESHOLD,
    image_size: int | None = None,
    one_based: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points B×K×2 (HR px) → heatmaps B×(K+1)×size×size and loss mask B×(K+1).

    ``visible`` (B×K bool) marks annotated points; points outside the image
    (``image_size``, default ``size·stride``) are masked too. ``one_based``: the authors' convention
    (the 0-based ``points`` + 1 are encoded, inside means 0 ≤ x, y ≤ ``image_size``; see the module doc).
    """
    if points.dim() != 3 or points.shape[-1] != 2:
        raise ValueError(f"expected B×K×2 points, got shape {tuple(points.shape)}")
    points = points.float()
    b, k, _ = points.shape
    image_size = size * stride if image_size is None else image_size
    if one_based:
        points = points + 1
        valid = ((points >= 0) & (points <= image_size)).all(dim=-1) & torch.isfinite(points).all(dim=-1)
    else:
        valid = inside_image(points, image_size) & torch.isfinite(points).all(dim=-1)
    if visible is not None:
        valid = valid & visible.to(device=points.device, dtype=torch.bool)
    centres = cell_centres(size, stride, points.device)
    pts = torch.nan_to_num(points)
    gx = torch.exp(-((centres.view(1, 1, size) - pts[..., 0:1]) ** 2) / (2 * sigma**2))  # B×K×W
    gy = torch.exp(-((centres.view(1, 1, size) - pts[..., 1:2]) ** 2) / (2 * sigma**2))  # B×K×H
    maps = gy.unsqueeze(-1) * gx.unsqueeze(-2)  # B×K×H×W
    maps = torch.where(maps < threshold, torch.zeros_like(maps), maps)
    maps = maps * valid.view(b, k, 1, 1)
    background = 1 - maps.amax(dim=1, keepdim=True) if k else torch.ones(b, 1, size, size)
    heatmaps = torch.cat([maps, background], dim=1)
    mask = torch.cat([valid, torch.ones(b, 1, dtype=torch.bool, device=points.device)], dim=1)
    return heatmaps, mask


def decode(
    heatmaps: torch.Tensor,
    *,
    stride: int = 8,
    num_points: int | None = None,
    window: int = WINDOW,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps B×C×h×w → points B×K×2 (HR px) and peak scores B×K.

    ``num_points`` defaults to C − 1 (the last channel is the background).
    """
    if heatmaps.dim() != 4:
        raise ValueError(f"expected B×C×h×w heatmaps, got shape {tuple(heatmaps.shape)}")
    hm = heatmaps.detach().float()
    k = hm.shape[1] - 1 if num_points is None else num_points
    hm = hm[:, :k]
    b, _, h, w = hm.shape
    flat = hm.reshape(b, k, h * w)
    scores, idx = flat.max(dim=-1)
    iy, ix = idx // w, idx % w
    r = window // 2
    offsets = torch.arange(-r, r + 1, device=hm.device)
    ys = iy.unsqueeze(-1) + offsets  # B×K×window
    xs = ix.unsqueeze(-1) + offsets
    yv = (ys >= 0) & (ys < h)
    xv = (xs >= 0) & (xs < w)
    gather_idx = ys.clamp(0, h - 1).unsqueeze(-1) * w + xs.clamp(0, w - 1).unsqueeze(-2)  # B×K×win×win
    vals = flat.gather(-1, gather_idx.reshape(b, k, -1)).reshape(b, k, window, window)
    weights = vals.clamp_min(0) * (yv.unsqueeze(-1) & xv.unsqueeze(-2))
    total = weights.sum(dim=(-2, -1))
    safe = total.clamp_min(1e-12)
    cy = (weights.sum(dim=-1) * ys).sum(dim=-1) / safe
    cx = (weights.sum(dim=-2) * xs).sum(dim=-1) / safe
    # An all-zero window (a flat map) falls back to the argmax cell.
    cy = torch.where(total > 0, cy, iy.float())
    cx = torch.where(total > 0, cx, ix.float())
    half = (stride - 1) / 2
    points = torch.stack([cx * stride + half, cy * stride + half], dim=-1)
    return points, scores
