"""The GPU path hardened before its first GPU (issue 28), tested on this CPU where the decision allows.

Each decision is a pure function of what the code sees (device type, precision), tested here; the
backend switches exist without a GPU, so the prediction context's effect on them is tested here too.
Where a test must pretend a GPU exists it replaces only the probe (``torch.cuda.is_available``),
never the code under test, and says so. The CUDA variants skip here; ``benchmarks/gpu_check.sh``
runs them on a GPU (test names holding ``cuda`` are the ones it selects).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from pipeline_helpers import cli_env, tiny_params

from jasrbench import distributed, runtime, scoring
from jasrbench.batcher import Batcher
from jasrbench.data import degrade
from jasrbench.data.augment import AugmentConfig
from jasrbench.data.split import load_split
from jasrbench.models import available, build

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run benchmarks/gpu_check.sh)")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "models"))
from model_helpers import SMALL, at_model_scale, with_points  # noqa: E402


@pytest.fixture(scope="module")
def common(prepared_root):
    return load_split(prepared_root / "300w" / "common.npz").subset(np.arange(12))


def tiny_jasrnet(seed: int = 0):
    torch.manual_seed(seed)
    model = build("jasrnet", n_feats=16, n_shared_blocks=2, num_points=68)
    model.set_protocol("paper")
    with torch.no_grad():  # weights at a working scale, so every layer matters to the output
        gen = torch.Generator().manual_seed(seed)
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / m.weight[0].numel() ** 0.5)
    return model.eval()


# --- items 3 and 4: the backend switches of prediction ------------------------------------------------
def test_prediction_flags_decide_by_device_type_and_precision():
    fp32 = runtime.prediction_flags("cuda", "fp32")
    assert fp32 == runtime.PredictionFlags(tf32=False, cudnn_benchmark=False, deterministic=True)
    # bf16 prediction keeps TF32 as it is (autocast decides), but still no autotuning
    assert runtime.prediction_flags("cuda", "bf16") == runtime.PredictionFlags(None, False, True)
    for device_type in ("cpu", "mps", "meta"):
        assert runtime.prediction_flags(device_type, "fp32") is None
    with pytest.raises(ValueError, match="resolved precision"):
        runtime.prediction_flags("cuda", "auto")


def _tf32_state() -> dict:
    return {k: v for k, v in runtime.backend_state().items() if "fp32_precision" in k or "allow_tf32" in k}


def test_prediction_context_switches_tf32_and_autotuning_off_and_restores_them():
    before = runtime.backend_state()
    saved_benchmark = torch.backends.cudnn.benchmark
    try:
        runtime.configure_backends(torch.device("cuda"))  # what training sets (only a flag: no GPU needed)
        training = runtime.backend_state()
        assert training["cudnn_benchmark"] is True
        assert "tf32" in _tf32_state().values(), "this torch's cuDNN does not default to TF32: nothing to show"
        with runtime.prediction_backends(torch.device("cuda"), "fp32") as flags:
            assert flags.tf32 is False
            inside = runtime.backend_state()
            assert set(_tf32_state().values()) <= {"ieee", False}, _tf32_state()
            assert inside["cudnn_benchmark"] is False and inside["cudnn_deterministic"] is True
            assert inside["deterministic_algorithms"] is True and torch.is_deterministic_algorithms_warn_only_enabled()
            with runtime.prediction_backends("cuda:0", "fp32"):  # nested (facenet inside evaluate)
                assert runtime.backend_state() == inside
            assert runtime.backend_state() == inside
        assert runtime.backend_state() == training
        with pytest.raises(RuntimeError, match="on purpose"), runtime.prediction_backends("cuda", "fp32"):
            raise RuntimeError("on purpose")
        assert runtime.backend_state() == training
        with runtime.prediction_backends("cuda", "bf16"):
            assert _tf32_state() == {k: training[k] for k in _tf32_state()}  # TF32 left alone in bf16
            assert runtime.backend_state()["cudnn_benchmark"] is False
        assert runtime.backend_state() == training
        with runtime.prediction_backends(torch.device("cpu"), "fp32") as flags:
            assert flags is None and runtime.backend_state() == training
    finally:
        torch.backends.cudnn.benchmark = saved_benchmark
    assert runtime.backend_state() == before


def test_every_prediction_path_runs_inside_the_context(common, monkeypatch):
    """predict, score_split (so validation inside training and evaluate) and facenet enter the context
    with their precision. A spy records each entry and hands it to the real context (nothing replaced)."""
    from jasrbench.metrics import recognizers

    calls = []
    real = runtime.prediction_backends

    def spy(dev, precision="fp32"):
        calls.append((torch.device(dev).type, precision))
        return real(dev, precision)

    monkeypatch.setattr(runtime, "prediction_backends", spy)
    monkeypatch.setattr(recognizers, "prediction_backends", spy)
    model, cpu = tiny_jasrnet(), torch.device("cpu")
    runtime.predict(model, torch.zeros(2, 3, 16, 16), cpu, 2)
    scoring.score_split(model, common, cpu, 6, "bf16")
    scoring.validation_metrics(model, common, cpu, 6)
    assert calls == [("cpu", "fp32"), ("cpu", "bf16"), ("cpu", "fp32")]


@CUDA
def test_cuda_fp32_prediction_equals_the_cpu_within_fp32_rounding(common):  # pragma: no cover - needs a GPU
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    saved = torch.backends.cudnn.benchmark
    try:
        runtime.configure_backends(cuda)  # the training state: autotuning on, TF32 as torch defaults
        model = tiny_jasrnet()
        lr = degrade.to_tensor(common.lr_at(model.scale, slice(None)))
        with torch.no_grad():
            ref = model(lr).sr.double()
            gpu_model = tiny_jasrnet().to(cuda)
            with runtime.prediction_backends(cuda, "fp32"):
                raw = gpu_model(lr.to(cuda)).sr.double().cpu()
        err = float((raw - ref).abs().max() / ref.abs().max())
        assert err < 2e-5, f"fp32 prediction on CUDA differs from the CPU by {err:.2e} (TF32 would be ~1e-3)"
        sr_cpu, pts_cpu = runtime.predict(model, lr, cpu, 5)
        sr_gpu, pts_gpu = runtime.predict(gpu_model, lr, cuda, 5)
        diff = (sr_gpu - sr_cpu).abs()
        assert diff.max() <= 1 / 255 + 1e-6 and (diff > 1e-6).float().mean() < 1e-3  # one 8-bit level, rarely
        torch.testing.assert_close(pts_gpu, pts_cpu, atol=1e-3, rtol=0)
        assert torch.backends.cudnn.benchmark is True  # the training state is back
    finally:
        torch.backends.cudnn.benchmark = saved


@CUDA
def test_cuda_tf32_is_what_the_context_removes():  # pragma: no cover - needs a GPU
    """A 3×3 convolution in the context is fp32 exact to rounding; with TF32 forced on (Ampere and later) it is not."""
    cuda = torch.device("cuda")
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(4, 64, 32, 32, generator=gen), torch.randn(64, 64, 3, 3, generator=gen)
    ref = torch.nn.functional.conv2d(x.double(), w.double(), padding=1)

    def rel(out):
        return float((out.double().cpu() - ref).abs().max() / ref.abs().max())

    with runtime.prediction_backends(cuda, "fp32"):
        exact = rel(torch.nn.functional.conv2d(x.to(cuda), w.to(cuda), padding=1))
    assert exact < 1e-5
    if torch.cuda.get_device_capability(cuda) >= (8, 0):
        conv = torch.backends.cudnn.conv
        saved = conv.fp32_precision if hasattr(conv, "fp32_precision") else None
        try:
            if saved is not None:
                conv.fp32_precision = "tf32"
            else:  # torch < 2.9
                torch.backends.cudnn.allow_tf32 = True
            assert rel(torch.nn.functional.conv2d(x.to(cuda), w.to(cuda), padding=1)) > 10 * exact
        finally:
            if saved is not None:
                conv.fp32_precision = saved


@CUDA
def test_cuda_scores_do_not_depend_on_the_chunk_or_the_run(common):  # pragma: no cover - needs a GPU
    cuda = torch.device("cuda")
    saved = torch.backends.cudnn.benchmark
    try:
        runtime.configure_backends(cuda)  # validation runs inside training, after this
        model = tiny_jasrnet().to(cuda)
        a = scoring.score_split(model, common, cuda, 5, keep_sr=True)
        b = scoring.score_split(model, common, cuda, 5, keep_sr=True)
        c = scoring.score_split(model, common, cuda, 12, keep_sr=True)
        for key in a.per_image:  # the same run twice: the same bits
            assert np.array_equal(a.per_image[key], b.per_image[key]), key
        assert np.array_equal(a.sr, b.sr)
        np.testing.assert_allclose(c.per_image["psnr"], a.per_image["psnr"], atol=0.01)  # another chunk: rounding
        np.testing.assert_allclose(c.per_image["nme"], a.per_image["nme"], atol=1e-3)
    finally:
        torch.backends.cudnn.benchmark = saved


# --- item 9: DDP without the unused-parameter search ------------------------------------------------
@pytest.fixture(scope="module")
def gloo_world_of_one(tmp_path_factory):
    """A one-process gloo group: DDP's reducer checks at the next forward that every parameter was reduced."""
    if dist.is_initialized():
        pytest.skip("a process group is already running in this process")
    init = tmp_path_factory.mktemp("gloo") / "init"
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def faces(w300_root):
    """Two real 300W test faces (the model tests' crop): HR 128², LR 16², 68 visible points."""
    from jasrbench.data import degrade
    from jasrbench.data.crop import crop_face
    from jasrbench.data.images import load_rgb
    from jasrbench.data.landmarks import landmark_box, read_pts

    hrs, points = [], []
    for image in sorted((w300_root / "lfpw" / "testset").glob("*.jpg"))[:2]:
        pts = read_pts(image.with_suffix(".pts"))
        hr, _, mapping = crop_face(load_rgb(image), landmark_box(pts))
        hrs.append(hr)
        points.append(mapping.apply(pts))
    hr = degrade.to_tensor(np.stack(hrs))
    landmarks = torch.from_numpy(np.stack(points)).float()
    return {"lr": degrade.make_lr(hr), "hr": hr, "landmarks": landmarks,
            "visible": torch.ones(landmarks.shape[:2], dtype=torch.bool)}


