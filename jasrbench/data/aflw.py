"""AFLW (Koestinger et al. 2011) as AFLW-19: 21 points without the ears, face boxes, SBR's split.

Three sources, the first found under ``--raw`` wins: CCL's ``AFLWinfo_release.mat``
(:func:`read_mat`), SBR's ``train.GTB``/``test.GTB`` lists (:func:`read_lists`) and the official
``aflw.sqlite`` (:func:`read_sqlite`, which has no split, so only ``all`` is built). Coordinates
are 0-based pixel centres as given; invisible points are masked by ``visible``, and a visible
point outside the photograph is marked invisible by ``prepare`` (AFLW annotates no unseen point).
Face names: ``IMAGE_PATH_WITHOUT_SUFFIX-ROW`` (e.g. ``3/image00002-00017``), ROW being the face's
row, line or ``face_id`` in its source.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path, PurePath

import numpy as np

from ..errors import DataError
from .records import BadInput, DatasetPlan, FaceRecord, check_unique_names

MAT_NAME = "AFLWinfo_release.mat"
SQLITE_NAME = "aflw.sqlite"
NUM_POINTS = 19
TRAIN_FACES = 20000
OFFICIAL_FACES = 24386
# 1-based AFLW feature ids: 13 = LeftEar, 17 = RightEar; the other 19 in id order.
EAR_IDS = (13, 17)
KEPT_IDS: tuple[int, ...] = tuple(i for i in range(1, 22) if i not in EAR_IDS)
POINT_NAMES: tuple[str, ...] = (
    "LeftBrowLeftCorner", "LeftBrowCenter", "LeftBrowRightCorner",
    "RightBrowLeftCorner", "RightBrowCenter", "RightBrowRightCorner",
    "LeftEyeLeftCorner", "LeftEyeCenter", "LeftEyeRightCorner",
    "RightEyeLeftCorner", "RightEyeCenter", "RightEyeRightCorner",
    "NoseLeft", "NoseCenter", "NoseRight",
    "MouthLeftCorner", "MouthCenter", "MouthRightCorner", "ChinCenter",
)
# Horizontal flip: left brow/eye/nose/mouth points swap with their right counterparts.
MIRROR_19: tuple[int, ...] = (5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 14, 13, 12, 17, 16, 15, 18)


def _find(raw: Path, name: str) -> Path | None:
    for candidate in (raw / name, raw / "data" / name, raw / "aflw" / "data" / name):
        if candidate.is_file():
            return candidate
    found = sorted(raw.rglob(name))
    return found[0] if found else None


def image_root(raw: Path, near: Path | None = None) -> Path:
    """AFLW's ``flickr/`` folder (holding ``0/``, ``2/``, ``3/``)."""
    candidates = [near / "flickr"] if near is not None else []
    candidates += [raw / "flickr", raw / "data" / "flickr", raw / "aflw" / "data" / "flickr", raw / "images"]
    for c in candidates:
        if c.is_dir():
            return c
    return raw


def _face_name(rel: str, row: int) -> str:
    return f"{PurePath(rel).with_suffix('').as_posix()}-{row:05d}"


def _check_box(box: np.ndarray, where: Path, what: str) -> np.ndarray:
    box = np.asarray(box, dtype=np.float64)
    if not np.isfinite(box).all() or not (box[2] > box[0] and box[3] > box[1]):
        raise DataError(where, f"{what}: invalid face box (x0, y0, x1, y1) = {box.tolist()}")
    return box.astype(np.float32)


