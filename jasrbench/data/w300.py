"""300W in its official layout (DESIGN §2): subsets, splits, and what is missing.

Layout: ``lfpw/{trainset,testset}``, ``helen/{trainset,testset}``, ``afw/``, ``ibug/`` under one
root, each image beside its 68-point ``.pts``. Splits: ``train`` = LFPW train + HELEN train +
AFW (811 + 2,000 + 337), ``common`` = LFPW test + HELEN test (224 + 330 = 554), ``challenge`` =
iBUG (135), ``full`` = common + challenge (689). A test split needs all its subsets (a partial
one is comparable with nobody's), so without ``ibug/`` ``challenge`` and ``full`` are reported
unavailable; ``train`` is built from the training subsets present, and the summary names the
missing ones. Face names: ``SUBSET/STEM``. Orphan ``.pts`` or images, two images for one
``.pts`` and empty subset folders are errors naming the file or folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .images import IMAGE_SUFFIXES
from .landmarks import MIRROR_68, read_pts
from .records import BadInput, DatasetPlan, FaceRecord, check_unique_names

# subset folder -> (display name, official number of faces)
SUBSETS: dict[str, tuple[str, int]] = {
    "lfpw/trainset": ("LFPW train", 811),
    "helen/trainset": ("HELEN train", 2000),
    "afw": ("AFW", 337),
    "lfpw/testset": ("LFPW test", 224),
    "helen/testset": ("HELEN test", 330),
    "ibug": ("iBUG", 135),
}
SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("lfpw/trainset", "helen/trainset", "afw"),
    "common": ("lfpw/testset", "helen/testset"),
    "challenge": ("ibug",),
    "full": ("lfpw/testset", "helen/testset", "ibug"),
}
# Splits that may be built from the subsets present (the others need all of theirs).
PARTIAL_OK = frozenset({"train"})


def _image_suffix(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_subset(folder: Path, subset: str, bad: BadInput) -> list[FaceRecord]:
    """The faces of one subset folder (images beside ``.pts``), sorted by file stem."""
    entries = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    pts_files = {p.stem: p for p in entries if p.suffix.lower() == ".pts"}
    images: dict[str, list[Path]] = {}
    for p in entries:
        if _image_suffix(p):
            images.setdefault(p.stem, []).append(p)
    if not pts_files and not images:
        raise DataError(folder, f"empty 300W subset folder ({subset}): no images and no .pts files")
    records = []
    for stem in sorted(set(pts_files) | set(images)):
        pts, imgs = pts_files.get(stem), images.get(stem, [])
        if pts is None:
            for img in imgs:
                bad.handle(DataError(img, f"image without its .pts ({stem}.pts is missing beside it)"))
            continue
        if not imgs:
            bad.handle(DataError(pts, f".pts without its image (no {stem}.jpg or {stem}.png beside it)"))
            continue
        if len(imgs) > 1:
            names = ", ".join(p.name for p in imgs)
            bad.handle(DataError(pts, f"several images for one .pts ({names}): which one is annotated?"))
            continue
        try:
            points = read_pts(pts, 68)
        except DataError as exc:
            bad.handle(exc)
            continue
        records.append(FaceRecord(name=f"{subset}/{stem}", image=imgs[0], points=points,
                                  visible=np.ones(len(points), dtype=bool), source=pts))
    return records


def read_300w(raw: str | Path, bad: BadInput) -> DatasetPlan:
    """Read 300W's official layout under ``raw`` into its four splits (see the module doc)."""
    raw = Path(raw)
    if not raw.is_dir():
        raise DataError(raw, "300W folder not found")
    present = {s for s in SUBSETS if (raw / s).is_dir()}
    if not present:
        raise DataError(raw, "no 300W subset found: expected lfpw/{trainset,testset}, helen/{trainset,testset}, "
                             "afw/, ibug/ (each image beside its .pts)")
    faces: dict[str, list[FaceRecord]] = {s: read_subset(raw / s, s, bad) for s in SUBSETS if s in present}
    subsets_info = {}
    for s, (title, official) in SUBSETS.items():
        entry = {"title": title, "official_faces": official, "present": s in present}
        if s in present:
            entry["faces"] = len(faces[s])
        subsets_info[s] = entry

    splits: dict[str, list[FaceRecord]] = {}
    unavailable: dict[str, str] = {}
    split_info: dict[str, dict] = {}
    notes: list[str] = []
    for split, members in SPLITS.items():
        missing = [s for s in members if s not in present]
        used = [s for s in members if s in present]
        if missing and (split not in PARTIAL_OK or not used):
            unavailable[split] = "; ".join(
                f"needs {s}/ ({SUBSETS[s][0]}, {SUBSETS[s][1]} faces), absent from {raw}" for s in missing)
            continue
        records = [rec for s in used for rec in faces[s]]
        splits[split] = check_unique_names(records, bad, f"300W {split}")
        split_info[split] = {"subsets": used, "missing_subsets": missing}
        if missing:
            notes.append(f"{split}: built from {', '.join(used)} only; missing "
                         + ", ".join(f"{s}/ ({SUBSETS[s][0]}, {SUBSETS[s][1]} faces)" for s in missing))
        short = [f"{s} has {len(faces[s])} of {SUBSETS[s][1]} faces" for s in used if len(faces[s]) < SUBSETS[s][1]]
        if short:
            notes.append(f"{split}: " + "; ".join(short))
    return DatasetPlan(
        dataset="300w", num_points=68, mirror=MIRROR_68, splits=splits, unavailable=unavailable,
        training_splits=("train",), source="300W official layout (images beside 68-point .pts)",
        info={"subsets": subsets_info}, split_info=split_info, notes=notes,
    )
