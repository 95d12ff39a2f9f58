"""HELEN with its own 194-point annotation (Le et al., ECCV 2012) and FSRNet's split.

Layout: images anywhere under the root (indexed by stem) and ``annotation/1.txt`` …
``2330.txt`` (image stem, then 194 lines ``x , y``, used as 0-based pixel centres). Split as
FSRNet (Chen et al. CVPR 2018): the last 50 annotation files in numeric order are the test set,
decided before any bad file is skipped so a skip never moves a face between splits. The release
has no flip permutation; :func:`estimate_mirror` derives one from the mean training shape and
accepts it only if it is an involution (the summary records that it was estimated).

194-point markup, 0-based ranges: jaw 0–40, nose 41–57, outer upper lip 58–71, outer lower lip
72–85, inner lips 86–113, eyes 114–133 and 134–153, brows 154–173 and 174–193.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..errors import DataError
from .images import IMAGE_SUFFIXES
from .records import BadInput, DatasetPlan, FaceRecord, check_unique_names

NUM_POINTS = 194
TEST_FACES = 50
OFFICIAL_FACES = 2330

# (first, last + 1) index ranges: groups that mirror onto themselves, and pairs that swap.
SELF_GROUPS: tuple[tuple[int, int], ...] = ((0, 41), (41, 58), (58, 72), (72, 86), (86, 114))
PAIRED_GROUPS: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = (((114, 134), (134, 154)),
                                                                      ((154, 174), (174, 194)))


def read_annotation(path: str | Path, expected_points: int = NUM_POINTS) -> tuple[str, np.ndarray]:
    """Read one HELEN annotation file → (image name, float32 194×2 points as given)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read annotation file ({exc})") from exc
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise DataError(path, "empty annotation file")
    name = lines[0]
    if _parse_xy(name) is not None:
        raise DataError(path, f"first line must be the image name, found coordinates {name!r}")
    points = []
    for i, ln in enumerate(lines[1:], 2):
        xy = _parse_xy(ln)
        if xy is None:
            raise DataError(path, f"line {i} {ln!r} is not 'x , y' with two numbers")
        if not all(math.isfinite(v) for v in xy):
            raise DataError(path, f"line {i} has a non-finite coordinate ({ln!r})")
        points.append(xy)
    if len(points) != expected_points:
        raise DataError(path, f"expected {expected_points} points, found {len(points)}")
    return name, np.asarray(points, dtype=np.float32)


def _parse_xy(line: str) -> tuple[float, float] | None:
    parts = line.replace(",", " ").split()
    if len(parts) != 2:
        return None
    try:
        return float(parts[0]), float(parts[1])
    except ValueError:
        return None


def annotation_order(path: Path) -> tuple[int, int, str]:
    """Sort key of annotation files: numbered files by number, then the others by name."""
    stem = path.stem
    return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)


def find_annotation_dir(raw: Path) -> Path:
    """``raw/annotation`` (or a nested ``annotation/`` folder, as some archives extract)."""
    direct = raw / "annotation"
    for candidate in (direct / "annotation", direct):
        if candidate.is_dir() and any(candidate.glob("*.txt")):
            return candidate
    found = sorted(p for p in raw.rglob("annotation") if p.is_dir() and any(p.glob("*.txt")))
    if found:
        return found[0]
    raise DataError(raw, "no HELEN annotation folder: expected annotation/1.txt … (image name, then 194 'x , y' lines)")


