"""AFLW-19 from its three sources (CCL's .mat, SBR's list files, the official sqlite), on small
fixtures written in those formats with real 300W faces as pixels (AFLW is not in ../shared/datasets)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from datafixtures import aflw_faces, keep19, write_aflw_mat, write_aflw_sqlite, write_sbr_lists
from scipy.optimize import linear_sum_assignment

from jasrbench.data import crop, protocols
from jasrbench.data.aflw import KEPT_IDS, MIRROR_19, POINT_NAMES, read_aflw
from jasrbench.data.images import load_rgb
from jasrbench.data.prepare import prepare
from jasrbench.data.records import BadInput
from jasrbench.data.split import load_split
from jasrbench.errors import DataError

RA = [3, 8, 1, 6, 2, 7, 5, 4]  # 1-based permutation; the first 6 train (20,000 in the real file)


@pytest.fixture()
def mat_root(w300_root, tmp_path):
    root = tmp_path / "aflw"
    faces = aflw_faces(w300_root, root)
    write_aflw_mat(root, faces, RA)
    return root, faces


def _expected_hr(face, points19):
    image = load_rgb(face["image"])
    _, _, mapping = crop.crop_face(image, face["box"], margin=protocols.PAPER_MARGIN)  # the default protocol
    box = np.clip(mapping.apply(np.asarray(face["box"]).reshape(2, 2)).reshape(4), 0, 127)
    return mapping.apply(points19), box


def test_point_definitions():
    assert KEPT_IDS == tuple(i for i in range(1, 22) if i not in (13, 17)) and len(POINT_NAMES) == 19
    assert "LeftEar" not in POINT_NAMES and "RightEar" not in POINT_NAMES
    assert tuple(np.asarray(MIRROR_19)[list(MIRROR_19)]) == tuple(range(19))
    for i, j in enumerate(MIRROR_19):  # every point maps onto its left/right counterpart
        assert POINT_NAMES[j] == POINT_NAMES[i].replace("Left", "@").replace("Right", "Left").replace("@", "Right")


def test_mat_source_split_points_and_boxes(mat_root):
    root, faces = mat_root
    plan = read_aflw(root, BadInput(False), train_faces=6)
    assert [r.name for r in plan.splits["train"]] == [f"{faces[i - 1]['rel'][:-4]}-{i - 1:05d}" for i in RA[:6]]
    assert len(plan.splits["test"]) == 2 and plan.unavailable == {}
    rec = next(r for r in plan.splits["train"] if r.name.endswith("-00001"))
    np.testing.assert_allclose(rec.points[rec.visible], keep19(faces[1]["p21"])[keep19(faces[1]["visible21"])])
    assert not rec.visible[6] and rec.visible.sum() == 18
    np.testing.assert_allclose(rec.box, faces[1]["box"], atol=1e-4)
    assert any("24386" in n for n in plan.notes)


def test_prepare_from_the_mat(mat_root, tmp_path):
    root, faces = mat_root
    summary = prepare("aflw", root, tmp_path / "out", reader_options={"train_faces": 6})
    assert summary["faces"] == {"train": 6, "test": 2}
    assert summary["crop_rule"] == "annotated face box" and summary["outside_points"] == "invisible"
    assert summary["points_made_invisible"] == 1  # face 3's chin, below the photograph
    assert summary["mirror_permutation"] == list(MIRROR_19) and summary["points"] == 19
    train, test = load_split(tmp_path / "out" / "train.npz"), load_split(tmp_path / "out" / "test.npz")
    assert train.context is not None and test.context is None
    both = {n: (s, i) for s in (train, test) for i, n in enumerate(s.names)}
    for k, face in enumerate(faces):
        split, i = both[f"{face['rel'][:-4]}-{k:05d}"]
        points, box = _expected_hr(face, keep19(face["p21"]))
        vis = split.visible[i]
        np.testing.assert_allclose(split.landmarks[i][vis], points[vis], atol=1e-3)
        np.testing.assert_allclose(split.boxes[i], box, atol=1e-3)
    split, i = both[f"{faces[3]['rel'][:-4]}-00003"]
    assert not split.visible[i][18] and split.visible[i][:18].all()  # the chin outside the photo: invisible
    # The two faces of one photograph are two different crops.
    (s6, i6), (s7, i7) = both["3/image00007-00006"], both["3/image00007-00007"]
    assert not np.array_equal(s6.hr[i6], s7.hr[i7])
    # The mirror permutation is the minimum-cost matching of the flipped mean face onto itself.
    pts = np.concatenate([train.landmarks[train.visible.all(1)], test.landmarks[test.visible.all(1)]])
    mean = (pts - (pts.min(1, keepdims=True) + pts.max(1, keepdims=True)) / 2).mean(0)
    _, match = linear_sum_assignment((((mean * [-1, 1])[:, None] - mean[None]) ** 2).sum(-1))
    assert tuple(match) == MIRROR_19


def test_sqlite_source_drops_the_ears_and_has_no_split(w300_root, tmp_path):
    raw = tmp_path / "aflw"
    faces = aflw_faces(w300_root, raw / "aflw" / "data")
    db = write_aflw_sqlite(raw / "aflw" / "data" / "aflw.sqlite", faces)
    plan = read_aflw(raw, BadInput(False))
    assert set(plan.splits) == {"all"} and "AFLWinfo_release.mat" in plan.unavailable["train"]
    recs = {r.name: r for r in plan.splits["all"]}
    assert len(recs) == 8
    rec = recs["0/image00001-39000"]
    np.testing.assert_allclose(rec.points, keep19(faces[0]["p21"]), atol=1e-4)  # ears (ids 13, 17) gone
    ears = faces[0]["p21"][[12, 16]]
    assert np.linalg.norm(rec.points[:, None] - ears[None], axis=-1).min() > 1
    assert not recs["2/image00002-39001"].visible[6]  # no FeatureCoords row → invisible
    np.testing.assert_allclose(recs["2/image00002-39001"].box, faces[1]["box"], atol=1e-4)
    summary = prepare("aflw", raw, tmp_path / "out")
    assert summary["faces"] == {"all": 8} and set(summary["unavailable"]) == {"train", "test"}
    assert summary["points_made_invisible"] == 1
    # A face without its FaceRect row is an error naming the database.
    con = sqlite3.connect(db)
    con.execute("DELETE FROM FaceRect WHERE face_id = 39004")
    con.commit()
    con.close()
    with pytest.raises(DataError, match="39004.*no FaceRect") as err:
        prepare("aflw", raw, tmp_path / "out2")
    assert str(db) in str(err.value) and not (tmp_path / "out2").exists()


def test_sbr_list_files_with_paths_of_another_machine(w300_root, tmp_path):
    raw = tmp_path / "aflw"
    faces = aflw_faces(w300_root, raw)
    write_sbr_lists(raw, faces, train=[0, 1, 2, 3, 4])
    summary = prepare("aflw", raw, tmp_path / "out")
    assert summary["faces"] == {"train": 5, "test": 3} and "SBR" in summary["source"]
    train = load_split(tmp_path / "out" / "train.npz")
    i = list(train.names).index("train/2/image00002-00002")
    assert not train.visible[i][6] and train.visible[i].sum() == 18
    points, box = _expected_hr(faces[1], keep19(faces[1]["p21"]))
    np.testing.assert_allclose(train.landmarks[i][train.visible[i]], points[train.visible[i]], atol=0.02)
    np.testing.assert_allclose(train.boxes[i], box, atol=0.02)
    # A broken annotation file is named.
    ann = sorted((raw / "processed" / "annotations").rglob("*.pts"))[0]
    ann.write_text("01 12.0 abc True\n")
    with pytest.raises(DataError, match="not numeric") as err:
        prepare("aflw", raw, tmp_path / "out2")
    assert str(ann) in str(err.value)


def test_mat_wins_over_the_other_sources_and_bad_faces_are_named(mat_root, w300_root, tmp_path):
    root, faces = mat_root
    write_aflw_sqlite(root / "aflw.sqlite", faces)
    plan = read_aflw(root, BadInput(False), train_faces=6)
    assert plan.source.startswith("AFLWinfo_release.mat")
    assert any("aflw.sqlite" in n and "not used" in n for n in plan.notes)
    missing = faces[4]["image"]
    missing.unlink()
    with pytest.raises(DataError, match="missing") as err:
        prepare("aflw", root, tmp_path / "out", reader_options={"train_faces": 6})
    assert str(missing) in str(err.value)
    summary = prepare("aflw", root, tmp_path / "out", skip_bad=True, reader_options={"train_faces": 6})
    assert sum(summary["faces"].values()) == 7 and summary["skipped"]["count"] == 1
    assert summary["skipped"]["files"][0]["path"] == "flickr/" + faces[4]["rel"]
