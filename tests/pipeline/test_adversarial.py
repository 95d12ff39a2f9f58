"""The optional adversarial and perceptual terms (off by default) on real faces."""

from __future__ import annotations

import re
import urllib.error

import pandas as pd
import pytest
import torch
from pipeline_helpers import tiny_params
from torchvision.models import vgg19

from jasrbench.errors import ConfigError, JasrbenchError
from jasrbench.models import adversarial
from jasrbench.train import train


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
    """A local VGG-19 state_dict (random weights: the loading path and the loss's properties only)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(vgg19(weights=None).state_dict(), path)
    return path


def test_discriminator_shape_and_documented_size():
    disc = adversarial.Discriminator()
    documented = int(re.search(r"Parameters \(width 64\): ([\d,]+)", adversarial.Discriminator.__doc__)
                     .group(1).replace(",", ""))
    assert sum(p.numel() for p in disc.parameters()) == documented
    assert disc(torch.rand(3, 3, 128, 128)).shape == (3,)


def test_gan_losses_have_the_standard_form():
    logits = torch.tensor([2.0, -1.0])
    assert adversarial.generator_adversarial_loss(logits) == pytest.approx(
        float(-torch.log(torch.sigmoid(logits)).mean()), rel=1e-6)
    d = adversarial.discriminator_loss(logits, -logits)
    assert d == pytest.approx(float(-2 * torch.log(torch.sigmoid(logits)).mean()), rel=1e-6)


def test_perceptual_loss_from_a_local_file(vgg_weights, monkeypatch, prepared_300w):
    from jasrbench.data import degrade
    from jasrbench.data.split import load_split

    monkeypatch.setenv(adversarial.VGG_WEIGHTS_ENV, str(vgg_weights))
    loss = adversarial.PerceptualLoss("relu2_2")
    assert not any(p.requires_grad for p in loss.parameters())
    hr = degrade.to_tensor(load_split(prepared_300w.out / "common.npz").hr[:4])
    bicubic = degrade.upsample(degrade.make_lr(hr))
    assert float(loss(hr, hr)) == 0.0
    assert float(loss(bicubic, hr)) > 0
    sr = bicubic.clone().requires_grad_(True)
    loss(sr, hr).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0


def test_perceptual_loss_without_weights_names_both_ways(monkeypatch, tmp_path):
    import torchvision.models._api as api

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.delenv(adversarial.VGG_WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(api, "load_state_dict_from_url", no_network)
    with pytest.raises(JasrbenchError, match=r"download\.pytorch\.org.*JASRBENCH_VGG_WEIGHTS=PATH"):
        adversarial.PerceptualLoss()
    with pytest.raises(ConfigError, match="not found"):
        adversarial.PerceptualLoss(weights=tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="perceptual_layer"):
        adversarial.PerceptualLoss("relu9_9", weights=tmp_path / "missing.pth")


def test_gan_training_with_both_terms_resumes_exactly(prepared_root, tmp_path, monkeypatch, vgg_weights):
    """SRGAN-style training (SRResNet + perceptual + adversarial), killed after a few steps and resumed."""
    monkeypatch.setenv(adversarial.VGG_WEIGHTS_ENV, str(vgg_weights))
    params = tiny_params(prepared_root, epochs=2, adversarial_weight=1.0e-3, perceptual_weight=0.01,
                         perceptual_layer="relu2_2", discriminator_width=8)
    full = train("srresnet", "300w", params, tmp_path / "full", tmp_path / "full_res")
    history = pd.read_csv(tmp_path / "full_res" / "history.csv")
    for col in ("loss_adversarial", "loss_discriminator", "loss_perceptual"):
        assert col in history and (history[col] > 0).all(), col
    assert not (tmp_path / "full" / "last.pt").exists()  # a finished run retires its resume state
    best = torch.load(tmp_path / "full" / "model.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith(("disc", "features")) for k in best["state_dict"])  # the generator only

    assert train("srresnet", "300w", params, tmp_path / "cut", tmp_path / "cut_res", stop_after_steps=4)["stopped_early"]
    last = torch.load(tmp_path / "cut" / "last.pt", map_location="cpu", weights_only=True)
    assert last["extra"] is not None and last["extra"]["optimizer"]["state"]  # the discriminator resumes too
    resumed = train("srresnet", "300w", params, tmp_path / "cut", tmp_path / "cut_res")
    assert resumed["best_val_psnr"] == full["best_val_psnr"]
    a = torch.load(tmp_path / "cut" / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], best["state_dict"][k]) for k in a)


def test_extra_terms_refuse_alignment_only_models(prepared_root, tmp_path):
    params = tiny_params(prepared_root, adversarial_weight=1.0e-3)
    with pytest.raises(ConfigError, match="need an SR model"):
        train("jasrnet_bl_align", "300w", params, tmp_path)


def test_off_by_default_in_every_profile():
    import jasrbench.params as jparams

    for name in ("paper", "cpu", "smoke"):
        t = jparams.load_profile(name)["train"]
        assert t["adversarial_weight"] == 0.0 and t["perceptual_weight"] == 0.0, name
