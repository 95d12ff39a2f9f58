"""CPU training with 1 and 2 threads is the same: one Adam step gives the same losses, gradients and weights,
bit for bit (what lets ``jasrbench launch --workers 2`` on 2 cores give ``dvc repro``'s numbers).

Every trainable architecture of the smoke profile at the profile's widths, on a batch of the profile's size
made of real 300W training faces. Where the library's summation order follows the thread count and a cheap
fixed order exists, ``JASRBENCH_FIXED_ORDER_GRADS=true`` makes training use it (convolution bias and PReLU slope
gradients, ``jasrbench/models/blocks.py``).
Where not, the model is marked xfail with the operation. With more threads oneDNN's convolution weight
gradients follow the thread count too (README, launch's "Threads"); only 1 against 2 is promised, and
only where oneDNN's own 3×3 weight gradient does not follow it (``tests/thread_probe.py``: AVX2 yes, AVX512 no).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import jasrbench.params as jparams
from jasrbench.data import degrade
from jasrbench.data.crop import crop_face
from jasrbench.data.images import load_rgb
from jasrbench.data.landmarks import landmark_box, read_pts
from jasrbench.models import build, spec
from jasrbench.models.blocks import FixedBiasConv2d, FixedBiasConvTranspose2d, FixedGradPReLU, fixed_order_grads
from jasrbench.paths import REPO_ROOT
from thread_probe import conv_weight_grad_follows_threads

PROFILE = jparams.load_profile("smoke", REPO_ROOT)

ONEDNN_1X1 = "oneDNN's 1×1 convolutions: forward and gradients depend on the thread count"
STRIDED = "oneDNN's weight gradient of the spatial transformers' stride-2 convolutions depends on the thread count"
KNOWN = {"fsrnet": ONEDNN_1X1, "superfan": ONEDNN_1X1, "cpm": ONEDNN_1X1, "tdae": STRIDED}


def _architectures() -> list[str]:
    """The first trainable profile model of each architecture (JASRNet's ablations share its layers)."""
    builders = {}
    for name in PROFILE["models"]:
        builder = spec(jparams.model_entry(PROFILE, name)["arch"]).builder
        if getattr(builder, "trainable", True):
            builders.setdefault(builder, name)
    return list(builders.values())


NAMES = [pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN[n], strict=False)) if n in KNOWN else n
         for n in _architectures()]


@pytest.fixture(scope="module")
def batch(w300_root) -> dict:
    """The first real 300W training faces, as many as the smoke profile's batch: HR, LR, 68 points."""
    n = PROFILE["train"]["batch_size"]
    images = sorted(p for p in (w300_root / "lfpw" / "trainset").iterdir() if p.suffix in (".jpg", ".png"))[:n]
    assert len(images) == n, f"need {n} faces in {w300_root / 'lfpw' / 'trainset'}"
    hrs, points = [], []
    for image in images:
        pts = read_pts(image.with_suffix(".pts"))
        hr, _, mapping = crop_face(load_rgb(image), landmark_box(pts))
        hrs.append(hr)
        points.append(mapping.apply(pts))
    hr = degrade.to_tensor(np.stack(hrs)).contiguous()
    landmarks = torch.from_numpy(np.stack(points)).float()
    return {"lr": degrade.make_lr(hr).contiguous(), "hr": hr, "landmarks": landmarks,
            "visible": torch.ones(landmarks.shape[:2], dtype=torch.bool)}


def _one_step(name: str, batch: dict, threads: int) -> dict[str, torch.Tensor]:
    entry = jparams.model_entry(PROFILE, name)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = fixed_order_grads(build(entry["arch"], **entry["overrides"])).train()
        t = PROFILE["train"]
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=t["lr"],
                                     betas=tuple(t["betas"]), weight_decay=t["weight_decay"])
        losses = model.loss(model(batch["lr"]), batch)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        # The gradients too: Adam's first step is nearly lr·sign(gradient) and hides small differences.
        grads = {f"grad.{k}": p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        optimizer.step()
    finally:
        torch.set_num_threads(before)
    return {**{f"loss.{k}": v.detach() for k, v in losses.items()}, **grads, **model.state_dict()}


@pytest.mark.parametrize("name", NAMES)
def test_one_training_step_is_the_same_with_1_and_2_threads(name, batch):
    two, one = _one_step(name, batch, 2), _one_step(name, batch, 1)
    differ = [k for k in two if not torch.equal(two[k], one[k])]
    if differ and (why := conv_weight_grad_follows_threads()) is not None:
        pytest.xfail(why)
    assert not differ, f"{name}: {len(differ)} of {len(two)} tensors depend on the thread count, e.g. {differ[:4]}"


def test_fixed_order_layers_compute_what_the_library_does():
    """Same forward and input/weight gradients bit for bit; the bias/slope gradient equal up to summation order."""
    gen = torch.Generator().manual_seed(0)
    cases = [(nn.Conv2d(8, 3, 3, padding=1), FixedBiasConv2d),
             (nn.ConvTranspose2d(8, 3, 4, stride=2, padding=1), FixedBiasConvTranspose2d),
             (nn.PReLU(), FixedGradPReLU), (nn.PReLU(8), FixedGradPReLU)]
    for plain, cls in cases:
        fixed = cls.__new__(cls)
        fixed.__dict__.update(plain.__dict__)  # the same parameters
        x = torch.randn(4, 8, 32, 32, generator=gen)
        grads = []
        for layer in (plain, fixed):
            layer.zero_grad(set_to_none=True)
            xi = x.clone().requires_grad_()
            out = F.relu(layer(xi), inplace=True)  # an in-place op after the layer, as in VDSR
            out.backward(torch.ones_like(out))
            grads.append((out.detach(), xi.grad, *(p.grad for p in layer.parameters())))
        (*exact_plain, last_plain), (*exact_fixed, last_fixed) = grads
        assert all(torch.equal(a, b) for a, b in zip(exact_plain, exact_fixed)), cls.__name__
        torch.testing.assert_close(last_fixed, last_plain, rtol=1e-5, atol=1e-5)
        with torch.no_grad():  # evaluation takes the library's path
            assert torch.equal(fixed(x), plain(x))


def test_fixed_order_grads_swaps_the_layers_and_build_does_not():
    plain = build("srresnet", n_feats=8, n_blocks=1)
    assert {FixedBiasConv2d, FixedGradPReLU}.isdisjoint({type(m) for m in plain.modules()})
    model = fixed_order_grads(plain)
    kinds = {type(m) for m in model.modules()}
    assert FixedBiasConv2d in kinds and FixedGradPReLU in kinds and nn.Conv2d not in kinds and nn.PReLU not in kinds
    assert all(isinstance(m, nn.Conv2d) for m in model.modules() if type(m) is FixedBiasConv2d)
