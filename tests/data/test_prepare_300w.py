"""``jasrbench prepare 300w`` on the real shared 300W subset (2,229 faces, prepared once per session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from datafixtures import real_faces, tree_hashes

from jasrbench.cli import main
from jasrbench.data import crop, degrade, protocols
from jasrbench.data.images import load_rgb
from jasrbench.data.landmarks import MIRROR_68, flip_points, landmark_box, read_pts
from jasrbench.data.prepare import prepare
from jasrbench.data.split import load_split


@pytest.fixture(scope="module")
def splits(prepared_300w):
    return {name: load_split(prepared_300w.out / f"{name}.npz") for name in ("train", "common")}


def test_summary_has_the_counts_and_names_the_missing_subsets(prepared_300w):
    summary = json.loads((prepared_300w.out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(prepared_300w.summary))
    assert summary["faces"] == {"train": 1675, "common": 554}
    for split in ("challenge", "full"):
        reason = summary["unavailable"][split]
        assert "ibug/" in reason and "iBUG" in reason and "135 faces" in reason
    assert sorted(os.listdir(prepared_300w.out)) == ["common.npz", "summary.json", "train.npz"]
    assert summary["splits"]["train"]["subsets"] == ["lfpw/trainset", "helen/trainset"]
    assert summary["splits"]["train"]["missing_subsets"] == ["afw"]
    assert any("afw/" in note for note in summary["notes"])
    assert summary["subsets"]["lfpw/trainset"]["faces"] == 805 and summary["subsets"]["helen/trainset"]["faces"] == 870
    assert not summary["subsets"]["ibug"]["present"]
    assert summary["skipped"] == {"count": 0, "files": []}
    assert (summary["margin"], summary["hr_size"], summary["lr_size"], summary["context_size"]) == (
        protocols.PAPER_MARGIN, 128, 16, 192)
    assert summary["protocol"] == "paper"  # prepare's default protocol
    assert summary["mirror_permutation"] == list(MIRROR_68)
    print(f"prepare of the shared subset took {prepared_300w.seconds:.1f} s")


def test_split_files_hold_what_train_and_evaluate_read(splits):
    train, common = splits["train"], splits["common"]
    assert train.hr.shape == (1675, 128, 128, 3) and train.lr.shape == (1675, 16, 16, 3)
    assert train.context.shape == (1675, 192, 192, 3) and common.context is None
    assert common.landmarks.shape == (554, 68, 2) and common.landmarks.dtype == np.float32
    assert common.visible.all() and train.visible.all()
    assert train.metadata["mirror_permutation"] == list(MIRROR_68)
    assert train.metadata["split"] == "train" and common.metadata["dataset"] == "300w"
    prefixes = lambda s: sorted({n.rsplit("/", 1)[0] for n in s.names})  # noqa: E731
    assert prefixes(train) == ["helen/trainset", "lfpw/trainset"]
    assert prefixes(common) == ["helen/testset", "lfpw/testset"]
    assert sum(n.startswith("lfpw/") for n in common.names) == 224
    assert len(set(train.names) | set(common.names)) == 1675 + 554


def test_landmarks_lie_inside_the_hr_crop_of_every_face(splits):
    for split in splits.values():
        pts = split.landmarks
        assert pts.min() >= 0 and pts.max() <= 127
        # The face box is the landmark min/max box (it is inside the crop, so clamping leaves it alone).
        expected = np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1)
        np.testing.assert_allclose(split.boxes, expected, atol=1e-3)
        # The margin: the longer side of the box is 128 / margin HR pixels (the paper protocol's margin).
        side = np.maximum(expected[:, 2] - expected[:, 0], expected[:, 3] - expected[:, 1])
        np.testing.assert_allclose(side, 128 / protocols.PAPER_MARGIN, rtol=0.02)


def test_stored_faces_are_the_crops_of_the_source_photographs(splits, w300_root):
    common = splits["common"]
    index = {n: i for i, n in enumerate(common.names)}
    for img, pts_file in real_faces(w300_root, "helen/testset", 5):
        i = index[f"helen/testset/{img.stem}"]
        pts = read_pts(pts_file)
        hr, _, mapping = crop.crop_face(load_rgb(img), landmark_box(pts), margin=protocols.PAPER_MARGIN)
        np.testing.assert_array_equal(common.hr[i], hr)
        np.testing.assert_allclose(common.landmarks[i], mapping.apply(pts), atol=1e-4)
    train = splits["train"]
    np.testing.assert_array_equal(train.context[:, 32:160, 32:160], train.hr)


def test_lr_is_make_lr_of_the_hr(splits):
    for split in splits.values():
        expected = degrade.to_uint8(degrade.make_lr(degrade.to_tensor(split.hr)))
        np.testing.assert_array_equal(split.lr, expected)


def test_mirror_permutation_maps_the_left_eye_onto_the_right_eye_on_real_faces(splits):
    for split in splits.values():
        pts = split.landmarks.astype(np.float64)
        left, right = pts[:, 36:42].mean(axis=1), pts[:, 42:48].mean(axis=1)  # image-left, image-right eye
        assert (left[:, 0] < right[:, 0]).all()
        flipped = flip_points(pts, 128, MIRROR_68)
        f_left, f_right = flipped[:, 36:42].mean(axis=1), flipped[:, 42:48].mean(axis=1)
        # The flipped image's left eye is where the right eye went under the flip, and vice versa …
        np.testing.assert_allclose(f_left, np.stack([127 - right[:, 0], right[:, 1]], axis=1), atol=1e-4)
        np.testing.assert_allclose(f_right, np.stack([127 - left[:, 0], left[:, 1]], axis=1), atol=1e-4)
        # … so the labels still describe the picture: eye 36–41 on the left, outer corners outside.
        assert (f_left[:, 0] < f_right[:, 0]).all()
        assert (flipped[:, 36, 0] < flipped[:, 39, 0]).all() and (flipped[:, 45, 0] > flipped[:, 42, 0]).all()
        assert (flipped[:, 0, 0] < flipped[:, 16, 0]).all() and (flipped[:, 48, 0] < flipped[:, 54, 0]).all()
        np.testing.assert_allclose(flip_points(flipped, 128, MIRROR_68), pts, atol=1e-4)  # flip∘flip = id
    # On the flipped pixels: the patch at the flipped left-eye centre is the mirrored right-eye patch.
    hr = splits["common"].hr[0]
    pts = splits["common"].landmarks[0]
    flipped_img, flipped_pts = hr[:, ::-1], flip_points(pts, 128, MIRROR_68)
    fx, fy = np.rint(flipped_pts[36:42].mean(axis=0)).astype(int)
    rx, ry = np.rint(pts[42:48].mean(axis=0)).astype(int)
    np.testing.assert_array_equal(flipped_img[fy - 4 : fy + 5, fx - 4 : fx + 5],
                                  hr[ry - 4 : ry + 5, rx - 4 : rx + 5][:, ::-1])
    # On the mean real face, the minimum-cost matching of the flipped points onto the points is
    # exactly MIRROR_68 (the rule helen.estimate_mirror applies to HELEN's 194 points).
    for split in splits.values():
        pts = split.landmarks.astype(np.float64)
        mean = (pts - (pts.min(axis=1, keepdims=True) + pts.max(axis=1, keepdims=True)) / 2).mean(axis=0)
        mirrored = mean * np.array([-1.0, 1.0])
        _, match = linear_sum_assignment(((mirrored[:, None] - mean[None]) ** 2).sum(-1))
        assert tuple(match) == MIRROR_68
        assert np.linalg.norm(mirrored[list(MIRROR_68)] - mean, axis=1).max() < 4  # px, at 128²
    assert tuple(np.asarray(MIRROR_68)[list(MIRROR_68)]) == tuple(range(68))


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "jasrbench"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "jasrbench.cli"]


def test_cli_and_rerun_give_byte_identical_outputs(slice_300w_root, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([*_cli(), "prepare", "300w", "--raw", str(slice_300w_root), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "train: 12" in proc.stdout and "common: 12" in proc.stdout and "challenge: unavailable" in proc.stdout
    first = tree_hashes(out)
    assert sorted(first) == ["common.npz", "summary.json", "train.npz"]
    prepare("300w", slice_300w_root, out)  # rerun over the previous output
    assert tree_hashes(out) == first
    prepare("300w", slice_300w_root, tmp_path / "again", workers=1)  # fresh folder, one thread
    assert tree_hashes(tmp_path / "again") == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_cli_prints_bad_input_errors_cleanly(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = main(["prepare", "300w", "--raw", str(empty), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"jasrbench prepare: error: {empty}: empty dataset folder" in err
    assert not (tmp_path / "out").exists()
