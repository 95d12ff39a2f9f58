"""Face recognizers behind one interface, for LFW verification of SR faces (DESIGN §4).

``get("facenet" | "dlib", **options).embed(faces)`` → N×D float32, unit rows. ``faces``: N×H×W×3 uint8
RGB face crops (e.g. ``degrade.to_uint8(sr)``), the 8-bit images a user would save; every model's
output, HR and the bicubic baseline go through the same path.

One preparation rule, with no landmark detection and no per-image alignment (alignment run on an SR
output would depend on the model being judged): the suite's crop is ``MARGIN`` × the face box, centred
on it (:mod:`jasrbench.data.crop`; for LFW-layout data the box is the central 1/2.2 square, LFW's
Viola–Jones box), so the face box is known without looking at the pixels. Each recognizer takes a
fixed window of the crop, in face-box units relative to the box centre, matching the framing its
weights were trained on, and resizes it with the suite's antialiased bicubic
(:func:`jasrbench.data.degrade.resize_bicubic`). The windows (:data:`DLIB_WINDOW`,
:data:`FACENET_WINDOW`) are the medians, over the photos of ``verify/`` (LFW's layout; no identity
labels involved), of each recognizer's own aligner's chip mapped into the crop
(:func:`calibrate_window`); the calibration and the accuracy it costs against per-image alignment are
in results/README.md. For crops made by another rule pass ``window=None`` (the whole crop) or a
:class:`Window` of your own.

- ``facenet``: facenet-pytorch's ``InceptionResnetV1`` (VGGFace2); window stretched to 160×160 as
  its ``extract_face`` does, then ``(x·255 − 127.5) / 128``; 512-D. Weights from ``weights=PATH`` (a
  ``state_dict`` such as ``20180402-114759-vggface2.pt``; ``logits.*`` ignored), else
  ``$JASRBENCH_FACENET_WEIGHTS``, else facenet-pytorch's download (cached in
  ``$TORCH_HOME/checkpoints``); when neither works the error names both ways. Runs on ``device``
  (``evaluate`` passes its own: ``--device`` / ``$JASRBENCH_DEVICE``; ``None``/``auto``: CUDA when
  available), in batches, in fp32 without TF32 (:func:`jasrbench.runtime.prediction_backends`).
- ``dlib``: ``dlib_face_recognition_resnet_model_v1`` from the ``face-recognition-models`` package
  (located, not imported: its import needs ``pkg_resources``); window → 150×150 chips rounded to 8
  bits, ``compute_face_descriptor`` without jitter; 128-D, L2-normalized here; offline. Its CPU
  network is single-threaded and holds the GIL (threads gave no speed-up), so batches of 32 run in
  ``workers`` spawned processes (``dlib_worker.py``), each with its own copy of the network; the
  batches, and so the embeddings, are the same for any worker count.
"""

from __future__ import annotations

import importlib.util
import os
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..data.crop import MARGIN
from ..data.degrade import resize_bicubic, to_tensor
from ..errors import ConfigError, DataError, JasrbenchError
from ..runtime import prediction_backends
from . import dlib_worker

FACENET_WEIGHTS_ENV = "JASRBENCH_FACENET_WEIGHTS"
FACENET_SIZE = 160
DLIB_SIZE = 150
DLIB_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"


class RecognizerUnavailable(JasrbenchError):
    """A recognizer cannot be built here (missing weights, package or model file)."""


class Recognizer(Protocol):
    name: str
    dim: int
    input_size: int

    def embed(self, faces: np.ndarray) -> np.ndarray: ...


def _check_faces(faces) -> np.ndarray:
    if isinstance(faces, torch.Tensor):
        faces = faces.detach().cpu().numpy()
    faces = np.asarray(faces)
    if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be N×H×W×3 uint8 (RGB), got {faces.dtype} {faces.shape}")
    return faces