def test_ddp_searches_no_unused_parameters():
    assert distributed.DDP_OPTIONS == {"find_unused_parameters": False}


@pytest.mark.parametrize("name", available())
def test_every_model_trains_under_ddp_without_the_unused_parameter_search(name, faces, gloo_world_of_one):
    """Two steps of each registered model (its own loss, small widths, batch 2) in DDP with the suite's
    options: a parameter without a gradient would fail the second forward (DDP's reducer check)."""
    torch.manual_seed(0)
    model = build(name, **SMALL.get(name, {})).train()
    if not any(p.requires_grad for p in model.parameters()):
        pytest.skip(f"{name} has no trainable parameters (nothing for DDP to reduce)")
    batch = with_points(at_model_scale(faces, model), model.num_points)
    net = distributed.ddp(model, torch.device("cpu"))
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        model.loss(net(batch["lr"]), batch)["total"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: no gradient reaches {missing[:5]}"


# --- item 11: the split goes to the device without a pinned host copy ----------------------------------
def test_batcher_copies_the_split_without_pinning(prepared_root, monkeypatch):
    """The copy to the device is one plain ``.to`` on every device (no device branch any more); the meta
    device stands in for a GPU (no memory, same code path), and pin_memory must not be called."""
    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: pinned.append(self.shape) or self)
    split = load_split(prepared_root / "300w" / "train.npz")
    mirror = torch.tensor(split.metadata["mirror_permutation"])
    batcher = Batcher(split, np.arange(16), AugmentConfig(), mirror, torch.device("meta"), seed=0, batch_size=4,
                      copies_per_epoch=1.0)
    assert batcher.context.device.type == "meta" and batcher.context.dtype == torch.uint8
    assert batcher.order(0).device.type == "meta"
    assert not pinned, f"pinned host copies: {pinned}"