def _check_points(points: np.ndarray, visible: np.ndarray, where: Path, what: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if not np.isfinite(points[visible]).all():
        raise DataError(where, f"{what}: non-finite coordinate of a visible point")
    return np.where(np.isfinite(points), points, 0.0).astype(np.float32)


# ---------------------------------------------------------------- .mat (CCL)

def read_mat(mat: Path, raw: Path, bad: BadInput, train_faces: int = TRAIN_FACES) -> DatasetPlan:
    """CCL's ``AFLWinfo_release.mat`` (Zhu et al. CVPR 2016), split as SBR (Dong et al. CVPR 2018).

    ``data`` N×38 (x1…x19, y1…y19), ``bbox`` N×4 (left, right, top, bottom), ``mask_new`` N×19
    (1 = visible), ``nameList`` (paths under ``flickr/``), ``ra`` (a 1-based permutation of the
    24,386 faces): its first ``train_faces`` (20,000) train, the other 4,386 test ("AFLW-Full").
    """
    from scipy.io import loadmat

    try:
        info = loadmat(str(mat))
    except Exception as exc:  # scipy raises several types for a foreign or broken file
        raise DataError(mat, f"not a readable MATLAB file ({type(exc).__name__}: {exc})") from exc
    missing = [k for k in ("data", "bbox", "mask_new", "nameList", "ra") if k not in info]
    if missing:
        raise DataError(mat, f"not CCL's AFLWinfo_release.mat: missing variables {missing}")
    data, bbox, mask = (np.asarray(info[k], dtype=np.float64) for k in ("data", "bbox", "mask_new"))
    names = np.asarray(info["nameList"]).reshape(-1)
    n = len(names)
    if data.shape != (n, 2 * NUM_POINTS) or bbox.shape != (n, 4) or mask.shape != (n, NUM_POINTS):
        raise DataError(mat, f"inconsistent shapes: data {data.shape}, bbox {bbox.shape}, mask_new {mask.shape}, "
                             f"nameList {n} (expected N×38, N×4, N×19)")
    ra = np.asarray(info["ra"]).reshape(-1)
    if len(ra) != n or not np.array_equal(np.sort(ra.astype(np.int64)), np.arange(1, n + 1)):
        raise DataError(mat, f"ra is not a permutation of 1…{n}")
    root = image_root(raw, mat.parent)
    records: dict[int, FaceRecord] = {}
    for row in range(n):
        try:
            rel = _cell_str(names[row])
            if rel is None:
                raise DataError(mat, f"nameList row {row + 1} is not a string")
            what = f"face {row + 1} ({rel})"
            image = root / rel
            if not image.is_file():
                raise DataError(image, f"image of {what} in {mat.name} is missing")
            visible = mask[row] != 0
            points = _check_points(np.stack([data[row, :NUM_POINTS], data[row, NUM_POINTS:]], axis=1),
                                   visible, mat, what)
            left, right, top, bottom = bbox[row]
            box = _check_box(np.array([left, top, right, bottom]), mat, what)
        except DataError as exc:
            bad.handle(exc, "face")
            continue
        records[row] = FaceRecord(name=_face_name(rel, row), image=image, points=points, visible=visible,
                                  box=box, source=mat)
    order = [int(i) - 1 for i in ra]
    splits = {"train": [records[i] for i in order[:train_faces] if i in records],
              "test": [records[i] for i in order[train_faces:] if i in records]}
    notes = []
    if n != OFFICIAL_FACES:
        notes.append(f"{mat.name} has {n} faces, CCL's release has {OFFICIAL_FACES}")
    unavailable = {}
    if n <= train_faces:
        unavailable["test"] = f"{mat} has {n} faces, the split needs more than {train_faces}"
        del splits["test"]
    return _plan(splits, unavailable, f"{MAT_NAME} (CCL's AFLW-19: ra[:{train_faces}] train, rest test, SBR)",
                 {"faces_listed": n, "image_root": _rel(root, raw)}, notes, bad)


def _cell_str(cell) -> str | None:
    """A MATLAB cell entry read by loadmat (nested 1-element arrays) → str."""
    value = cell
    for _ in range(4):
        if isinstance(value, str):
            return value
        arr = np.asarray(value)
        if arr.dtype.kind in "US" and arr.size == 1:
            return str(arr.reshape(-1)[0])
        if arr.size != 1:
            return None
        value = arr.reshape(-1)[0]
    return value if isinstance(value, str) else None


def _rel(path: Path, raw: Path) -> str:
    try:
        return path.resolve().relative_to(raw.resolve()).as_posix() or "."
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- SBR list files

def find_lists(raw: Path) -> dict[str, Path] | None:
    for folder in (raw, raw / "AFLW_lists", raw / "lists"):
        if (folder / "train.GTB").is_file() and (folder / "test.GTB").is_file():
            return {"train": folder / "train.GTB", "test": folder / "test.GTB"}
    return None


def _resolve(path_text: str, raw: Path, list_file: Path) -> Path | None:
    p = Path(path_text)
    if p.is_absolute() and p.is_file():
        return p
    if not p.is_absolute():
        for base in (raw, list_file.parent):
            if (base / p).is_file():
                return base / p
    parts = p.parts
    for k in range(1, len(parts)):
        candidate = raw.joinpath(*parts[k:])
        if candidate.is_file():
            return candidate
    return None


def read_sbr_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """SBR's annotation file: lines ``NN x y True`` for the visible points (NN 1-based)."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read annotation file ({exc})") from exc
    if lines and lines[0].lower().startswith("version"):
        raise DataError(path, "expected SBR's 'NN x y True' lines, found an iBUG .pts header")
    points = np.zeros((NUM_POINTS, 2), dtype=np.float32)
    visible = np.zeros(NUM_POINTS, dtype=bool)
    for i, ln in enumerate(lines, 1):
        parts = ln.split()
        if len(parts) not in (3, 4):
            raise DataError(path, f"line {i} {ln!r}: expected 'NN x y True'")
        try:
            idx, x, y = int(parts[0]), float(parts[1]), float(parts[2])
        except ValueError:
            raise DataError(path, f"line {i} {ln!r} is not numeric") from None
        if not 1 <= idx <= NUM_POINTS:
            raise DataError(path, f"line {i}: point number {idx} outside 1…{NUM_POINTS}")
        if not (math.isfinite(x) and math.isfinite(y)):
            raise DataError(path, f"line {i} has a non-finite coordinate ({ln!r})")
        if visible[idx - 1]:
            raise DataError(path, f"line {i}: point {idx} given twice")
        flag = parts[3] if len(parts) == 4 else "True"
        if flag not in ("True", "False", "1", "0"):
            raise DataError(path, f"line {i}: visibility {flag!r} is not True/False")
        points[idx - 1] = (x, y)
        visible[idx - 1] = flag in ("True", "1")
    if not visible.any():
        raise DataError(path, "no visible point")
    return points, visible


def read_lists(lists: dict[str, Path], raw: Path, bad: BadInput) -> DatasetPlan:
    """SBR's ``train.GTB``/``test.GTB``: lines ``image_path annotation_path x1 y1 x2 y2 [face_size]``.

    Each annotation file lists the visible points (:func:`read_sbr_points`); paths that do not
    exist as written are looked up under ``raw`` by their trailing components.
    """
    splits: dict[str, list[FaceRecord]] = {}
    root = image_root(raw)
    for split, list_file in lists.items():
        records = []
        for lineno, ln in enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1):
            if not ln.strip():
                continue
            parts = ln.split()
            try:
                if len(parts) not in (6, 7):
                    raise DataError(list_file, f"line {lineno}: expected 'image annotation x1 y1 x2 y2 [face_size]'")
                image = _resolve(parts[0], raw, list_file)
                if image is None:
                    raise DataError(list_file, f"line {lineno}: image {parts[0]} not found (also not under {raw})")
                ann = _resolve(parts[1], raw, list_file)
                if ann is None:
                    raise DataError(list_file, f"line {lineno}: annotation {parts[1]} not found (also not under {raw})")
                try:
                    box = np.array([float(v) for v in parts[2:6]])
                except ValueError:
                    raise DataError(list_file, f"line {lineno}: box {parts[2:6]} is not numeric") from None
                box = _check_box(box, list_file, f"line {lineno}")
                points, visible = read_sbr_points(ann)
            except DataError as exc:
                bad.handle(exc, "face")
                continue
            rel = _rel(image, root)
            records.append(FaceRecord(name=_face_name(rel, lineno), image=image, points=points, visible=visible,
                                      box=box, source=ann))
        if not records and not bad.skip_bad:
            raise DataError(list_file, "empty list file: no faces")
        splits[split] = records
    # Names carry the line number: make them unique across the two lists.
    for split, records in splits.items():
        for rec in records:
            rec.name = f"{split}/{rec.name}"
    return _plan(splits, {}, "SBR list files (train.GTB / test.GTB)", {}, [], bad)


# ---------------------------------------------------------------- official sqlite

def read_sqlite(db: Path, raw: Path, bad: BadInput) -> DatasetPlan:
    """The official ``aflw.sqlite`` (Faces, FaceImages, FaceRect, FeatureCoords): one split, ``all``.

    Of the 21 feature ids, 13 (LeftEar) and 17 (RightEar) are dropped, the other 19 keep AFLW's
    order; a point is visible iff it has a FeatureCoords row; the box is FaceRect (x, y, w, h).
    SBR's split is defined on CCL's faces, so ``train``/``test`` are reported unavailable.
    """
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise DataError(db, f"cannot open the database ({exc})") from exc
    try:
        try:
            faces = con.execute(
                "SELECT Faces.face_id, FaceImages.filepath FROM Faces JOIN FaceImages "
                "ON Faces.file_id = FaceImages.file_id ORDER BY Faces.face_id").fetchall()
            rects = con.execute("SELECT face_id, x, y, w, h FROM FaceRect ORDER BY face_id, rowid").fetchall()
            coords = con.execute(
                "SELECT face_id, feature_id, x, y FROM FeatureCoords ORDER BY face_id, feature_id, rowid").fetchall()
        except sqlite3.Error as exc:
            raise DataError(db, f"not AFLW's database (tables Faces, FaceImages, FaceRect, FeatureCoords): {exc}") from exc
    finally:
        con.close()
    if not faces:
        raise DataError(db, "no faces in the database")
    box_of: dict[int, tuple] = {}
    for face_id, x, y, w, h in rects:
        box_of.setdefault(int(face_id), (x, y, w, h))
    pts_of: dict[int, list[tuple]] = {}
    for face_id, feature_id, x, y in coords:
        pts_of.setdefault(int(face_id), []).append((feature_id, x, y))
    root = image_root(raw, db.parent)
    column = {fid: k for k, fid in enumerate(KEPT_IDS)}
    records = []
    for face_id, filepath in faces:
        face_id = int(face_id)
        what = f"face_id {face_id} ({filepath})"
        try:
            image = root / str(filepath)
            if not image.is_file():
                raise DataError(image, f"image of {what} in {db.name} is missing")
            if face_id not in box_of:
                raise DataError(db, f"{what}: no FaceRect row")
            x, y, w, h = (float(v) for v in box_of[face_id])
            box = _check_box(np.array([x, y, x + w, y + h]), db, what)
            points = np.zeros((NUM_POINTS, 2))
            visible = np.zeros(NUM_POINTS, dtype=bool)
            for feature_id, px, py in pts_of.get(face_id, []):
                if not isinstance(feature_id, int) or not 1 <= feature_id <= 21:
                    raise DataError(db, f"{what}: feature_id {feature_id!r} outside AFLW's 1…21")
                if feature_id in EAR_IDS:
                    continue
                k = column[feature_id]
                if visible[k]:
                    raise DataError(db, f"{what}: feature_id {feature_id} given twice")
                try:
                    points[k] = (float(px), float(py))
                except (TypeError, ValueError):
                    raise DataError(db, f"{what}: feature_id {feature_id} has non-numeric coordinates") from None
                visible[k] = True
            points = _check_points(points, visible, db, what)
        except DataError as exc:
            bad.handle(exc, "face")
            continue
        records.append(FaceRecord(name=_face_name(str(filepath), face_id), image=image, points=points,
                                  visible=visible, box=box, source=db))
    reason = (f"SBR's 20,000/4,386 split is defined by {MAT_NAME} (CCL), which is not under {raw}; "
              f"{db.name} alone gives the 'all' split")
    return _plan({"all": records}, {"train": reason, "test": reason},
                 f"{SQLITE_NAME} (official, 21 points → 19 without ears)", {"image_root": _rel(root, raw)}, [], bad,
                 training=("all",))


# ---------------------------------------------------------------- entry point

def _plan(splits, unavailable, source, info, notes, bad: BadInput, training=("train",)) -> DatasetPlan:
    everyone = [r for recs in splits.values() for r in recs]
    kept = {id(r) for r in check_unique_names(everyone, bad, "AFLW")}
    splits = {k: [r for r in v if id(r) in kept] for k, v in splits.items()}
    return DatasetPlan(
        dataset="aflw", num_points=NUM_POINTS, mirror=MIRROR_19, splits=splits, unavailable=unavailable,
        training_splits=training, crop_rule="annotated face box", source=source,
        info={**info, "point_names": list(POINT_NAMES), "dropped_feature_ids": list(EAR_IDS)},
        notes=notes, outside_policy="invisible",
    )


def read_aflw(raw: str | Path, bad: BadInput, train_faces: int = TRAIN_FACES) -> DatasetPlan:
    """Read AFLW under ``raw`` from the first source found (see the module doc)."""
    raw = Path(raw)
    if not raw.is_dir():
        raise DataError(raw, "AFLW folder not found")
    mat = _find(raw, MAT_NAME)
    lists = find_lists(raw)
    db = _find(raw, SQLITE_NAME)
    if mat is not None:
        plan = read_mat(mat, raw, bad, train_faces)
    elif lists is not None:
        plan = read_lists(lists, raw, bad)
    elif db is not None:
        plan = read_sqlite(db, raw, bad)
    else:
        raise DataError(raw, f"no AFLW annotations found: expected {MAT_NAME}, SBR's train.GTB/test.GTB, or {SQLITE_NAME}")
    present = [(MAT_NAME, mat), ("train.GTB/test.GTB", lists), (SQLITE_NAME, db)]
    used = next(i for i, (_, found) in enumerate(present) if found is not None)
    unused = [name for name, found in present[used + 1 :] if found is not None]
    if unused:
        plan.notes.append(f"also present, not used (the first source in the order {MAT_NAME}, SBR lists, "
                          f"{SQLITE_NAME} wins): {', '.join(unused)}")
    return plan
