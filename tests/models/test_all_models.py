"""The contract every registered model keeps, one parametrized family per check (timm style).

Every name in the registry is covered automatically (a new architecture file
registers itself and is tested here with no edit). Forward/backward checks run
on small widths (``SMALL`` overrides; a name without an entry runs at its
registry defaults — slower, never skipped); the parameter count is checked at
registry defaults against the number the model's docstring states. Inputs are
two real 300W faces degraded ×8 (DESIGN §6: tests are real).
"""

from __future__ import annotations

import inspect
import re

import pytest
import torch
from torch import nn

from jasrbench.data import degrade
from jasrbench.models import FaceModel, ModelOutput, available, build, spec
from model_helpers import SMALL, at_model_scale, with_points

NAMES = available()
BATCH = 2


def build_small(name: str, seed: int = 0) -> FaceModel:
    torch.manual_seed(seed)
    return build(name, **SMALL.get(name, {}))


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every conv/linear layer weights at a working scale (std 1/√fan_in) and non-zero biases.

    At their own init some models' outputs are nearly constant (JASRNet's N(0, 0.01)
    weights make the SR output ≈ the mean shift), which would make a numerical
    comparison vacuous; these weights make every layer matter.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                fan_in = m.weight[0].numel() if not isinstance(m, nn.ConvTranspose2d) else m.weight[:, 0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / fan_in**0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
    return model


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def documented_count(name: str) -> int:
    """The count the docs state for ``name``: ``Parameters (name): N``, else ``Parameters: N``.

    Looked up in the class docstring, then the module docstring.
    """
    builder = spec(name).builder
    docs = [inspect.getdoc(builder) or "", inspect.getmodule(builder).__doc__ or ""]
    for pattern in (rf"Parameters \({re.escape(name)}\):\s*([\d,]+)", r"Parameters:\s*([\d,]+)"):
        for doc in docs:
            if m := re.search(pattern, doc):
                return int(m.group(1).replace(",", ""))
    raise AssertionError(f"{name}: no 'Parameters ({name}): N' or 'Parameters: N' line in its docstrings")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the reference's largest magnitude."""
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def outputs(out: ModelOutput) -> dict[str, torch.Tensor]:
    named = {"sr": out.sr}
    for i, h in enumerate(out.heatmaps or []):
        named[f"heatmaps[{i}]"] = h
    return named


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: these tensors are tiny, and on a shared 2-core machine a
    second OpenMP thread spin-waiting against other processes made this file 10×
    slower (85 s vs 8 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- registry and documentation ------------------------------------------------------------
def test_registry_is_not_empty():
    assert "bicubic" in NAMES and "jasrnet" in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_docstring(name):
    model = build(name)  # registry defaults: the documented size
    assert n_params(model) == documented_count(name)


@pytest.mark.parametrize("name", NAMES)
def test_model_declares_interface(name):
    model = build_small(name)
    assert isinstance(model, FaceModel)
    assert model.paper, f"{name}: class attribute 'paper' is empty"
    assert model.input_kind in ("lr", "upsampled")
    assert model.predicts_sr or model.predicts_landmarks or not model.trainable
    assert 128 % model.heatmap_stride == 0
    doc = (inspect.getdoc(spec(name).builder) or "") + (inspect.getmodule(spec(name).builder).__doc__ or "")
    assert "input" in doc.lower(), f"{name}: the docstring does not say its input"
    if model.trainable:
        assert "loss" in doc.lower(), f"{name}: the docstring does not say its loss"
        assert any(p.requires_grad for p in model.parameters())
    else:
        assert not any(p.requires_grad for p in model.parameters())


# -- forward ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes_and_finite(name, faces):
    model = build_small(name).eval()
    faces = at_model_scale(faces, model)
    with torch.no_grad():
        out = model(faces["lr"])
    assert isinstance(out, ModelOutput)
    assert out.sr.shape == (BATCH, 3, 128, 128) and out.sr.dtype == torch.float32
    if model.predicts_landmarks:
        assert out.heatmaps, f"{name}: a landmark model returned no heatmaps"
        h = 128 // model.heatmap_stride
        # K maps + background, unless the model declares otherwise (DIC's hourglass predicts the K maps only).
        channels = getattr(model, "heatmap_channels", model.num_points + 1)
        for stage in out.heatmaps:
            assert stage.shape == (BATCH, channels, h, h)
    else:
        assert out.heatmaps is None
    for key, t in outputs(out).items():
        assert torch.isfinite(t).all(), f"{name}: non-finite {key}"
    if not model.predicts_sr:  # a model without SR still returns a valid image: the bicubic upsampling
        torch.testing.assert_close(out.sr, degrade.upsample(faces["lr"]))


@pytest.mark.parametrize("name", NAMES)
def test_decode_landmarks(name, faces):
    model = build_small(name).eval()
    faces = at_model_scale(faces, model)
    with torch.no_grad():
        out = model(faces["lr"])
    points = model.decode_landmarks(out)
    if model.predicts_landmarks:
        assert points.shape == (BATCH, model.num_points, 2)
        assert torch.isfinite(points).all()
        assert ((points >= -0.5) & (points <= 127.5)).all()
    else:
        assert points is None


# -- loss and gradients ---------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_loss_and_backward_reach_every_parameter(name, faces):
    model = build_small(name).train()
    faces = at_model_scale(faces, model)
    batch = with_points(faces, model.num_points)
    out = model(batch["lr"])
    terms = model.loss(out, batch)
    assert {"total", "sr", "heatmap"} <= set(terms)
    for key, value in terms.items():
        assert value.dim() == 0 and torch.isfinite(value), f"{name}: loss term {key} = {value}"
    if model.predicts_sr:
        assert terms["sr"] > 0
    if model.predicts_landmarks:
        assert terms["heatmap"] > 0
    if not model.trainable:
        assert n_params(model) == 0 or not any(p.requires_grad for p in model.parameters())
        assert not terms["total"].requires_grad
        return
    terms["total"].backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    no_grad = [n for n, p in trainable if p.grad is None]
    assert not no_grad, f"{name}: no gradient reaches {no_grad[:5]}{'…' if len(no_grad) > 5 else ''}"
    zero = [n for n, p in trainable if not p.grad.abs().sum() > 0]
    assert not zero, f"{name}: all-zero gradient for {zero[:5]}{'…' if len(zero) > 5 else ''}"
    bad = [n for n, p in trainable if not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: non-finite gradient for {bad[:5]}"


# -- determinism, memory format, mixed precision ---------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_deterministic_with_a_fixed_seed(name, faces):
    faces = at_model_scale(faces, build_small(name))
    with torch.no_grad():
        a = build_small(name, seed=123).eval()(faces["lr"])
        b = build_small(name, seed=123).eval()(faces["lr"])
    for key, t in outputs(a).items():
        assert torch.equal(t, outputs(b)[key]), f"{name}: {key} differs between two builds with the same seed"
    model_a, model_c = build_small(name, seed=123), build_small(name, seed=7)
    if n_params(model_a):  # the seed is what decides the initial weights
        pa = torch.cat([p.detach().flatten() for p in model_a.parameters() if p.requires_grad])
        pc = torch.cat([p.detach().flatten() for p in model_c.parameters() if p.requires_grad])
        assert not torch.equal(pa, pc)


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_matches_contiguous(name, faces):
    model = randomize_(build_small(name)).eval()
    faces = at_model_scale(faces, model)
    with torch.no_grad():
        ref = outputs(model(faces["lr"]))
        model = model.to(memory_format=torch.channels_last)
        got = outputs(model(faces["lr"].contiguous(memory_format=torch.channels_last)))
    # fp32 both ways; only the convolution kernels' summation order may differ.
    for key in ref:
        assert got[key].shape == ref[key].shape
        assert rel_err(got[key], ref[key]) < 1e-4, f"{name}: {key} channels_last vs contiguous"


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_matches_fp32(name, faces):
    """bf16 keeps 8 significant bits (unit roundoff 2⁻⁸ ≈ 0.4%); autocast rounds each
    conv/matmul's inputs and weights and accumulates in fp32. Over these networks'
    10–60 layers the roundings add up (√depth · u, times some amplification) to a
    relative RMS error of 0.2–2% (measured on every model with ``randomize_`` weights),
    so 5% (RMS) and 15% (largest element) separate bf16 noise from a real break — a
    skipped layer, an overflow, a wrong dtype path gives errors of order 100%.
    """
    model = randomize_(build_small(name)).eval()
    faces = at_model_scale(faces, model)
    with torch.no_grad():
        ref = model(faces["lr"])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(faces["lr"])
        terms = model.loss(got, with_points(faces, model.num_points))
    assert torch.isfinite(terms["total"])
    for key, t in outputs(ref).items():
        g = outputs(got)[key].float()
        assert g.shape == t.shape and torch.isfinite(g).all()
        rms = float((g - t).norm() / t.norm().clamp_min(1e-30))
        assert rms < 5e-2, f"{name}: {key} bf16 autocast vs fp32: relative RMS error {rms:.3g}"
        assert rel_err(g, t) < 0.15, f"{name}: {key} bf16 autocast vs fp32: largest error {rel_err(g, t):.3g}"