@dataclass(frozen=True)
class Window:
    """A fixed window of the face crop, in face-box sides, relative to the face-box centre (y down)."""

    dx: float
    dy: float
    width: float
    height: float

    def pixels(self, size: int, margin: float = MARGIN) -> tuple[int, int, int, int]:
        """(top, left, height, width) in a ``size``-px crop of ``margin`` × the face box, clamped."""
        box = size / margin
        h = max(1, min(size, int(round(self.height * box))))
        w = max(1, min(size, int(round(self.width * box))))
        top = int(round(size / 2 + self.dy * box - self.height * box / 2))
        left = int(round(size / 2 + self.dx * box - self.width * box / 2))
        return min(max(top, 0), size - h), min(max(left, 0), size - w), h, w


# Medians measured by calibrate_window() on the photos of verify/ (results/README.md, "Recognizer windows").
DLIB_WINDOW = Window(0.018, 0.104, 1.037, 1.037)
FACENET_WINDOW = Window(0.008, 0.014, 0.891, 1.197)


def prepare_faces(faces: np.ndarray, size: int, window: Window | None = None) -> torch.Tensor:
    """The one preparation rule: N×S×S×3 uint8 face crops → the window of each, resized to
    N×3×size×size float in [0, 1] (antialiased bicubic). ``window=None``: the whole crop."""
    faces = _check_faces(faces)
    if faces.shape[1] != faces.shape[2]:
        raise ValueError(f"face crops must be square, got {faces.shape[1]}×{faces.shape[2]}")
    x = to_tensor(faces)
    if window is not None:
        top, left, h, w = window.pixels(faces.shape[1])
        x = x[:, :, top : top + h, left : left + w]
    if x.shape[-2:] != (size, size):
        x = resize_bicubic(x, (size, size))
    return x


