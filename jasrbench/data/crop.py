"""Square face crops (DESIGN §2 item 1): one rule for every dataset.

A crop is a square of side ``margin × max(w, h)`` of the face box, centred on it, resized to HR
128×128; the margin belongs to the degradation protocol (:mod:`jasrbench.data.protocols`;
``clean``'s ``MARGIN = 1.3`` keeps brows to chin, ear to ear). Crops are rendered through a
larger *context* square (same centre and pixel scale, × ``CONTEXT_FACTOR``) so training can
rotate and scale on the fly without black corners; the HR crop is its central 128×128. The
outside of the photograph is black, resampling is antialiased bicubic, and the pixel mapping
is returned so landmarks move with the pixels. (The recognizers' face windows are expressed in
1.3 crops; evaluation rescales them to a split's margin.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .degrade import HR_SIZE, resize_bicubic
from .protocols import CLEAN_MARGIN

MARGIN = CLEAN_MARGIN  # the clean protocol's margin (the paper protocol's: protocols.PAPER_MARGIN)
CONTEXT_FACTOR = 1.5
LFW_BOX_SCALE = 2.2  # LFW images are 2.2 × the Viola–Jones face box


@dataclass(frozen=True)
class SquareMap:
    """Pixel-centre mapping source → crop: ``out = (src − origin + 0.5) · scale − 0.5``."""

    origin_x: float
    origin_y: float
    scale: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float64)
        out = np.empty_like(pts)
        out[..., 0] = (pts[..., 0] - self.origin_x + 0.5) * self.scale - 0.5
        out[..., 1] = (pts[..., 1] - self.origin_y + 0.5) * self.scale - 0.5
        return out.astype(np.float32)

    def shifted(self, offset: float) -> SquareMap:
        """The same mapping for a crop whose pixel (0, 0) is this crop's (offset, offset)."""
        return SquareMap(self.origin_x + offset / self.scale, self.origin_y + offset / self.scale, self.scale)


def face_square(box: np.ndarray, margin: float = MARGIN) -> tuple[float, float, float]:
    """Centre (x, y) and side of the crop square of a face box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = margin * max(x1 - x0, y1 - y0)
    if not side > 0:
        raise ValueError(f"degenerate face box {box}")
    return (x0 + x1) / 2, (y0 + y1) / 2, side


def render_square(image: np.ndarray, cx: float, cy: float, side: float, out_size: int) -> tuple[np.ndarray, SquareMap]:
    """Crop the square (centre, side) from an H×W×3 uint8 image → out_size² uint8 and its mapping."""
    h, w = image.shape[:2]
    side_px = max(1, int(round(side)))
    x0 = int(round(cx - side_px / 2))
    y0 = int(round(cy - side_px / 2))
    canvas = np.zeros((side_px, side_px, 3), dtype=np.uint8)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side_px, w), min(y0 + side_px, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    t = torch.from_numpy(canvas).permute(2, 0, 1)[None].float().div(255)
    out = resize_bicubic(t, (out_size, out_size))
    crop = out.mul(255).round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    return crop, SquareMap(float(x0), float(y0), out_size / side_px)


def context_size(hr_size: int = HR_SIZE, factor: float = CONTEXT_FACTOR) -> int:
    """Side of the context crop: even, so the HR crop sits exactly in its centre."""
    size = int(round(hr_size * factor))
    return size + (size - hr_size) % 2


def crop_face(
    image: np.ndarray,
    box: np.ndarray,
    *,
    margin: float = MARGIN,
    hr_size: int = HR_SIZE,
    context_factor: float = CONTEXT_FACTOR,
) -> tuple[np.ndarray, np.ndarray, SquareMap]:
    """(HR crop, context crop, source → HR mapping) of the face with ``box``."""
    cx, cy, side = face_square(box, margin)
    c = context_size(hr_size, context_factor)
    context, cmap = render_square(image, cx, cy, side * c / hr_size, c)
    off = (c - hr_size) // 2
    hr = np.ascontiguousarray(context[off : off + hr_size, off : off + hr_size])
    return hr, context, cmap.shifted(off)


def lfw_face_box(height: int, width: int, box_scale: float = LFW_BOX_SCALE) -> np.ndarray:
    """The face box of an LFW-layout image: its central 1/``box_scale`` square (Viola–Jones box)."""
    side = min(height, width) / box_scale
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], dtype=np.float32)
