"""Landmark files and geometry: ``.pts`` I/O, face boxes, the 68-point mirror permutation.

``.pts`` files come in two styles (DESIGN §2): iBUG's, with a
``version: 1 / n_points: N / { … }`` header, and bare ``x y`` lines. Both hold
1-based pixel-centre coordinates (MATLAB convention); :func:`read_pts` returns
0-based pixel centres (subtracts 1), the convention of the whole suite.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ..errors import DataError

_HEADER_KEY = re.compile(r"^\s*([A-Za-z_]+)\s*:\s*(.*?)\s*$")


def read_pts(path: str | Path, expected_points: int | None = 68) -> np.ndarray:
    """Read a ``.pts`` file (with or without header) → float32 K×2, 0-based (x, y).

    Raises :class:`DataError` naming the file for a missing file, a wrong point
    count, a malformed line, or non-finite coordinates.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "landmark file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read landmark file ({exc})") from exc
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    declared = None
    body = lines
    if lines and (lines[0].lower().startswith("version") or "{" in lines):
        header: dict[str, str] = {}
        try:
            open_at = lines.index("{")
            close_at = lines.index("}", open_at)
        except ValueError:
            raise DataError(path, "header present but no '{ … }' block around the points") from None
        for ln in lines[:open_at]:
            match = _HEADER_KEY.match(ln)
            if not match:
                raise DataError(path, f"malformed header line {ln!r}")
            header[match.group(1).lower()] = match.group(2)
        if "n_points" in header:
            try:
                declared = int(header["n_points"])
            except ValueError:
                raise DataError(path, f"n_points is not an integer: {header['n_points']!r}") from None
        body = lines[open_at + 1 : close_at]
    points = []
    for i, ln in enumerate(body, 1):
        parts = ln.replace(",", " ").split()
        if len(parts) != 2:
            raise DataError(path, f"point line {i} {ln!r} does not hold exactly two numbers")
        try:
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise DataError(path, f"point line {i} {ln!r} is not numeric") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise DataError(path, f"point line {i} has a non-finite coordinate ({ln!r})")
        points.append((x, y))
    if declared is not None and declared != len(points):
        raise DataError(path, f"header declares {declared} points but the file holds {len(points)}")
    if expected_points is not None and len(points) != expected_points:
        raise DataError(path, f"expected {expected_points} points, found {len(points)}")
    return np.asarray(points, dtype=np.float32).reshape(-1, 2) - 1.0


def write_pts(path: str | Path, points: np.ndarray) -> None:
    """Write 0-based points as an iBUG ``.pts`` file (1-based, with header)."""
    from ..files import atomic_write_text

    pts = np.asarray(points, dtype=np.float64) + 1.0
    lines = ["version: 1", f"n_points: {len(pts)}", "{"]
    lines += [f"{x:.6f} {y:.6f}" for x, y in pts]
    lines.append("}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def landmark_box(points: np.ndarray, visible: np.ndarray | None = None) -> np.ndarray:
    """Tight box (x0, y0, x1, y1) of the (visible) points: landmark min/max."""
    pts = np.asarray(points, dtype=np.float64)
    if visible is not None:
        pts = pts[np.asarray(visible, dtype=bool)]
    if len(pts) == 0:
        raise ValueError("no visible points to make a box from")
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return np.array([x0, y0, x1, y1], dtype=np.float32)


# 68-point iBUG/300W markup, 0-based: the index each point maps to under a
# horizontal flip. Jaw 0–16, brows 17–26, nose bridge 27–30, nostrils 31–35,
# eyes 36–47, outer lip 48–59, inner lip 60–67.
MIRROR_68: tuple[int, ...] = (
    16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,  # jaw
    26, 25, 24, 23, 22, 21, 20, 19, 18, 17,  # brows
    27, 28, 29, 30,  # nose bridge
    35, 34, 33, 32, 31,  # nostrils
    45, 44, 43, 42, 47, 46,  # right eye ← left eye
    39, 38, 37, 36, 41, 40,  # left eye ← right eye
    54, 53, 52, 51, 50, 49, 48,  # outer upper lip
    59, 58, 57, 56, 55,  # outer lower lip
    64, 63, 62, 61, 60,  # inner upper lip
    67, 66, 65,  # inner lower lip
)


def flip_points(points: np.ndarray, width: int, mirror: tuple[int, ...] | np.ndarray) -> np.ndarray:
    """Landmarks of the horizontally flipped image: x ↦ width − 1 − x, then relabel."""
    pts = np.asarray(points).copy()
    pts[..., 0] = width - 1 - pts[..., 0]
    return pts[..., list(mirror), :]
