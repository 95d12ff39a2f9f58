"""Bad input (issue 2): every case is a clear error naming the file — or, with --skip-bad, a
counted, logged skip — and nothing partial is ever left in --out. Pixels are real 300W faces."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from datafixtures import copy_face, real_faces, tree_hashes
from PIL import Image

from jasrbench.data.images import load_rgb
from jasrbench.data.prepare import prepare
from jasrbench.data.split import load_split
from jasrbench.errors import DataError

SUBSET = ("lfpw", "trainset")


def _fails(raw, out, match=None):
    with pytest.raises(DataError, match=match) as err:
        prepare("300w", raw, out)
    assert not out.exists(), "a failed prepare left something in --out"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "temporary folder left"
    return str(err.value)


def _add_face(small_300w, w300_root, stem, k=5):
    img, pts = real_faces(w300_root, "helen/testset", k + 1)[k]
    return copy_face(img, pts, small_300w.joinpath(*SUBSET), stem)


def test_the_small_root_prepares(small_300w, tmp_path):
    summary = prepare("300w", small_300w, tmp_path / "out")
    assert summary["faces"] == {"train": 3}
    assert set(summary["unavailable"]) == {"common", "challenge", "full"}


@pytest.mark.parametrize("damage, match", [
    ("corrupt", "not a readable image"),
    ("truncated", "truncated"),
])
def test_corrupt_and_truncated_images(small_300w, w300_root, tmp_path, damage, match):
    img, _ = _add_face(small_300w, w300_root, "zz_bad")
    data = img.read_bytes()
    img.write_bytes(b"\x00not an image" * 100 if damage == "corrupt" else data[: len(data) * 6 // 10])
    message = _fails(small_300w, tmp_path / "out", match)
    assert str(img) in message


@pytest.mark.parametrize("body, match", [
    ("n_points: 67", "header declares 67 points but the file holds 68"),
    (67, "expected 68 points, found 67"),
    (69, "expected 68 points, found 69"),
    ("abc", "is not numeric"),
    ("nan", "non-finite"),
])
def test_bad_pts_files(small_300w, w300_root, tmp_path, body, match):
    _, pts = _add_face(small_300w, w300_root, "zz_bad")
    lines = pts.read_text().splitlines()
    head, points, tail = lines[:3], lines[3:-1], lines[-1:]
    assert len(points) == 68
    if body == 67:
        points = points[:67]
        head[1] = "n_points: 67"
    elif body == 69:
        points = points + ["10.0 10.0"]
        head[1] = "n_points: 69"
    elif body == "n_points: 67":
        head[1] = "n_points: 67"
    elif body == "abc":
        points[10] = "12.5 abc"
    else:
        points[10] = "nan 40.0"
    pts.write_text("\n".join(head + points + tail) + "\n")
    assert str(pts) in _fails(small_300w, tmp_path / "out", match)


def test_pts_without_header_is_read_too(small_300w, w300_root, tmp_path):
    _, pts = _add_face(small_300w, w300_root, "zz_plain")
    lines = pts.read_text().splitlines()
    pts.write_text("\n".join(lines[3:-1]) + "\n")  # 68 bare 'x y' lines
    assert prepare("300w", small_300w, tmp_path / "out")["faces"] == {"train": 4}


def test_pts_without_its_image_and_image_without_its_pts(small_300w, w300_root, tmp_path):
    img, pts = _add_face(small_300w, w300_root, "zz_lonely")
    img.unlink()
    message = _fails(small_300w, tmp_path / "out", ".pts without its image")
    assert str(pts) in message
    img2, pts2 = _add_face(small_300w, w300_root, "zz_lonely")
    pts2.unlink()
    message = _fails(small_300w, tmp_path / "out", "image without its .pts")
    assert str(img2) in message


def test_two_images_for_one_pts(small_300w, w300_root, tmp_path):
    img, pts = _add_face(small_300w, w300_root, "zz_twice")
    Image.open(img).save(img.with_suffix(".png"))
    message = _fails(small_300w, tmp_path / "out", "several images")
    assert str(pts) in message


def test_landmarks_outside_the_image(small_300w, w300_root, tmp_path):
    _, pts = _add_face(small_300w, w300_root, "zz_outside")
    lines = pts.read_text().splitlines()
    # The chin 45 px below the 256×256 photograph: more than 10% of the face's size beyond it.
    lines[3 + 8] = "140.0 302.0"
    pts.write_text("\n".join(lines) + "\n")
    message = _fails(small_300w, tmp_path / "out", "landmark 8 at .* lies outside the 256×256 image")
    assert str(pts) in message


def test_landmarks_just_beyond_the_frame_are_kept(small_300w, w300_root, tmp_path):
    """An occluded chin annotated a few pixels below the frame is a valid annotation, not bad input."""
    _, pts = _add_face(small_300w, w300_root, "zz_border")
    lines = pts.read_text().splitlines()
    lines[3 + 8] = "140.0 262.0"  # 1-based y 262 → 0-based 261: 5.5 px below the 256-px photograph
    pts.write_text("\n".join(lines) + "\n")
    summary = prepare("300w", small_300w, tmp_path / "out")
    assert summary["faces"]["train"] == sum(1 for _ in (small_300w / "lfpw" / "trainset").glob("*.pts")) + sum(
        1 for _ in (small_300w / "helen" / "trainset").glob("*.pts"))


def test_empty_dataset_folders(tmp_path):
    raw = tmp_path / "300W"
    raw.mkdir()
    assert str(raw) in _fails(raw, tmp_path / "out", "empty dataset folder")
    (raw / "lfpw" / "trainset").mkdir(parents=True)
    assert str(raw / "lfpw" / "trainset") in _fails(raw, tmp_path / "out", "empty 300W subset folder")
    (raw / "lfpw" / "trainset").rmdir()
    (raw / "README").write_text("nothing here\n")
    assert str(raw) in _fails(raw, tmp_path / "out", "no 300W subset found")


def test_duplicate_face_names_across_splits_are_an_error(small_300w, tmp_path, monkeypatch):
    # 300W names are SUBSET/STEM, unique by construction; the generic check of prepare catches
    # two different faces under one name whatever the reader (here: a reader returning both).
    from jasrbench.data import prepare as prep
    from jasrbench.data.records import FaceRecord

    real = prep.read_plan

    def doubled(*args, **kwargs):
        plan = real(*args, **kwargs)
        first = plan.splits["train"][0]
        other = plan.splits["train"][1]
        plan.splits["extra"] = [FaceRecord(first.name, other.image, other.points, other.visible, source=other.source)]
        return plan

    monkeypatch.setattr(prep, "read_plan", doubled)
    with pytest.raises(DataError, match="duplicate face name") as err:
        prepare("300w", small_300w, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert "trainset" in str(err.value)


def _write_mode_images(folder, rgb):
    """The same real face as grayscale, RGBA, CMYK and 16-bit images; returns (path, expected RGB)."""
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    alpha = np.full(rgb.shape[:2], 255, dtype=np.uint8)
    alpha[:, :64] = 0
    alpha[:, 64:128] = 128
    rgba = np.dstack([rgb, alpha])
    a = alpha[..., None].astype(np.float64) / 255
    g16 = gray.astype(np.uint16) * 257 + (np.arange(gray.size, dtype=np.uint16) % 200).reshape(gray.shape)
    cases = {
        "zz_gray.png": (Image.fromarray(gray, "L"), np.repeat(gray[..., None], 3, axis=2)),
        "zz_rgba.png": (Image.fromarray(rgba, "RGBA"), np.rint(rgb * a)),
        "zz_cmyk.tif": (Image.fromarray(rgb).convert("CMYK"), rgb),
        "zz_16bit.png": (Image.fromarray(g16), np.repeat(np.rint(g16 / 257.0)[..., None], 3, axis=2)),
    }
    out = {}
    for name, (img, expected) in cases.items():
        img.save(folder / name)
        out[name] = expected
    return out


def test_grayscale_rgba_cmyk_and_16bit_images_are_converted_deliberately(small_300w, w300_root, tmp_path):
    folder = small_300w.joinpath(*SUBSET)
    src_img, src_pts = real_faces(w300_root, "helen/testset", 1)[0]
    rgb = load_rgb(src_img)
    expected = _write_mode_images(folder, rgb)
    assert Image.open(folder / "zz_16bit.png").mode.startswith("I")  # really 16 bits on disk
    assert Image.open(folder / "zz_cmyk.tif").mode == "CMYK"
    for name, want in expected.items():
        got = load_rgb(folder / name)
        assert got.dtype == np.uint8 and got.shape == (256, 256, 3), name
        tolerance = 1 if name == "zz_rgba.png" else 0  # PIL's alpha compositing rounds in integers
        assert np.abs(got.astype(int) - want.astype(int)).max() <= tolerance, name
        (folder / name).with_suffix(".pts").write_bytes(src_pts.read_bytes())
    # Black where RGBA was transparent, the face where it was opaque.
    rgba = load_rgb(folder / "zz_rgba.png")
    assert rgba[:, :64].max() == 0 and np.array_equal(rgba[:, 128:], rgb[:, 128:])
    summary = prepare("300w", small_300w, tmp_path / "out")
    assert summary["faces"] == {"train": 7}
    train = load_split(tmp_path / "out" / "train.npz")
    gray_hr = train.hr[list(train.names).index("lfpw/trainset/zz_gray")]
    assert np.array_equal(gray_hr[..., 0], gray_hr[..., 1]) and np.array_equal(gray_hr[..., 1], gray_hr[..., 2])


def test_skip_bad_counts_logs_and_lists_every_skip(small_300w, w300_root, tmp_path, caplog):
    folder = small_300w.joinpath(*SUBSET)
    corrupt, _ = _add_face(small_300w, w300_root, "zz_corrupt", 1)
    corrupt.write_bytes(b"garbage" * 50)
    _, short = _add_face(small_300w, w300_root, "zz_short", 2)
    lines = short.read_text().splitlines()
    short.write_text("\n".join(lines[:3] + lines[4:]) + "\n")
    lonely, pts = _add_face(small_300w, w300_root, "zz_lonely", 3)
    pts.unlink()
    _, outside = _add_face(small_300w, w300_root, "zz_outside", 4)
    lines = outside.read_text().splitlines()
    lines[3] = "-20.0 100.0"
    outside.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING):
        summary = prepare("300w", small_300w, tmp_path / "out", skip_bad=True)
    assert summary["faces"] == {"train": 3} and summary["skip_bad"] is True
    skipped = {f["path"]: f for f in summary["skipped"]["files"]}
    assert summary["skipped"]["count"] == 4
    assert set(skipped) == {f"lfpw/trainset/{n}" for n in
                            ("zz_corrupt.jpg", "zz_short.pts", "zz_lonely.jpg", "zz_outside.pts")}
    assert "holds 67" in skipped["lfpw/trainset/zz_short.pts"]["problem"]
    assert "outside" in skipped["lfpw/trainset/zz_outside.pts"]["problem"]
    logged = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for name in ("zz_corrupt.jpg", "zz_short.pts", "zz_lonely.jpg", "zz_outside.pts"):
        assert name in logged
    assert "4 bad input(s) skipped" in logged
    assert [n for n in load_split(tmp_path / "out" / "train.npz").names if "zz_" in n] == []
    assert folder.is_dir()


def test_a_failed_rerun_leaves_the_previous_output_untouched(small_300w, w300_root, tmp_path):
    out = tmp_path / "out"
    prepare("300w", small_300w, out)
    before = tree_hashes(out)
    img, _ = _add_face(small_300w, w300_root, "zz_bad")
    img.write_bytes(b"broken")
    with pytest.raises(DataError):
        prepare("300w", small_300w, out)
    assert tree_hashes(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_out_folder_not_written_by_prepare_is_never_replaced(small_300w, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me\n")
    with pytest.raises(DataError, match="did not write") as err:
        prepare("300w", small_300w, out)
    assert str(out) in str(err.value) and (out / "precious.txt").read_text() == "keep me\n"
