"""The compile decision and its eager fallback (issue 28 items 1-2), decided from what the loop sees.

The decision is a pure function of the requested setting, the device type, the process count and whether
the model holds SyncBatchNorm; the fallback is exercised with a compile that really fails: a backend that
raises, and Inductor without a C++ compiler (Triton/Inductor's run-time needs, the failure users meet).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from pipeline_helpers import cli_env, tiny_params, write_params

from jasrbench import distributed, step
from jasrbench.data.augment import AugmentConfig
from jasrbench.data.split import load_split
from jasrbench.errors import ConfigError
from jasrbench.holdout import carve_validation
from jasrbench.batcher import Batcher
from jasrbench.models import build


@pytest.mark.parametrize(("requested", "device", "world", "syncbn", "compiles", "why"), [
    ("auto", "cuda", 1, False, True, "auto: compiled on cuda"),
    ("auto", "cpu", 1, False, False, "auto: eager on cpu"),
    (True, "cpu", 1, False, True, "on"),
    (False, "cuda", 1, False, False, "off"),
    ("auto", "cuda", 2, False, True, "auto: compiled on cuda"),   # DDP without SyncBN compiles
    ("auto", "cuda", 4, True, False, "SyncBatchNorm under DDP"),   # FSRNet, Super-FAN, SRResNet under torchrun
    ("auto", "cuda", 1, True, True, "auto: compiled on cuda"),     # one process keeps plain batch norms
])
def test_compile_decision(requested, device, world, syncbn, compiles, why):
    decision = step.compile_decision(requested, device, world=world, sync_batchnorm=syncbn)
    assert decision.compile is compiles and why in decision.reason


def test_compile_is_off_for_eager_terms_and_closed_form_models_and_bad_values_are_named():
    assert not step.compile_decision(True, "cuda", eager_terms=True).compile
    assert not step.compile_decision(True, "cuda", closed_form=True).compile
    with pytest.raises(ConfigError, match="JASRBENCH_COMPILE must be true, false or auto, got 'yes'"):
        step.compile_decision("yes", "cuda")


def test_sync_batchnorm_is_seen_where_torchrun_converts_the_batch_norms():
    # distributed.sync_batchnorm converts only under a process group on CUDA: the conversion torch does is
    # what the decision must see (SRResNet holds batch norms, EDSR none).
    def srresnet():
        return build("srresnet", n_feats=8, n_blocks=2)

    assert not step.has_sync_batchnorm(srresnet())
    assert step.has_sync_batchnorm(torch.nn.SyncBatchNorm.convert_sync_batchnorm(srresnet()))  # converts in place
    assert not step.has_sync_batchnorm(torch.nn.SyncBatchNorm.convert_sync_batchnorm(build("edsr", n_feats=8, n_blocks=2)))
    # Outside torchrun nothing is converted: one process compiles as usual.
    assert not step.has_sync_batchnorm(distributed.sync_batchnorm(srresnet(), torch.device("cpu")))


@pytest.fixture(scope="module")
def batch(prepared_root):
    split = load_split(prepared_root / "300w" / "train.npz")
    train_idx, _ = carve_validation(len(split), 0, 8, 16)
    mirror = torch.tensor(split.metadata["mirror_permutation"])
    return Batcher(split, train_idx, AugmentConfig(), mirror, torch.device("cpu"), seed=0, batch_size=2,
                   copies_per_epoch=1.0).batch(0, 0)


def test_a_failing_compile_falls_back_to_the_eager_step(batch):
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C compiler found")

    torch.manual_seed(0)
    model = build("edsr", n_feats=8, n_blocks=2)
    eager = step.loss_function(model, torch.device("cpu"), "fp32", compile=False)(batch)
    loss_fn = step.loss_function(model, torch.device("cpu"), "fp32", compile=True, backend=broken_backend)
    assert isinstance(loss_fn, step.CompiledLoss) and loss_fn.status == "compiled"
    first = loss_fn(batch)
    assert loss_fn.status.startswith("failed → eager (") and "no C compiler found" in loss_fn.status
    assert torch.equal(first["total"], eager["total"])
    assert torch.equal(loss_fn(batch)["total"], eager["total"])  # and every later step eager too


def test_train_records_a_compile_that_failed_and_trains_on(prepared_root, tmp_path):
    # Inductor compiles C++ for the CPU: with no compiler (CXX names none) the first compiled step fails,
    # as it would on a machine without one. The run goes on eagerly and says so in train.json.
    params = tiny_params(prepared_root, epochs=1)
    params_file = write_params(tmp_path / "repo", params)
    env = {**cli_env(), "JASRBENCH_COMPILE": "true", "CXX": "/nonexistent/c++", "CC": "/nonexistent/cc",
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "jasrbench.cli", "train", "edsr", "--dataset", "300w",
                           "--params", str(params_file), "--out", str(tmp_path / "m"), "--results", str(tmp_path / "r")],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((tmp_path / "r" / "train.json").read_text())
    assert info["compile"].startswith("failed → eager ("), info["compile"]
    assert (tmp_path / "m" / "model.pt").is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_compiled_step_equals_eager_or_falls_back_named(batch):
    # On a GPU: the compiled step runs (or, where Triton cannot build, falls back and says why).
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = build("edsr", n_feats=8, n_blocks=2).to(dev)
    cuda_batch = {k: v.to(dev) for k, v in batch.items()}
    eager = step.loss_function(model, dev, "fp32", compile=False)(cuda_batch)
    loss_fn = step.loss_function(model, dev, "fp32", compile=True)
    compiled = loss_fn(cuda_batch)
    assert loss_fn.status == "compiled" or loss_fn.status.startswith("failed → eager (")
    torch.testing.assert_close(compiled["total"], eager["total"], rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_syncbn_model_under_world_two_is_not_compiled():
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(build("fsrnet", n_feats=8, prior_feats=8, coarse_blocks=1,
                                                                encoder_blocks=1, decoder_blocks=1, hg_depth=2)).cuda()
    decision = step.compile_decision("auto", "cuda", world=2, sync_batchnorm=step.has_sync_batchnorm(model))
    assert not decision.compile and "SyncBatchNorm" in decision.reason