def _normalize(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    if not (norms > 0).all():
        raise ValueError("a recognizer returned a zero descriptor")
    return (v / norms).astype(np.float32)


# --- facenet ------------------------------------------------------------------------------------------
def _facenet_module():
    try:
        import facenet_pytorch.models.inception_resnet_v1 as irv1
    except ImportError as exc:  # pragma: no cover - facenet-pytorch is a dependency
        raise RecognizerUnavailable(
            f"facenet-pytorch is not importable ({exc}); install it with "
            "`pip install --no-deps facenet-pytorch==2.6.0` or use the offline recognizer 'dlib'"
        ) from exc
    return irv1


def _load_local_facenet(path: Path) -> torch.nn.Module:
    irv1 = _facenet_module()
    if not path.is_file():
        raise DataError(path, "facenet weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(path, f"not a readable PyTorch weights file ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(path, f"expected a state_dict, found {type(state).__name__}")
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}
    model = irv1.InceptionResnetV1(pretrained=None, classify=False)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DataError(path, f"not InceptionResnetV1 weights: missing {missing[:3]}…, unexpected {unexpected[:3]}…")
    return model


def _download_facenet() -> torch.nn.Module:
    irv1 = _facenet_module()
    try:
        return irv1.InceptionResnetV1(pretrained="vggface2", classify=False)
    except Exception as exc:
        cache = Path(irv1.get_torch_home()) / "checkpoints"
        raise RecognizerUnavailable(
            "facenet: no VGGFace2 weights. facenet-pytorch could not download them "
            f"({type(exc).__name__}: {exc}) into {cache}. Either (1) let facenet-pytorch download them: "
            "run once with network access (they are cached in $TORCH_HOME/checkpoints), or (2) give a local "
            "file: download 20180402-114759-vggface2.pt from facenet-pytorch's GitHub releases (v2.2.9) and "
            f"pass weights=PATH (or set {FACENET_WEIGHTS_ENV}=PATH). The offline recognizer 'dlib' needs neither."
        ) from exc


class FacenetRecognizer:
    """facenet-pytorch InceptionResnetV1 (VGGFace2): 160×160 input, 512-D unit embeddings."""

    name = "facenet"
    dim = 512
    input_size = FACENET_SIZE

    def __init__(self, weights: str | Path | None = None, device: str | torch.device | None = None,
                 batch_size: int = 64, window: Window | None = FACENET_WINDOW):
        self.window = window
        weights = weights or os.environ.get(FACENET_WEIGHTS_ENV) or None
        model = _load_local_facenet(Path(weights).expanduser()) if weights else _download_facenet()
        self.weights = str(weights) if weights else "facenet-pytorch:vggface2"
        if device is None or str(device) == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.batch_size = int(batch_size)

    @torch.inference_mode()
    def embed(self, faces: np.ndarray) -> np.ndarray:
        faces = _check_faces(faces)
        out = []
        with prediction_backends(self.device, "fp32"):  # on CUDA: no TF32, no autotuning (issue 28)
            for s in range(0, len(faces), self.batch_size):
                x = prepare_faces(faces[s : s + self.batch_size], FACENET_SIZE, self.window).to(self.device)
                x = (x * 255 - 127.5) / 128.0  # facenet-pytorch's fixed_image_standardization
                out.append(self.model(x).float().cpu().numpy())
        return _normalize(np.concatenate(out) if out else np.zeros((0, self.dim)))


# --- dlib ---------------------------------------------------------------------------------------------
def dlib_model_path() -> Path:
    """The dlib recognition model file shipped by ``face-recognition-models`` (located, not imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RecognizerUnavailable(
            "dlib recognizer: the package face-recognition-models (which holds "
            f"{DLIB_MODEL_FILE}) is not installed; `pip install face-recognition-models`, or pass model_path=PATH"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models" / DLIB_MODEL_FILE


class DlibRecognizer:
    """dlib's ResNet face descriptor: 150×150 chips, 128-D unit embeddings, CPU, offline."""

    name = "dlib"
    dim = 128
    input_size = DLIB_SIZE

    def __init__(self, model_path: str | Path | None = None, workers: int | None = None, batch_size: int = 32,
                 window: Window | None = DLIB_WINDOW):
        self.window = window
        try:
            import dlib
        except ImportError as exc:  # pragma: no cover - dlib-bin is a dependency
            raise RecognizerUnavailable(f"dlib is not importable ({exc}); `pip install dlib-bin`") from exc
        self.model_path = Path(model_path) if model_path else dlib_model_path()
        if not self.model_path.is_file():
            raise DataError(self.model_path, "dlib face recognition model file not found")
        if workers is None:  # torch's thread budget: the cores, or launch's OMP_NUM_THREADS per stage
            workers = min(torch.get_num_threads(), 8)
        self.workers = max(1, int(workers))
        self.batch_size = int(batch_size)
        try:  # load once now: a bad file fails here, naming it
            self._net = dlib.face_recognition_model_v1(str(self.model_path))
        except RuntimeError as exc:
            raise DataError(self.model_path, f"not a dlib face recognition model ({exc})") from exc

    def embed(self, faces: np.ndarray) -> np.ndarray:
        faces = _check_faces(faces)
        x = prepare_faces(faces, DLIB_SIZE, self.window)
        chips = x.mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        batches = [chips[s : s + self.batch_size] for s in range(0, len(chips), self.batch_size)]
        if not batches:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.workers == 1 or len(batches) == 1:
            out = [dlib_worker.descriptors(self._net, b) for b in batches]
        else:
            # spawn, not fork: a forked child of a process whose OpenMP threads already ran can hang.
            with ProcessPoolExecutor(min(self.workers, len(batches)), mp_context=multiprocessing.get_context("spawn"),
                                     initializer=dlib_worker.load, initargs=(str(self.model_path),)) as pool:
                out = list(pool.map(dlib_worker.embed_batch, batches))
        return _normalize(np.concatenate(out))


# --- calibration of the windows -----------------------------------------------------------------------
def _dlib_aligner():
    import dlib

    models = dlib_model_path().parent
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))

    def chip(image: np.ndarray, centre: tuple[float, float]):
        """dlib's own chip rectangle (x0, y0, x1, y1; pixel-centre coordinates) for the face nearest ``centre``."""
        dets = detector(image, 1)
        if not dets:
            return None
        det = min(dets, key=lambda r: (r.center().x - centre[0]) ** 2 + (r.center().y - centre[1]) ** 2)
        r = dlib.get_face_chip_details(predictor(image, det), DLIB_SIZE, 0.25).rect
        return r.left(), r.top(), r.right(), r.bottom()

    return chip


