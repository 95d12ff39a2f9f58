"""The fast training path (issue 12) on real 300W faces: the device batcher, precision detection, compile.

CUDA variants skip on a machine without a GPU (``benchmarks/gpu_check.sh`` runs them on one).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from jasrbench import runtime, step
from jasrbench.batcher import Batcher, generator
from jasrbench.data import degrade
from jasrbench.data.augment import AugmentConfig, augment_batch
from jasrbench.data.split import load_split
from jasrbench.errors import ConfigError
from jasrbench.models import build
from jasrbench.holdout import carve_validation

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run benchmarks/gpu_check.sh)")


@pytest.fixture(scope="module")
def split(prepared_root):
    return load_split(prepared_root / "300w" / "train.npz")


def _batcher(split, dev, augment=AugmentConfig(), batch_size=8):
    train_idx, _ = carve_validation(len(split), 0, 16, 64)
    mirror = torch.tensor(split.metadata["mirror_permutation"])
    return Batcher(split, train_idx, augment, mirror, torch.device(dev), seed=0, batch_size=batch_size,
                   copies_per_epoch=1.5), train_idx


def _host_batch(split, train_idx, augment, epoch, step_, batch_size=8):
    """The same batch built the old way: float copies of the faces on the host, then augment_batch."""
    order = torch.cat([torch.randperm(len(train_idx), generator=generator(0, epoch, c)) for c in range(2)])
    faces = train_idx[order[(step_ * batch_size + torch.arange(batch_size)) % len(order)].numpy()]
    hr, pts, vis = augment_batch(degrade.to_tensor(split.context[faces]),
                                 torch.from_numpy(split.landmarks[faces] + split.context_offset),
                                 torch.from_numpy(split.visible[faces]), augment, generator(0, epoch, step_, 1),
                                 torch.tensor(split.metadata["mirror_permutation"]))
    return {"lr": degrade.make_lr(hr, protocol=split.protocol), "hr": hr, "landmarks": pts, "visible": vis}


def test_device_batches_equal_host_built_batches_and_depend_only_on_the_step(split):
    batcher, train_idx = _batcher(split, "cpu")
    # The split stays uint8 and is not copied on the CPU (the tensor shares the array's memory).
    assert batcher.context.dtype == torch.uint8
    assert batcher.context.data_ptr() == torch.from_numpy(split.context).data_ptr()
    positions = [(0, 0), (0, 9), (1, 4), (3, 2)]
    sequential = {p: batcher.batch(*p) for p in positions}
    fresh, _ = _batcher(split, "cpu")
    for epoch, step_ in reversed(positions):  # any order, any fresh batcher: the same batch
        host = _host_batch(split, train_idx, AugmentConfig(), epoch, step_)
        for key in host:
            assert torch.equal(sequential[(epoch, step_)][key], host[key]), key
            assert torch.equal(fresh.batch(epoch, step_)[key], host[key]), key
    assert not torch.equal(sequential[(0, 0)]["hr"], sequential[(0, 9)]["hr"])


def test_flip_relabels_visibility_with_the_landmarks(split):
    flip = AugmentConfig(scale=(1.0, 1.0), rotation=0.0, flip=1.0)
    batcher, _ = _batcher(split, "cpu", flip)
    batcher.visible = batcher.visible.clone()
    batcher.visible[:, 36] = False  # the subject's right eye corner, hidden on every face
    batch = batcher.batch(0, 0)
    # After the flip, the mirror point (45, the left eye's outer corner) carries the hidden flag.
    assert (~batch["visible"][:, 45]).all() and batch["visible"][:, 36].all()


@pytest.mark.parametrize(("flags", "expected"), [
    ({"avx2", "fma"}, "fp32"),                          # an AVX2-only EPYC: bf16 is emulated there, 9x slower
    ({"avx2", "avx512f", "avx512bw"}, "fp32"),          # AVX512 without bf16
    ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),       # native bf16 dot products
    ({"avx2", "avx512f", "amx_bf16", "amx_tile"}, "bf16"),  # AMX
])
def test_auto_precision_follows_the_cpu_flags(flags, expected):
    # The flags are given here (the probe); the decision is the code under test.
    assert runtime.resolve_precision("auto", torch.device("cpu"), frozenset(flags)) == expected


def test_auto_precision_on_this_machine_reads_proc_cpuinfo():
    text = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    native = bool({"avx512_bf16", "amx_bf16"} & set(line.partition(":")[2].split()))
    cpu = torch.device("cpu")
    if line:
        assert runtime.resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert runtime.resolve_precision("fp32", cpu) == "fp32" and runtime.resolve_precision("bf16", cpu) == "bf16"
    assert runtime.resolve_precision("auto", torch.device("cuda")) == "bf16"
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16, got 'fp16'"):
        runtime.resolve_precision("fp16", cpu)
    info = runtime.describe(cpu, "fp32", False)
    assert info["cpu_capability"].startswith(torch.backends.cpu.get_cpu_capability())
    assert {"device", "precision", "compile", "cpu_capability"} <= set(info)


@pytest.mark.parametrize(("setting", "message"), [
    ({"precision": "fp16"}, "train.precision must be one of auto, fp32, bf16, got 'fp16'"),
    ({"compile": "yes"}, "train.compile: a runtime setting, not an experiment param (it changes speed, not results): "
                         "remove it and set JASRBENCH_COMPILE (see jasrbench/settings.py)"),
    ({"check_every": 0}, "train.check_every must be >= 1, got 0"),
])
def test_bad_fast_path_settings_are_named_when_params_load(setting, message):
    from jasrbench import recipe

    recipe.check_train({"precision": "bf16", "check_every": 5}, "train")
    with pytest.raises(ConfigError) as err:
        recipe.check_train(setting, "train")
    assert str(err.value) == message


def _one_step(model, batch, loss_fn):
    optimizer = step.make_optimizer(model, 1e-3, (0.9, 0.999), 5e-4, torch.device("cpu"))
    losses = loss_fn(batch)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    optimizer.step()
    return {k: v.detach() for k, v in losses.items()}, {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_one_compiled_training_step_equals_the_eager_step(split):
    """torch.compile (inductor, CPU) of forward + loss: same losses and same updated weights, within tolerance.

    A two-block EDSR at width 4 keeps inductor's CPU compilation to seconds (a JASRNet graph, even
    at width 4, takes minutes on 2 cores); the compiled path is the same for every model
    (step.loss_function), and the CUDA test compiles JASRNet.
    """
    batcher, _ = _batcher(split, "cpu", batch_size=4)
    batch = batcher.batch(0, 0)
    results = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = build("edsr", n_feats=4, n_blocks=2).train()
        start = {k: v.detach().clone() for k, v in model.state_dict().items()}
        results.append(_one_step(model, batch, step.loss_function(model, torch.device("cpu"), "fp32", compiled)))
    (eager_losses, eager_w), (comp_losses, comp_w) = results
    for key in ("total", "sr", "heatmap"):
        torch.testing.assert_close(comp_losses[key], eager_losses[key], rtol=1e-4, atol=1e-5)
    for key in eager_w:
        torch.testing.assert_close(comp_w[key], eager_w[key], rtol=1e-3, atol=1e-5, msg=key)
    assert any(not torch.equal(eager_w[k], v) for k, v in start.items()), "the step changed nothing"


@CUDA
def test_cuda_batches_match_the_cpu_batches(split):
    cpu, _ = _batcher(split, "cpu")
    gpu, _ = _batcher(split, "cuda")
    for epoch, step_ in [(0, 0), (2, 5)]:
        a, b = cpu.batch(epoch, step_), gpu.batch(epoch, step_)
        assert torch.equal(a["visible"], b["visible"].cpu())
        torch.testing.assert_close(b["landmarks"].cpu(), a["landmarks"], atol=1e-4, rtol=0)
        # Bilinear sampling and the 8-bit rounding can differ by one level at a few pixels.
        assert (b["hr"].cpu() - a["hr"]).abs().max() <= 1 / 255 + 1e-6
        assert ((b["hr"].cpu() - a["hr"]).abs() > 1e-6).float().mean() < 0.01


@CUDA
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_train_20_steps_and_evaluate_on_cuda_in_bf16(prepared_root, tmp_path, compiled, monkeypatch):
    from pipeline_helpers import tiny_params

    from jasrbench.train import train

    monkeypatch.setenv("JASRBENCH_COMPILE", str(compiled).lower())  # a runtime setting (jasrbench/settings.py)
    params = tiny_params(prepared_root, epochs=1, batch_size=4, max_faces=80, precision="bf16", check_every=5)
    summary = train("jasrnet", "300w", params, tmp_path / "ckpt", tmp_path / "res", device="cuda")
    assert summary["steps_per_epoch"] == 20
    assert summary["device"] == "cuda" and summary["precision"] == "bf16" and summary["compile"] is compiled
    assert np.isfinite(summary["best_val_psnr"]) and np.isfinite(summary["best_val_nme"])
