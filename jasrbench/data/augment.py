"""On-the-fly batched augmentation from the prepared context crops (DESIGN §2 item 4).

The paper made 15 augmented copies per face offline (scale, rotation, flip); here the same
transforms are drawn per face per step, on the device, in one ``grid_sample`` per batch. Faces
are warped out of their 1.5× context crop (no black corners after rotation), landmarks move
with the pixels (a flip relabels them by the mirror permutation), and the LR is made from the
augmented HR by :func:`jasrbench.data.degrade.make_lr`, as the stored LR was. The identity
transform reproduces the stored HR crop exactly; all randomness comes from the generator
passed in, so a run seeded per (epoch, step) is reproducible and resumable.
"""

from __future__ import annotations

import math
import torch
import torch.nn.functional as F

from ..recipe import AugmentConfig  # the schema is torch-free (jasrbench.recipe)
from . import degrade


def random_affine(n: int, cfg: AugmentConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-face 2×2 matrices A (output offset → input offset, flip included), translations t, flip flags.

    Draws are made on the CPU generator so results do not depend on the device.
    """
    u = torch.rand(n, 5, generator=generator, dtype=torch.float64)
    scale = cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * u[:, 0]
    theta = torch.deg2rad(torch.as_tensor(cfg.rotation, dtype=torch.float64)) * (2 * u[:, 1] - 1)
    flip = u[:, 2] < cfg.flip
    shift = cfg.translate * (2 * u[:, 3:5] - 1)
    cos, sin = torch.cos(theta) / scale, torch.sin(theta) / scale
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # n×2×2
    mirror = torch.ones(n, 2, dtype=torch.float64)
    mirror[flip, 0] = -1
    a = rot * mirror.unsqueeze(1)  # A = R/s · diag(±1, 1)
    return a, shift, flip


def augment_batch(
    context: torch.Tensor,
    points: torch.Tensor,
    visible: torch.Tensor,
    cfg: AugmentConfig,
    generator: torch.Generator,
    mirror: torch.Tensor | None,
    hr_size: int = degrade.HR_SIZE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Warp a batch of context crops → (HR B×3×hr×hr float [0,1], points B×K×2, visible B×K).

    ``context``: B×3×C×C, float in [0, 1] or uint8 (converted on its device);
    ``points``: landmarks in context pixels; ``mirror``: the landmark permutation
    applied when a face is flipped. Everything after the draws happens on
    ``context``'s device without a host synchronization: the per-face transforms
    (drawn on the CPU generator) travel in one small copy, the landmark maths runs
    there in float64, and flipped faces are relabelled with ``torch.where``.
    """
    b, _, c, _ = context.shape
    dev = context.device
    a, shift, flip = random_affine(b, cfg, generator)
    # Output pixel u (centre (hr−1)/2) samples input x = c_in + A·(u − c_out) + shift·hr.
    # affine_grid works in normalized coordinates (align_corners=False): n = (p + 0.5)·2/size − 1.
    # One b×13 float64 block: theta (6), A⁻¹ (4), shift in HR px (2), flip (1).
    block = torch.cat([a * (hr_size / c), (shift * hr_size * 2 / c).unsqueeze(-1)], -1).reshape(b, 6)
    block = torch.cat([block, torch.linalg.inv(a).reshape(b, 4), shift * hr_size, flip.double().unsqueeze(-1)], -1)
    if dev.type == "cuda":
        block = block.pin_memory()
    block = block.to(dev, non_blocking=True)
    theta = block[:, :6].reshape(b, 2, 3)
    grid = F.affine_grid(theta.float(), [b, 3, hr_size, hr_size], align_corners=False)
    src = context.float().div(255) if context.dtype == torch.uint8 else context.float()
    hr = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    hr = degrade.quantize(hr)
    # Points: u = c_out + A⁻¹·(x − c_in − shift·hr).
    c_in, c_out = (c - 1) / 2, (hr_size - 1) / 2
    inv = block[:, 6:10].reshape(b, 2, 2)
    rel = points.detach().to(dev, torch.float64) - c_in - block[:, 10:12].unsqueeze(1)
    new = torch.einsum("bij,bkj->bki", inv, rel) + c_out
    vis = visible.detach().to(dev)
    if mirror is not None and cfg.flip > 0:
        perm = mirror.to(dev, torch.long)
        flipped = block[:, 12] > 0.5
        new = torch.where(flipped.view(b, 1, 1), new[:, perm], new)
        vis = torch.where(flipped.view(b, 1), vis[:, perm], vis)
    return hr, new.float(), vis


def hr_center(context: torch.Tensor, hr_size: int = degrade.HR_SIZE) -> torch.Tensor:
    """The un-augmented HR crop: the centre of the context crop."""
    off = (context.shape[-1] - hr_size) // 2
    return context[..., off : off + hr_size, off : off + hr_size]


def rotation_bound(cfg: AugmentConfig, context_factor: float) -> bool:
    """True if every transform of ``cfg`` stays inside the context crop (no black corners)."""
    worst = (abs(math.cos(math.radians(cfg.rotation))) + abs(math.sin(math.radians(cfg.rotation)))) / cfg.scale[0]
    return worst + 2 * cfg.translate <= context_factor + 1e-9