@CUDA
def test_cuda_batcher_leaves_no_pinned_block(prepared_root):  # pragma: no cover - needs a GPU
    split = load_split(prepared_root / "300w" / "train.npz")
    stats = getattr(torch.cuda, "host_memory_stats", None)
    before = stats()["allocated_bytes.all.current"] if stats else None
    batcher = Batcher(split, np.arange(len(split)), AugmentConfig(), torch.tensor(split.metadata["mirror_permutation"]),
                      torch.device("cuda"), seed=0, batch_size=8, copies_per_epoch=1.0)
    batcher.batch(0, 0)
    torch.cuda.synchronize()
    assert batcher.context.device.type == "cuda"
    if stats:
        grown = stats()["allocated_bytes.all.current"] - before
        assert grown < split.context.nbytes // 10, f"{grown} pinned host bytes for a {split.context.nbytes}-byte split"


# --- item 12: facenet runs on evaluate's device --------------------------------------------------------
@pytest.fixture(scope="module")
def random_facenet_weights(tmp_path_factory):
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("facenet") / "random-vggface2.pt"
    torch.save(InceptionResnetV1(pretrained=None, classify=False).state_dict(), path)
    return path


def test_recognizers_take_the_device_where_they_run_on_torch(random_facenet_weights, monkeypatch):
    from jasrbench.metrics import recognizers

    # Pretend a GPU is visible: only the probe is replaced. Without a device facenet would pick CUDA.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    rec = recognizers.get("facenet", weights=random_facenet_weights, device=torch.device("cpu"))
    assert rec.device == torch.device("cpu")
    assert recognizers.get("dlib", device="cuda").name == "dlib"  # CPU-only: the device is ignored


