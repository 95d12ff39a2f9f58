"""HELEN's release format (annotation/N.txt, 194 points) and FSRNet's split, on a small fixture
written in that format from real 300W HELEN faces (HELEN-194 itself is not in ../shared/datasets)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from datafixtures import helen194_from_68, helen194_true_mirror, real_faces, write_helen

from jasrbench.data import crop, protocols
from jasrbench.data.helen import annotation_order, estimate_mirror, read_annotation, read_helen
from jasrbench.data.images import load_rgb
from jasrbench.data.landmarks import landmark_box, read_pts
from jasrbench.data.prepare import prepare
from jasrbench.data.records import BadInput
from jasrbench.data.split import load_split
from jasrbench.errors import DataError

FACES = 60  # 10 train + the last 50 test


@pytest.fixture(scope="module")
def helen_root(w300_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("helen") / "helen"
    shapes = write_helen(root, real_faces(w300_root, "helen/trainset", FACES))
    return root, shapes


@pytest.fixture(scope="module")
def prepared_helen(helen_root, tmp_path_factory):
    root, _ = helen_root
    out = tmp_path_factory.mktemp("helen_out") / "helen"
    return prepare("helen", root, out), out


def test_annotation_file_is_read_as_written(helen_root):
    root, shapes = helen_root
    name, points = read_annotation(root / "annotation" / "7.txt")
    assert name.endswith("_h7") and (root / "helen_1" / f"{name}.jpg").is_file()
    assert points.shape == (194, 2) and points.dtype == np.float32
    np.testing.assert_allclose(points, shapes[6], atol=1e-3)


def test_split_is_the_last_50_annotation_files_by_number(helen_root):
    root, _ = helen_root
    plan = read_helen(root, BadInput(False))
    assert [r.source.name for r in plan.splits["train"]] == [f"{n}.txt" for n in range(1, 11)]
    assert [r.source.name for r in plan.splits["test"]] == [f"{n}.txt" for n in range(11, FACES + 1)]
    # Lexicographic order ("10.txt" < "2.txt") would have put different files in the test set.
    lexicographic = sorted(p.name for p in (root / "annotation").glob("*.txt"))[-50:]
    assert set(lexicographic) != {r.source.name for r in plan.splits["test"]}
    assert sorted([root / "a/2.txt", root / "a/10.txt", root / "a/x.txt"], key=annotation_order)[1].name == "10.txt"
    assert plan.splits["test"][0].image.parent.name in ("helen_1", "helen_2")


def test_mirror_estimated_from_the_mean_shape_is_the_true_one(w300_root, helen_root):
    truth = helen194_true_mirror()
    assert tuple(np.asarray(truth)[list(truth)]) == tuple(range(194))
    shapes = [helen194_from_68(read_pts(p)) for _, p in real_faces(w300_root, "helen/trainset")]
    assert estimate_mirror(shapes)[0] == truth  # 870 real faces
    assert estimate_mirror(helen_root[1][:10])[0] == truth  # the 10 training faces of the fixture
    assert estimate_mirror([])[0] is None


def test_prepare_helen(prepared_helen, helen_root):
    summary, out = prepared_helen
    root, shapes = helen_root
    assert summary["faces"] == {"train": 10, "test": 50} and summary["unavailable"] == {}
    assert summary["points"] == 194 and summary["mirror_permutation"] == list(helen194_true_mirror())
    assert "estimated" in summary["mirror_permutation_source"]
    assert any("2330" in note for note in summary["notes"])  # not the complete release: said so
    train, test = load_split(out / "train.npz"), load_split(out / "test.npz")
    assert train.context.shape == (10, 192, 192, 3) and test.context is None
    assert test.landmarks.shape == (50, 194, 2)
    assert train.metadata["mirror_permutation"] == list(helen194_true_mirror())
    for split in (train, test):
        assert split.landmarks.min() >= 0 and split.landmarks.max() <= 127
    # Face 11 (the first test face): the stored crop is the crop of its photograph around its 194 points.
    name, points = read_annotation(root / "annotation" / "11.txt")
    image = load_rgb(next(root.glob(f"helen_*/{name}.jpg")))
    hr, _, mapping = crop.crop_face(image, landmark_box(points), margin=protocols.PAPER_MARGIN)  # the default protocol
    i = list(test.names).index(name)
    np.testing.assert_array_equal(test.hr[i], hr)
    np.testing.assert_allclose(test.landmarks[i], mapping.apply(points), atol=1e-4)


def _copy(helen_root, tmp_path):
    root = tmp_path / "helen"
    shutil.copytree(helen_root[0], root)
    return root


@pytest.mark.parametrize("body, message", [
    ("{name}\n" + "1.0 , 2.0\n" * 193, "expected 194 points, found 193"),
    ("{name}\n" + "1.0 , 2.0\n" * 195, "expected 194 points, found 195"),
    ("{name}\n" + "1.0 , 2.0\n" * 100 + "1.0 , abc\n" + "1.0 , 2.0\n" * 93, "not 'x , y'"),
    ("{name}\n" + "1.0 , 2.0\n" * 100 + "nan , 3.0\n" + "1.0 , 2.0\n" * 93, "non-finite"),
    ("3.0 , 4.0\n" + "1.0 , 2.0\n" * 194, "first line must be the image name"),
    ("no_such_image\n" + "1.0 , 2.0\n" * 194, "which is not under"),
])
def test_bad_annotation_files_are_named(helen_root, tmp_path, body, message):
    root = _copy(helen_root, tmp_path)
    bad = root / "annotation" / "5.txt"
    name = bad.read_text().splitlines()[0]
    bad.write_text(body.format(name=name))
    with pytest.raises(DataError, match=message) as err:
        prepare("helen", root, tmp_path / "out")
    assert str(bad) in str(err.value)
    assert not (tmp_path / "out").exists()


def test_duplicate_face_names_are_an_error_and_skip_bad_keeps_the_split(helen_root, tmp_path):
    root = _copy(helen_root, tmp_path)
    dup = root / "annotation" / "58.txt"
    first_name = (root / "annotation" / "57.txt").read_text().splitlines()[0]
    lines = dup.read_text().splitlines()
    dup.write_text("\n".join([first_name] + lines[1:]) + "\n")
    with pytest.raises(DataError, match="duplicate face name") as err:
        prepare("helen", root, tmp_path / "out")
    assert str(dup) in str(err.value)
    (root / "annotation" / "59.txt").write_text("broken\n")
    summary = prepare("helen", root, tmp_path / "out", skip_bad=True)
    # Two test files skipped; the test set is still "the last 50 files", so train keeps its 10.
    assert summary["faces"] == {"train": 10, "test": 48}
    assert summary["skipped"]["count"] == 2
    assert {f["path"] for f in summary["skipped"]["files"]} == {"annotation/58.txt", "annotation/59.txt"}
