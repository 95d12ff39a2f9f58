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


def aflw_faces(w300_root: Path, root: Path) -> list[dict]:
    """Eight real faces on seven AFLW-style photographs under ``root/flickr/{0,2,3}/``.

    Faces 6 and 7 share one 512×256 photograph (side by side). Each face: ``rel`` (path under
    flickr/), ``image``, ``p21`` (21×2, AFLW ids 1…21), ``visible21``, ``box`` (x0, y0, x1, y1).
    Face 1 has LeftEyeLeftCorner (id 7) unannotated; face 3's ChinCenter (id 21) lies below the photo.
    """
    from PIL import Image

    faces = []
    sources = real_faces(w300_root, "lfpw/testset", 8)
    for k, (img, pts) in enumerate(sources[:6]):
        rel = f"{(0, 2, 3)[k % 3]}/image{k + 1:05d}.jpg"
        (root / "flickr" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(img, root / "flickr" / rel)
        faces.append({"rel": rel, "p21": aflw21_from_68(read_pts(pts))})
    rel = "3/image00007.jpg"
    a, b = (np.asarray(Image.open(img).convert("RGB")) for img, _ in sources[6:8])
    Image.fromarray(np.concatenate([a, b], axis=1)).save(root / "flickr" / rel, quality=95)
    faces.append({"rel": rel, "p21": aflw21_from_68(read_pts(sources[6][1]))})
    faces.append({"rel": rel, "p21": aflw21_from_68(read_pts(sources[7][1])) + np.array([a.shape[1], 0.0])})
    for k, face in enumerate(faces):
        face["image"] = root / "flickr" / face["rel"]
        face["visible21"] = np.ones(21, dtype=bool)
        p19 = face["p21"][[i for i in range(21) if i not in (12, 16)]]
        x0, y0 = p19.min(axis=0)
        x1, y1 = p19.max(axis=0)
        face["box"] = np.array([x0 - 8, y0 - 25, x1 + 8, y1 + 6])
    faces[1]["visible21"][6] = False
    faces[3]["p21"][20, 1] = 256 + 10.0
    return faces


def keep19(a: np.ndarray) -> np.ndarray:
    """AFLW ids 1…21 → the 19 kept (ears 13 and 17 dropped)."""
    return a[[i for i in range(21) if i not in (12, 16)]]


def write_aflw_mat(root: Path, faces: list[dict], ra: list[int]) -> Path:
    """CCL's AFLWinfo_release.mat: data N×38, bbox N×4 (left right top bottom), mask_new, nameList, ra."""
    from scipy.io import savemat

    n = len(faces)
    data = np.zeros((n, 38))
    for k, f in enumerate(faces):
        p, v = keep19(f["p21"]), keep19(f["visible21"])
        p = np.where(v[:, None], p, 0.0)
        data[k] = np.concatenate([p[:, 0], p[:, 1]])
    names = np.empty((n, 1), dtype=object)
    for k, f in enumerate(faces):
        names[k, 0] = f["rel"]
    path = root / "AFLWinfo_release.mat"
    savemat(path, {
        "data": data,
        "bbox": np.array([[f["box"][0], f["box"][2], f["box"][1], f["box"][3]] for f in faces]),
        "mask_new": np.array([keep19(f["visible21"]).astype(float) for f in faces]),
        "nameList": names,
        "ra": np.array([ra], dtype=float),
    })
    return path


def write_aflw_sqlite(db: Path, faces: list[dict]) -> Path:
    """AFLW's official database (the tables the reader uses), 21 points; unannotated points have no row."""
    import sqlite3

    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE FaceImages (image_id INTEGER PRIMARY KEY, db_id TEXT, file_id TEXT, filepath TEXT,
                                 bw INTEGER, width INTEGER, height INTEGER);
        CREATE TABLE Faces (face_id INTEGER PRIMARY KEY, file_id TEXT, db_id TEXT);
        CREATE TABLE FaceRect (face_id INTEGER, x INTEGER, y INTEGER, w INTEGER, h INTEGER, annot_type_id INTEGER);
        CREATE TABLE FeatureCoords (face_id INTEGER, feature_id INTEGER, x REAL, y REAL, annot_type_id INTEGER);
        CREATE TABLE FacePose (face_id INTEGER, roll REAL, pitch REAL, yaw REAL, annot_type_id INTEGER);
    """)
    files: dict[str, str] = {}
    for k, f in enumerate(faces):
        if f["rel"] not in files:
            files[f["rel"]] = f"image{len(files):05d}.jpg"
            con.execute("INSERT INTO FaceImages (db_id, file_id, filepath, bw, width, height) VALUES (?,?,?,?,?,?)",
                        ("flickr", files[f["rel"]], f["rel"], 0, 0, 0))
        face_id = 39000 + k
        con.execute("INSERT INTO Faces VALUES (?,?,?)", (face_id, files[f["rel"]], "flickr"))
        x0, y0, x1, y1 = f["box"]
        con.execute("INSERT INTO FaceRect VALUES (?,?,?,?,?,?)", (face_id, x0, y0, x1 - x0, y1 - y0, 1))
        con.execute("INSERT INTO FacePose VALUES (?,?,?,?,?)", (face_id, 0.0, 0.0, 0.0, 1))
        for fid in range(1, 22):
            if f["visible21"][fid - 1]:
                x, y = f["p21"][fid - 1]
                con.execute("INSERT INTO FeatureCoords VALUES (?,?,?,?,?)", (face_id, fid, float(x), float(y), 1))
    con.commit()
    con.close()
    return db


def write_sbr_lists(root: Path, faces: list[dict], train: list[int], foreign: str = "/home/someone/AFLW") -> None:
    """SBR's AFLW_lists/{train,test}.GTB with paths of another machine, and 'NN x y True' annotations."""
    lists = {"train": [], "test": []}
    for k, f in enumerate(faces):
        ann_rel = Path("processed/annotations") / Path(f["rel"]).parent / f"{Path(f['rel']).stem}-{k}.pts"
        (root / ann_rel).parent.mkdir(parents=True, exist_ok=True)
        p, v = keep19(f["p21"]), keep19(f["visible21"])
        lines = [f"{i + 1:02d} {x:.2f} {y:.2f} True" for i, (x, y) in enumerate(p) if v[i]]
        (root / ann_rel).write_text("\n".join(lines))
        box = " ".join(f"{c:.2f}" for c in f["box"])
        size = np.sqrt((f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]))
        lists["train" if k in train else "test"].append(
            f"{foreign}/images/{f['rel']} {foreign}/{ann_rel.as_posix()} {box} {size:.2f}")
    (root / "images").symlink_to(root / "flickr", target_is_directory=True)
    (root / "AFLW_lists").mkdir()
    for split, lines in lists.items():
        (root / "AFLW_lists" / f"{split}.GTB").write_text("\n".join(lines) + "\n")