def test_evaluate_runs_facenet_on_its_device(prepared_root, random_facenet_weights, tmp_path, monkeypatch, verify_root):
    """--device / JASRBENCH_DEVICE reach facenet. Pretend a GPU is visible (only the probe replaced): facenet
    used to pick CUDA on its own and fail here; now it runs on evaluate's CPU."""
    from jasrbench.data.prepare import prepare
    from jasrbench.evaluate import evaluate

    prepare("lfw", verify_root, tmp_path / "prepared" / "lfw")
    monkeypatch.setenv("JASRBENCH_FACENET_WEIGHTS", str(random_facenet_weights))
    monkeypatch.setenv("JASRBENCH_DEVICE", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    params = tiny_params(tmp_path / "prepared")
    params["evaluate"].update(pairs_per_fold=1, recognizer="facenet")
    summary = evaluate("bicubic", "lfw/test", tmp_path / "out", params)
    assert summary["recognizer"] == "facenet" and summary["runtime"]["device"] == "cpu"
    assert summary["pairs"] == 20 and 0 <= summary["metrics"]["acc"]["mean"] <= 100


# --- items 5 and 7: the GPU sweep ------------------------------------------------------------------
SWEEP = [sys.executable, str(REPO / "benchmarks" / "gpu_sweep.py"), "--device", "cpu", "--batches", "2",
         "--steps", "1", "--warmup", "0", "--compile", ""]
SMALL_JSON = json.dumps({"vdsr": SMALL["vdsr"], "jasrnet_lr64": SMALL["jasrnet_lr64"], "jasrnet": SMALL["jasrnet"]})


def test_sweep_trains_each_model_at_its_own_scale(prepared_root, tmp_path):
    out = tmp_path / "sweep.json"
    run = subprocess.run([*SWEEP, "--prepared", str(prepared_root), "--models", "vdsr,jasrnet_lr64",
                          "--overrides", SMALL_JSON, "--json", str(out)], env=cli_env(), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = {r["model"]: r for r in json.loads(out.read_text())["rows"]}
    assert "error" not in rows["jasrnet_lr64"], rows["jasrnet_lr64"]
    assert rows["jasrnet_lr64"]["scale"] == 2 and rows["vdsr"]["scale"] == 8
    assert all(np.isfinite(r["img_per_s"]) and r["final_loss_finite"] for r in rows.values())


def test_sweep_keeps_the_rows_measured_before_it_is_stopped(prepared_root, tmp_path):
    """The JSON holds every finished row while the sweep runs, so a time limit loses only the row in progress."""
    out = tmp_path / "sweep.json"
    proc = subprocess.Popen([*SWEEP, "--prepared", str(prepared_root), "--models", "vdsr,jasrnet",
                             "--overrides", json.dumps({"vdsr": SMALL["vdsr"]}), "--steps", "50", "--json", str(out)],
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first = proc.stdout.readline()  # printed after the row was written; full-size JASRNet takes long
        assert "vdsr" in first, first
        time.sleep(0.5)
        assert proc.poll() is None, "the sweep ended before it could be stopped"
    finally:
        proc.kill()
        proc.wait()
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"] for r in rows] == ["vdsr"] and "img_per_s" in rows[0]
