"""LFW-layout sets: the real ``verify`` set (1,385 photos, 10 folds) prepared, LFW's own pairs.txt, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from jasrbench.data import crop, protocols
from jasrbench.data.images import load_rgb
from jasrbench.data.lfw import image_name, read_pairs, read_people
from jasrbench.data.prepare import MtcnnBoxes, prepare
from jasrbench.errors import DataError
from jasrbench.data.split import load_split


@pytest.fixture(scope="module")
def prepared_verify(verify_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "lfw"
    summary = prepare("lfw", verify_root, out)
    return summary, load_split(out / "test.npz")


def test_verify_set_counts_identities_and_pairs(prepared_verify, verify_root):
    summary, split = prepared_verify
    assert summary["faces"] == {"test": 1385}
    assert summary["splits"]["test"] == {"file": "test.npz", "faces": 1385, "context": False, "pairs": 1200,
                                         "folds": 10, "identities": 294}
    assert summary["people_file"] == "people.txt" and summary["skipped"]["count"] == 0
    assert split.hr.shape == (1385, 128, 128, 3) and split.lr.shape == (1385, 16, 16, 3)
    assert split.landmarks.shape == (1385, 0, 2) and split.visible.shape == (1385, 0)
    assert split.context is None
    assert len(np.unique(split.identities)) == 294
    assert all(n.split("/")[0] == ident for n, ident in zip(split.names, split.identities, strict=True))
    assert split.pairs.shape == (1200, 2)
    assert np.bincount(split.pair_fold).tolist() == [120] * 10
    assert np.bincount(split.pair_fold[split.pair_same]).tolist() == [60] * 10
    same = split.identities[split.pairs[:, 0]] == split.identities[split.pairs[:, 1]]
    np.testing.assert_array_equal(same, split.pair_same)
    for k, p in enumerate(read_pairs(verify_root / "pairs.txt")):
        assert split.names[split.pairs[k, 0]] == f"{p.name1}/{image_name(p.name1, p.index1)}"
        assert split.names[split.pairs[k, 1]] == f"{p.name2}/{image_name(p.name2, p.index2)}"
        assert split.pair_fold[k] == p.fold
    people = read_people(verify_root / "people.txt")
    assert len(people) == 294 and sum(people.values()) == 1385


def test_verify_crops_use_the_central_box(prepared_verify, verify_root):
    summary, split = prepared_verify
    assert summary["crop_rule"].startswith("central") and split.metadata["crop_rule"] == summary["crop_rule"]
    for i in (0, 500, 1384):
        person, stem = split.names[i].split("/")
        image = load_rgb(verify_root / person / f"{stem}.jpg")
        hr, _, _ = crop.crop_face(image, crop.lfw_face_box(*image.shape[:2]), margin=protocols.PAPER_MARGIN)
        np.testing.assert_array_equal(split.hr[i], hr)
    centres = (split.boxes[:, :2] + split.boxes[:, 2:]) / 2
    np.testing.assert_allclose(centres, 63.5, atol=1.0)
    np.testing.assert_allclose(split.boxes[:, 2] - split.boxes[:, 0], 128 / protocols.PAPER_MARGIN, rtol=0.02)


def test_lfw_pairs_file_is_the_official_protocol(lfw_pairs_file):
    pairs = read_pairs(lfw_pairs_file)
    assert len(pairs) == 6000
    folds = np.array([p.fold for p in pairs])
    same = np.array([p.same for p in pairs])
    assert np.bincount(folds).tolist() == [600] * 10
    assert np.bincount(folds[same]).tolist() == [300] * 10


def _small_layout(verify_root, root, people=3):
    """A writable LFW-layout copy of the first ``people`` identities with 2+ photos, and a 1-fold pairs.txt."""
    chosen = [n for n, c in read_people(verify_root / "people.txt").items() if c >= 2][:people]
    for name in chosen:
        shutil.copytree(verify_root / name, root / name)
    a, b = chosen[0], chosen[1]
    (root / "pairs.txt").write_text(f"1\t1\n{a}\t1\t2\n{a}\t1\t{b}\t1\n")
    return chosen


def test_a_pair_naming_a_missing_image_is_an_error_naming_it(verify_root, tmp_path):
    raw = tmp_path / "lfw"
    a, b, _ = _small_layout(verify_root, raw)
    (raw / "pairs.txt").write_text(f"1\t1\n{a}\t1\t2\n{a}\t1\t{b}\t9\n")
    missing = raw / b / f"{b}_0009.jpg"
    with pytest.raises(DataError) as err:
        prepare("lfw", raw, tmp_path / "out")
    assert str(missing) in str(err.value) and "pairs.txt" in str(err.value)
    assert not (tmp_path / "out").exists()
    summary = prepare("lfw", raw, tmp_path / "out", skip_bad=True)
    assert summary["skipped"]["count"] == 1
    assert summary["skipped"]["files"][0]["path"] == f"{b}/{b}_0009.jpg"
    assert summary["skipped"]["files"][0]["skipped"] == "pair"
    assert load_split(tmp_path / "out" / "test.npz").pairs.shape == (1, 2)


def test_a_file_that_is_not_an_lfw_image_name_is_named(verify_root, tmp_path):
    raw = tmp_path / "lfw"
    a, _, _ = _small_layout(verify_root, raw)
    stray = raw / a / "portrait.jpg"
    shutil.copyfile(next((raw / a).glob("*.jpg")), stray)
    with pytest.raises(DataError, match="not an LFW image name") as err:
        prepare("lfw", raw, tmp_path / "out")
    assert str(stray) in str(err.value)


def test_people_file_in_both_styles(tmp_path):
    flat = tmp_path / "people.txt"
    flat.write_text("2\nAnn\t3\nBob\t1\n")
    assert read_people(flat) == {"Ann": 3, "Bob": 1}
    folds = tmp_path / "people_folds.txt"
    folds.write_text("2\n1\nAnn\t3\n2\nBob\t1\nCid\t2\n")
    assert read_people(folds) == {"Ann": 3, "Bob": 1, "Cid": 2}
    broken = tmp_path / "broken.txt"
    broken.write_text("2\nAnn\tthree\nBob\t1\n")
    with pytest.raises(DataError) as err:
        read_people(broken)
    assert str(broken) in str(err.value)


def test_people_file_disagreeing_with_the_folders_is_named(verify_root, tmp_path):
    raw = tmp_path / "lfw"
    chosen = _small_layout(verify_root, raw)
    (raw / "people.txt").write_text(f"{len(chosen)}\n" + "".join(f"{n}\t99\n" for n in chosen))
    with pytest.raises(DataError, match="99 images") as err:
        prepare("lfw", raw, tmp_path / "out")
    assert str(raw / "people.txt") in str(err.value)


def test_mtcnn_crop_rule_finds_the_real_faces(verify_root, tmp_path):
    raw = tmp_path / "lfw"
    chosen = _small_layout(verify_root, raw, people=2)
    summary = prepare("lfw", raw, tmp_path / "out", lfw_crop="mtcnn")
    split = load_split(tmp_path / "out" / "test.npz")
    assert summary["crop_rule"].startswith("mtcnn") and split.metadata["crop_rule"] == summary["crop_rule"]
    assert summary["mtcnn_fallbacks"] == {"count": 0, "faces": []}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["crop_rule"] == summary["crop_rule"]
    detect = MtcnnBoxes()
    central = crop.lfw_face_box(250, 250)
    for name in chosen:
        for f in sorted((raw / name).glob("*.jpg")):
            box = detect(load_rgb(f))
            assert box is not None, f
            centre = (box[:2] + box[2:]) / 2
            assert np.abs(centre - 124.5).max() < 30, (f, box)
            side = max(box[2] - box[0], box[3] - box[1])
            assert 0.5 < side / (central[2] - central[0]) < 1.5, (f, box)