def index_images(raw: Path, exclude: Path) -> dict[str, list[Path]]:
    """Every image under ``raw`` (outside ``exclude``) by stem."""
    out: dict[str, list[Path]] = {}
    exclude = exclude.resolve()
    for p in sorted(raw.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith("."):
            if exclude in p.resolve().parents:
                continue
            out.setdefault(p.stem, []).append(p)
    return out


def _normalized(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(axis=0)
    scale = np.sqrt((centred**2).sum(axis=1).mean())
    return centred / max(scale, 1e-12)


def estimate_mirror(shapes: list[np.ndarray]) -> tuple[tuple[int, ...] | None, str]:
    """The horizontal-flip permutation of the 194-point markup, from the mean shape of ``shapes``.

    Returns (permutation or None, how it was obtained / why it was refused).
    """
    if not shapes:
        return None, "no training faces to estimate it from"
    mean = np.mean([_normalized(s.astype(np.float64)) for s in shapes], axis=0)
    flipped = mean * np.array([-1.0, 1.0])
    perm = np.arange(len(mean))

    def assign(src: range, dst: range) -> None:
        cost = ((flipped[list(src)][:, None, :] - mean[list(dst)][None, :, :]) ** 2).sum(-1)
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols, strict=True):
            perm[src[r]] = dst[c]

    for a, b in SELF_GROUPS:
        assign(range(a, b), range(a, b))
    for (a0, a1), (b0, b1) in PAIRED_GROUPS:
        assign(range(a0, a1), range(b0, b1))
        assign(range(b0, b1), range(a0, a1))
    if not np.array_equal(perm[perm], np.arange(len(perm))):
        return None, "the assignment on the mean shape is not an involution (flip augmentation unavailable)"
    return tuple(int(i) for i in perm), f"estimated from the mean shape of {len(shapes)} training faces"


def read_helen(raw: str | Path, bad: BadInput) -> DatasetPlan:
    """Read the HELEN release under ``raw`` into FSRNet's ``train``/``test`` splits."""
    raw = Path(raw)
    if not raw.is_dir():
        raise DataError(raw, "HELEN folder not found")
    ann_dir = find_annotation_dir(raw)
    files = sorted((p for p in ann_dir.glob("*.txt") if not p.name.startswith(".")), key=annotation_order)
    images = index_images(raw, ann_dir)
    if not images:
        raise DataError(raw, "no HELEN images found (expected helen_1/ … helen_5/ with the photographs)")
    test_files = set(files[-TEST_FACES:])
    splits: dict[str, list[FaceRecord]] = {"train": [], "test": []}
    for f in files:
        try:
            name, points = read_annotation(f)
            candidates = images.get(name, [])
            if not candidates:
                raise DataError(f, f"names image {name!r}, which is not under {raw}")
            if len(candidates) > 1:
                raise DataError(f, f"image {name!r} is ambiguous: {', '.join(map(str, candidates))}")
        except DataError as exc:
            bad.handle(exc)
            continue
        rec = FaceRecord(name=name, image=candidates[0], points=points,
                         visible=np.ones(NUM_POINTS, dtype=bool), source=f)
        splits["test" if f in test_files else "train"].append(rec)
    unavailable = {}
    notes = []
    if len(files) <= TEST_FACES:
        unavailable["train"] = f"needs more than {TEST_FACES} annotation files, {ann_dir} has {len(files)}"
        del splits["train"]
    splits = {k: check_unique_names(v, bad, f"HELEN {k}") for k, v in splits.items()}
    if len(files) != OFFICIAL_FACES:
        notes.append(f"{len(files)} annotation files, the release has {OFFICIAL_FACES}: the test split is "
                     f"the last {TEST_FACES} of these, which is FSRNet's only for the complete release")
    mirror, how = estimate_mirror([r.points for r in splits.get("train", [])])
    notes.append(f"mirror permutation: {how}")
    return DatasetPlan(
        dataset="helen", num_points=NUM_POINTS, mirror=mirror, splits=splits, unavailable=unavailable,
        training_splits=("train",), source="HELEN release (annotation/N.txt, 194 points)",
        info={"annotation_files": len(files), "official_faces": OFFICIAL_FACES,
              "split_rule": f"last {TEST_FACES} annotation files by number = test (FSRNet)",
              "mirror_permutation_source": how},
        split_info={k: {"faces_listed": sum(1 for f in files if (f in test_files) == (k == "test"))}
                    for k in splits},
        notes=notes,
    )
