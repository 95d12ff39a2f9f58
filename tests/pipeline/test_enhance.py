"""``jasrbench enhance`` on real faces: the benchmark's LR from a face crop, landmarks mapped back, MTCNN."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pipeline_helpers import tiny_params

from jasrbench.cli import main
from jasrbench.data import degrade
from jasrbench.data.images import load_rgb
from jasrbench.data.landmarks import read_pts
from jasrbench.data.split import load_split
from jasrbench.enhance import enhance
from jasrbench.errors import DataError
from jasrbench.train import train


@pytest.fixture(scope="module")
def common(prepared_root):
    return load_split(prepared_root / "300w" / "common.npz")


def test_a_face_crop_gets_the_benchmarks_lr_and_bicubic_sr(common, tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(3):
        Image.fromarray(common.hr[i]).save(faces / f"face{i}.png")
    records = enhance("bicubic", [str(faces)], tmp_path / "out")
    assert [r["name"] for r in records] == ["face0", "face1", "face2"]
    for i in range(3):
        lr = load_rgb(tmp_path / "out" / f"face{i}_lr.png")
        assert np.array_equal(lr, common.lr[i])  # exactly the prepared LR of that HR crop
        sr = load_rgb(tmp_path / "out" / f"face{i}_sr.png")
        expected = degrade.to_uint8(degrade.upsample(degrade.to_tensor(common.lr[i : i + 1])))[0]
        assert np.array_equal(sr, expected)
        assert not (tmp_path / "out" / f"face{i}.pts").exists()  # bicubic predicts no landmarks
    saved = json.loads((tmp_path / "out" / "enhance.json").read_text())
    assert saved["model"] == "bicubic" and len(saved["faces"]) == 3
    # The output says what the model learned from: its protocol and training degradation (issue 26).
    assert saved["protocol"] == "paper" and saved["trained_degradation"] == "none (clean bicubic LR)"


def test_landmarks_in_sr_and_source_pixels(common, prepared_root, tmp_path):
    train("jasrnet", "300w", tiny_params(prepared_root, epochs=1), tmp_path / "ckpt")
    Image.fromarray(common.hr[0]).save(tmp_path / "face.png")
    # The same face at 2× (256 px): its landmarks in source pixels scale accordingly.
    Image.fromarray(np.repeat(np.repeat(common.hr[0], 2, 0), 2, 1)).save(tmp_path / "face_x2.png")
    assert main(["enhance", str(tmp_path / "ckpt" / "model.pt"), str(tmp_path / "face.png"),
                 str(tmp_path / "face_x2.png"), "--out", str(tmp_path / "out")]) == 0
    saved = {f["name"]: f for f in json.loads((tmp_path / "out" / "enhance.json").read_text())["faces"]}
    sr_pts = np.array(saved["face"]["landmarks_sr"])
    assert sr_pts.shape == (68, 2)
    np.testing.assert_allclose(np.array(saved["face"]["landmarks_source"]), sr_pts, atol=1e-2)
    np.testing.assert_allclose(read_pts(tmp_path / "out" / "face.pts"), sr_pts, atol=1e-3)
    np.testing.assert_allclose(np.array(saved["face_x2"]["landmarks_source"]),
                               (np.array(saved["face_x2"]["landmarks_sr"]) + 0.5) * 2 - 0.5, atol=1e-2)
    overlay = load_rgb(tmp_path / "out" / "face_overlay.png")
    assert overlay.shape == (256, 256, 3)
    green = (overlay[..., 1] > 150) & (overlay[..., 0] < 60) & (overlay[..., 2] < 60)
    assert green.sum() > 68  # the predicted points are drawn


def test_detect_finds_the_face_in_a_photograph(verify_root, tmp_path):
    photo = sorted(verify_root.glob("*/*.jpg"))[0]
    records = enhance("bicubic", [str(photo)], tmp_path / "out", detect=True)
    assert records, "MTCNN found no face in a real LFW-layout photograph"
    square = records[0]["face_square"]
    # LFW-layout photos are centred on the face (a 2.2× Viola–Jones box): the face square is central.
    assert abs(square["cx"] - 124.5) < 30 and abs(square["cy"] - 124.5) < 40 and 60 < square["side"] < 200
    assert (tmp_path / "out" / f"{records[0]['name']}_sr.png").is_file()


def test_bad_inputs_are_named(tmp_path, common):
    bad = tmp_path / "in" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    Image.fromarray(common.hr[0]).save(tmp_path / "in" / "good.png")
    with pytest.raises(DataError, match="broken.png"):
        enhance("bicubic", [str(tmp_path / "in")], tmp_path / "out")
    records = enhance("bicubic", [str(tmp_path / "in")], tmp_path / "out", skip_bad=True)
    assert [r["name"] for r in records] == ["good"]
    skipped = json.loads((tmp_path / "out" / "enhance.json").read_text())["skipped"]
    assert skipped[0]["file"].endswith("broken.png")
    with pytest.raises(DataError, match="no such image"):
        enhance("bicubic", [str(tmp_path / "missing.png")], tmp_path / "out")