def _facenet_aligner():
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(image_size=FACENET_SIZE, margin=14, device="cpu")

    def chip(image: np.ndarray, centre: tuple[float, float]):
        """facenet-pytorch's extract_face box (MTCNN box + margin 14 of 160), in pixel-centre coordinates."""
        boxes, _ = mtcnn.detect(image)
        if boxes is None:
            return None
        b = min(boxes, key=lambda q: ((q[0] + q[2]) / 2 - 0.5 - centre[0]) ** 2 + ((q[1] + q[3]) / 2 - 0.5 - centre[1]) ** 2)
        mx = 14 * (b[2] - b[0]) / (FACENET_SIZE - 14)
        my = 14 * (b[3] - b[1]) / (FACENET_SIZE - 14)
        # MTCNN boxes are in pixel-edge coordinates: −0.5 to pixel centres.
        return b[0] - mx / 2 - 0.5, b[1] - my / 2 - 0.5, b[2] + mx / 2 - 0.5, b[3] + my / 2 - 0.5

    return chip


def calibrate_window(recognizer: str, images, boxes, hr_size: int = 128) -> tuple[Window, int]:
    """The median window that ``recognizer``'s own aligner picks, in the suite's crop frame.

    ``images``: original photographs (H×W×3 uint8), ``boxes``: their face boxes
    (e.g. :func:`jasrbench.data.crop.lfw_face_box`). For each photo the aligner
    (dlib: frontal detector + 5-point shape predictor + ``get_face_chip_details``;
    facenet: facenet-pytorch's MTCNN with margin 14) gives its chip rectangle,
    which is mapped into the ``hr_size`` crop of :func:`jasrbench.data.crop.crop_face`
    and expressed in face-box units. Returns (median window, faces measured).
    This is how :data:`DLIB_WINDOW` and :data:`FACENET_WINDOW` were obtained.
    """
    from ..data.crop import crop_face

    aligner = {"dlib": _dlib_aligner, "facenet": _facenet_aligner}[recognizer]()
    box_px = hr_size / MARGIN
    rows = []
    for image, box in zip(images, boxes):
        rect = aligner(image, ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
        if rect is None:
            continue
        mapping = crop_face(image, np.asarray(box), hr_size=hr_size)[2]
        (x0, y0), (x1, y1) = mapping.apply(np.array([[rect[0], rect[1]], [rect[2], rect[3]]], dtype=np.float64))
        cx, cy = (x0 + x1) / 2 + 0.5, (y0 + y1) / 2 + 0.5  # to pixel-edge coordinates: the crop centre is hr_size/2
        rows.append(((cx - hr_size / 2) / box_px, (cy - hr_size / 2) / box_px, (x1 - x0) / box_px, (y1 - y0) / box_px))
    if not rows:
        raise ValueError(f"{recognizer}: its aligner found no face in any image")
    med = np.median(np.asarray(rows), axis=0)
    return Window(*(round(float(v), 3) for v in med)), len(rows)


RECOGNIZERS = {"facenet": FacenetRecognizer, "dlib": DlibRecognizer}
ON_DEVICE = frozenset({"facenet"})  # recognizers that take ``device`` (dlib is CPU-only)


def get(name: str, *, device: str | torch.device | None = None, **options) -> Recognizer:
    """Build the recognizer registered as ``name`` (``"facenet"``, ``"dlib"``) with its options.

    ``device``: where a torch recognizer (facenet) runs; dlib runs on the CPU and ignores it.
    """
    if name not in RECOGNIZERS:
        raise ConfigError(f"unknown recognizer {name!r}; choose one of {sorted(RECOGNIZERS)}")
    if device is not None and name in ON_DEVICE:
        options["device"] = device
    return RECOGNIZERS[name](**options)


def available() -> list[str]:
    return sorted(RECOGNIZERS)


__all__ = [
    "DLIB_SIZE", "DLIB_WINDOW", "FACENET_SIZE", "FACENET_WINDOW", "Window", "FACENET_WEIGHTS_ENV", "DlibRecognizer", "FacenetRecognizer", "ON_DEVICE",
    "RECOGNIZERS", "Recognizer", "RecognizerUnavailable", "available", "calibrate_window", "dlib_model_path", "get", "prepare_faces",
]
