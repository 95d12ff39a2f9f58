"""Recognizers: one interface; dlib offline; facenet's local-weights path and its no-weights error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jasrbench.errors import ConfigError, DataError
from jasrbench.metrics import recognizers
from metricfixtures import one_torch_thread


def test_preparation_rule_is_a_fixed_window_resized_with_the_suites_bicubic(common_faces):
    from jasrbench.data.degrade import resize_bicubic, to_tensor

    faces = common_faces.hr[:2]
    x = recognizers.prepare_faces(faces, 150, recognizers.DLIB_WINDOW)
    assert x.shape == (2, 3, 150, 150)
    # dlib's window on a 128-px crop: 1.037 face boxes (box = 128/1.3 px), 0.104 boxes below the centre.
    assert recognizers.DLIB_WINDOW.pixels(128) == (23, 15, 102, 102)
    assert torch.equal(x, resize_bicubic(to_tensor(faces)[:, :, 23:125, 15:117], (150, 150)))
    # facenet's: 0.891 × 1.197 boxes, stretched to a square as facenet-pytorch's extract_face does.
    assert recognizers.FACENET_WINDOW.pixels(128) == (6, 21, 118, 88)
    assert torch.equal(recognizers.prepare_faces(faces, 150), resize_bicubic(to_tensor(faces), (150, 150)))
    assert torch.equal(recognizers.prepare_faces(faces[:1], 128), to_tensor(faces[:1]))
    assert recognizers.Window(0, 0.5, 1.3, 1.3).pixels(128) == (0, 0, 128, 128)  # clamped to the crop
    with pytest.raises(ValueError, match="uint8"):
        recognizers.prepare_faces(faces.astype(np.float32), 150)


def test_dlib_embeds_real_faces_as_unit_vectors(common_faces):
    rec = recognizers.get("dlib", workers=2, batch_size=3)
    faces = common_faces.hr[:6]
    emb = rec.embed(faces)
    assert emb.shape == (6, 128) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    # The same bits from worker processes as in this process for the same batches (dlib_worker.py) ...
    assert np.array_equal(emb, recognizers.get("dlib", workers=1, batch_size=3).embed(faces))
    # ... and, within rounding, for any batching.
    single = recognizers.get("dlib", workers=1, batch_size=64).embed(faces)
    np.testing.assert_allclose(emb, single, atol=1e-6)
    # Different people are less similar than a face and its slightly blurred self.
    blurred = recognizers.get("dlib", workers=1).embed(
        np.ascontiguousarray((faces[:1].astype(np.float32) * 0.5 + np.roll(faces[:1], 1, axis=2) * 0.5).astype(np.uint8)))
    assert float(emb[0] @ blurred[0]) > float(emb[0] @ emb[1])
    assert recognizers.dlib_model_path().name == "dlib_face_recognition_resnet_model_v1.dat"


@pytest.mark.parametrize("name", ["dlib", "facenet"])
def test_windows_are_what_the_recognizers_own_aligners_pick(verify_root, name):
    """Re-measure the calibration on 80 verify photos (every ~17th): close to the constants."""
    from jasrbench.data.crop import lfw_face_box
    from jasrbench.data.images import load_rgb

    files = sorted(verify_root.glob("*/*.jpg"))[::17][:80]
    images = [load_rgb(f) for f in files]
    with one_torch_thread():
        window, found = recognizers.calibrate_window(name, images, [lfw_face_box(*im.shape[:2]) for im in images])
    assert found >= 75
    expected = recognizers.DLIB_WINDOW if name == "dlib" else recognizers.FACENET_WINDOW
    for field in ("dx", "dy", "width", "height"):
        assert abs(getattr(window, field) - getattr(expected, field)) < 0.03, (field, window, expected)


def test_dlib_bad_model_file_is_named(tmp_path):
    bad = tmp_path / "model.dat"
    bad.write_bytes(b"not a dlib model")
    with pytest.raises(DataError, match="model.dat"):
        recognizers.get("dlib", model_path=bad)


def test_unknown_recognizer():
    with pytest.raises(ConfigError, match="unknown recognizer"):
        recognizers.get("arcface")
    assert recognizers.available() == ["dlib", "facenet"]


# --- facenet ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def random_facenet_weights(tmp_path_factory):
    """Random InceptionResnetV1 weights in a local file (tests the loading path only)."""
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    state = InceptionResnetV1(pretrained=None, classify=False).state_dict()
    path = tmp_path_factory.mktemp("facenet") / "random-vggface2.pt"
    torch.save(state, path)
    return path, state


def test_facenet_from_a_local_weights_file(random_facenet_weights, common_faces, monkeypatch):
    path, state = random_facenet_weights
    rec = recognizers.get("facenet", weights=path, device="cpu")
    assert torch.equal(rec.model.state_dict()["last_linear.weight"], state["last_linear.weight"])
    emb = rec.embed(common_faces.hr[:3])
    assert emb.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # The same file through the environment variable; facenet's classifier entries are ignored.
    with_logits = dict(state, **{"logits.weight": torch.zeros(8631, 512), "logits.bias": torch.zeros(8631)})
    path2 = path.with_name("with-logits.pt")
    torch.save(with_logits, path2)
    monkeypatch.setenv(recognizers.FACENET_WEIGHTS_ENV, str(path2))
    np.testing.assert_allclose(recognizers.get("facenet", device="cpu").embed(common_faces.hr[:3]), emb, atol=1e-6)


def test_facenet_input_is_160_and_standardized(random_facenet_weights, common_faces):
    rec = recognizers.get("facenet", weights=random_facenet_weights[0], device="cpu")
    seen = {}
    rec.model.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0].clone()))
    rec.embed(common_faces.hr[:2])
    x = seen["x"]
    expected = (recognizers.prepare_faces(common_faces.hr[:2], 160, recognizers.FACENET_WINDOW) * 255 - 127.5) / 128
    assert x.shape == (2, 3, 160, 160) and torch.allclose(x, expected)


def test_facenet_bad_local_file_is_named(tmp_path):
    bad = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(DataError, match="weights.pt.*not InceptionResnetV1 weights"):
        recognizers.get("facenet", weights=bad, device="cpu")
    with pytest.raises(DataError, match="not found"):
        recognizers.get("facenet", weights=tmp_path / "missing.pt", device="cpu")


def test_facenet_without_weights_or_network_names_both_ways(tmp_path, monkeypatch):
    """No cached weights (empty TORCH_HOME) and no network (the download is pointed at a closed
    local port): the error tells the user how to get the weights either way."""
    import facenet_pytorch.models.inception_resnet_v1 as irv1

    monkeypatch.delenv(recognizers.FACENET_WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    real = irv1.download_url_to_file
    urls = []

    def unreachable(url, dst, *args, **kwargs):
        urls.append(url)
        return real("http://127.0.0.1:9/" + url.rsplit("/", 1)[-1], dst, *args, progress=False)

    monkeypatch.setattr(irv1, "download_url_to_file", unreachable)
    with pytest.raises(recognizers.RecognizerUnavailable) as err:
        recognizers.get("facenet", device="cpu")
    message = str(err.value)
    assert urls and urls[0].endswith("20180402-114759-vggface2.pt")  # facenet-pytorch's own download was tried
    assert "let facenet-pytorch download them" in message and "network access" in message
    assert "weights=PATH" in message and recognizers.FACENET_WEIGHTS_ENV in message
    assert not list((tmp_path / "torch" / "checkpoints").glob("*.pt"))  # nothing half-written
