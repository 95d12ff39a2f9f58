"""Builders of small datasets in official formats, from real 300W faces (used by tests/data)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np

from jasrbench.data.landmarks import read_pts

def real_faces(w300_root: Path, subset: str = "helen/testset", n: int | None = None) -> list[tuple[Path, Path]]:
    """(image, .pts) of real 300W faces of ``subset``, sorted."""
    pts = sorted((w300_root / subset).glob("*.pts"))
    pairs = [(p.with_suffix(".jpg"), p) for p in pts if p.with_suffix(".jpg").is_file()]
    return pairs[:n] if n is not None else pairs


def copy_face(image: Path, pts: Path, folder: Path, stem: str | None = None) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or pts.stem
    img_dst, pts_dst = folder / f"{stem}{image.suffix}", folder / f"{stem}.pts"
    shutil.copyfile(image, img_dst)
    shutil.copyfile(pts, pts_dst)
    return img_dst, pts_dst


def tree_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def resample(poly: np.ndarray, n: int, *, closed: bool = False, ends: bool = True) -> np.ndarray:
    """``n`` points along a polyline, evenly in its vertex parameter."""
    pts = np.vstack([poly, poly[:1]]) if closed else poly
    m = len(pts) - 1
    if closed:
        t = np.arange(n) * m / n
    elif ends:
        t = np.linspace(0, m, n)
    else:
        t = np.linspace(0, m, n + 2)[1:-1]
    i = np.clip(np.floor(t).astype(int), 0, m - 1)
    f = (t - i)[:, None]
    return pts[i] * (1 - f) + pts[i + 1] * f


def helen194_from_68(p: np.ndarray) -> np.ndarray:
    """A 194-point HELEN-style markup resampled from a 300W 68-point shape (same group layout)."""
    parts = [
        resample(p[0:17], 41),  # jaw 0–40
        resample(p[31:36], 17),  # nose 41–57
        resample(p[48:55], 14),  # outer upper lip 58–71 (corners included)
        resample(p[[54, 55, 56, 57, 58, 59, 48]], 14, ends=False),  # outer lower lip 72–85
        resample(p[60:65], 14),  # inner upper lip 86–99
        resample(p[[64, 65, 66, 67, 60]], 14, ends=False),  # inner lower lip 100–113
        resample(p[36:42], 20, closed=True),  # eye 114–133
        resample(p[42:48], 20, closed=True),  # eye 134–153
        resample(p[17:22], 20),  # brow 154–173
        resample(p[22:27], 20),  # brow 174–193
    ]
    out = np.vstack(parts)
    assert out.shape == (194, 2)
    return out


def helen194_true_mirror() -> tuple[int, ...]:
    """The flip permutation of :func:`helen194_from_68`'s markup, by construction."""
    perm = list(range(194))

    def rev(a: int, n: int) -> None:
        for i in range(n):
            perm[a + i] = a + n - 1 - i

    rev(0, 41)
    rev(41, 17)
    rev(58, 14)
    rev(72, 14)
    rev(86, 14)
    rev(100, 14)
    for i in range(20):  # eye A(t) ↦ eye B((3 − t) mod 6): sample i ↦ (10 − i) mod 20
        perm[114 + i] = 134 + (10 - i) % 20
        perm[134 + (10 - i) % 20] = 114 + i
        perm[154 + i] = 174 + 19 - i  # brow A(t) ↦ brow B(4 − t)
        perm[174 + 19 - i] = 154 + i
    return tuple(perm)


def write_helen(root: Path, faces: list[tuple[Path, Path]], *, folders: int = 2) -> list[np.ndarray]:
    """HELEN's release layout: ``helen_k/IMAGE.jpg`` and ``annotation/N.txt`` (name, 194 'x , y')."""
    ann = root / "annotation"
    ann.mkdir(parents=True)
    shapes = []
    for n, (img, pts) in enumerate(faces, 1):
        folder = root / f"helen_{1 + (n - 1) % folders}"
        folder.mkdir(exist_ok=True)
        name = f"{img.stem}_h{n}"
        shutil.copyfile(img, folder / f"{name}.jpg")
        shape = helen194_from_68(read_pts(pts))
        shapes.append(shape.astype(np.float32))
        lines = [name] + [f"{x:.3f} , {y:.3f}" for x, y in shape]
        (ann / f"{n}.txt").write_text("\n".join(lines) + "\n")
    return shapes


AFLW_FROM_68 = {  # AFLW feature id → how to get it from a 300W 68-point shape (image-left = "Left")
    1: [17], 2: [19], 3: [21], 4: [22], 5: [24], 6: [26],
    7: [36], 8: [36, 37, 38, 39, 40, 41], 9: [39], 10: [42], 11: [42, 43, 44, 45, 46, 47], 12: [45],
    14: [31], 15: [33], 16: [35], 18: [48], 19: [62, 66], 20: [54], 21: [8],
}


def aflw21_from_68(p: np.ndarray) -> np.ndarray:
    """21 AFLW points (ids 1…21 → rows 0…20) from a 68-point shape; ears just outside the jaw ends."""
    out = np.zeros((21, 2))
    for fid, idx in AFLW_FROM_68.items():
        out[fid - 1] = p[idx].mean(axis=0)
    out[12] = p[0] + 0.15 * (p[0] - p[27])  # LeftEar
    out[16] = p[16] + 0.15 * (p[16] - p[27])  # RightEar
    return out
