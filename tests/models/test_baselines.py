"""What is specific to each baseline architecture (the shared contract is in test_all_models.py).

Models are built small (a few channels, one or two blocks) except where a test
is about the registry defaults; inputs are real 300W faces degraded ×8.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jasrbench.data import degrade
from jasrbench.models import build, spec
from jasrbench.models.base import ModelOutput
from model_helpers import SMALL, with_points

BASELINES = [n for n in SMALL if n != "bicubic" and not n.startswith("jasrnet")]  # this file's models
LANDMARK_MODELS = ["fsrnet", "superfan", "cpm"]


def small(name: str, **overrides) -> nn.Module:
    torch.manual_seed(0)
    return build(name, **{**SMALL[name], **overrides})


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Different by more than 0.1% of the magnitude (outputs at init can be tiny: N(0, 0.01) weights)."""
    return bool((a - b).abs().max() > 1e-3 * a.abs().max())


# -- VDSR -------------------------------------------------------------------------------
def test_vdsr_global_residual_on_the_bicubic_input(faces):
    model = small("vdsr").eval()
    last = model.body[-1]
    with torch.no_grad():
        assert not torch.equal(model(faces["lr"]).sr, degrade.upsample(faces["lr"]))
        last.weight.zero_()
        last.bias.zero_()
        out = model(faces["lr"]).sr
    assert torch.equal(out, degrade.upsample(faces["lr"]))


def test_vdsr_is_twenty_convs_of_64_channels():
    convs = [m for m in build("vdsr").modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20
    assert [c.out_channels for c in convs] == [64] * 19 + [3]
    assert all(c.kernel_size == (3, 3) for c in convs)


# -- EDSR -------------------------------------------------------------------------------
def edsr_count(f: int, blocks: int) -> int:
    """EDSR ×8 parameters from its layer list: head, blocks·2 convs + body conv, 3 upsampling convs, tail."""
    conv = lambda cin, cout: cin * cout * 9 + cout  # noqa: E731
    return conv(3, f) + blocks * 2 * conv(f, f) + conv(f, f) + 3 * conv(f, 4 * f) + conv(f, 3)


@pytest.mark.parametrize(
    "name, feats, blocks, res_scale", [("edsr", 64, 16, 1.0), ("edsr_paper", 256, 32, 0.1)]
)
def test_edsr_registered_sizes(name, feats, blocks, res_scale):
    model = build(name)
    assert n_params(model) == edsr_count(feats, blocks)
    assert model.res_scale == res_scale and model.sr_loss == "l1"
    assert model.head.out_channels == feats
    assert f"Parameters ({name}): {edsr_count(feats, blocks):,}" in spec(name).builder.__doc__


def test_edsr_res_scale_scales_the_residual_branch(faces):
    a, b = small("edsr", res_scale=1.0).eval(), small("edsr", res_scale=0.1).eval()
    b.load_state_dict(a.state_dict())
    block_a, block_b = a.body[0], b.body[0]
    x = torch.rand(1, 8, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(block_b(x) - x, 0.1 * (block_a(x) - x))
        assert not torch.allclose(a(faces["lr"]).sr, b(faces["lr"]).sr)


# -- SRResNet ---------------------------------------------------------------------------
def test_srresnet_has_bn_residual_blocks_and_three_pixel_shuffles(faces):
    model = build("srresnet")
    from jasrbench.models.srresnet import SRResBlock

    blocks = [m for m in model.modules() if isinstance(m, SRResBlock)]
    assert len(blocks) == 16
    assert all(sum(isinstance(x, nn.BatchNorm2d) for x in b.modules()) == 2 for b in blocks)
    shuffles = [m for m in model.modules() if isinstance(m, nn.PixelShuffle)]
    assert [s.upscale_factor for s in shuffles] == [2, 2, 2]
    assert model.head[0].kernel_size == (9, 9) and model.tail.kernel_size == (9, 9)


# -- URDGN ------------------------------------------------------------------------------
def test_urdgn_upsamples_with_three_transposed_convolutions(faces):
    model = small("urdgn").eval()
    deconvs = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(deconvs) == 3 and all(d.stride == (2, 2) for d in deconvs)
    sizes = []
    hooks = [d.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1])) for d in deconvs]
    with torch.no_grad():
        out = model(faces["lr"])
    for h in hooks:
        h.remove()
    assert sizes == [32, 64, 128]
    assert out.sr.shape == faces["hr"].shape
    assert not any(isinstance(m, nn.PixelShuffle) for m in model.modules())


# -- TDAE -------------------------------------------------------------------------------
def test_tdae_is_decoder_encoder_decoder_with_a_compact_code(faces):
    model = small("tdae").eval()
    shapes = {}
    hooks = [
        getattr(model, part).register_forward_hook(lambda m, i, o, part=part: shapes.__setitem__(part, tuple(o.shape)))
        for part in ("decoder1", "encoder", "decoder2")
    ]
    with torch.no_grad():
        out = model(faces["lr"])
    for h in hooks:
        h.remove()
    assert shapes == {"decoder1": (2, 3, 128, 128), "encoder": (2, 4, 16, 16), "decoder2": (2, 3, 128, 128)}
    assert out.intermediate.shape == (2, 3, 128, 128)


def test_tdae_loss_supervises_both_decoders(faces):
    model = small("tdae", intermediate_weight=0.5)
    out = model(faces["lr"])
    base = model.loss(out, faces)
    assert torch.allclose(base["total"], base["sr"] + 0.5 * base["intermediate"])
    shifted = model.loss(type(out)(sr=out.sr, intermediate=out.intermediate + 0.1), faces)
    assert torch.equal(shifted["sr"], base["sr"]) and not torch.allclose(shifted["intermediate"], base["intermediate"])


def test_tdae_spatial_transformer_starts_at_the_identity():
    from jasrbench.models.tdae import SpatialTransformer

    stn = SpatialTransformer(8, loc_feats=4)
    x = torch.rand(2, 8, 32, 32)
    with torch.no_grad():
        near = stn(x)
        assert (near - x).abs().max() < 0.05  # small random weights: close to the identity
        stn.theta.weight.zero_()
        exact = stn(x)
    torch.testing.assert_close(exact, x, atol=1e-5, rtol=0)


# -- FSRNet -----------------------------------------------------------------------------
def test_fsrnet_loss_has_coarse_fine_and_heatmap_terms(faces):
    model = small("fsrnet")
    out = model(faces["lr"])
    assert out.heatmaps[0].shape == (2, 69, 64, 64) and model.heatmap_stride == 2
    base = model.loss(out, faces)
    assert set(base) >= {"total", "sr", "coarse", "heatmap"}
    torch.testing.assert_close(base["total"], base["coarse"] + base["sr"] + base["heatmap"])
    assert all(base[k] > 0 for k in ("sr", "coarse", "heatmap"))

    def changed(new: dict) -> set[str]:
        return {k for k in ("sr", "coarse", "heatmap", "total") if not torch.equal(new[k], base[k])}

    cls = type(out)
    assert changed(model.loss(cls(sr=out.sr + 0.1, heatmaps=out.heatmaps, coarse=out.coarse), faces)) == {"sr", "total"}
    assert changed(model.loss(cls(sr=out.sr, heatmaps=out.heatmaps, coarse=out.coarse + 0.1), faces)) == {"coarse", "total"}
    assert changed(model.loss(cls(sr=out.sr, heatmaps=[out.heatmaps[0] + 0.1], coarse=out.coarse), faces)) == {"heatmap", "total"}

    # Every term is at FSRNet's own scale, Σ/(2B) (sums over pixels and masked maps), zero at the target.
    target, mask = model.heatmap_targets(faces)
    perfect = model.loss(cls(sr=out.sr, heatmaps=[target], coarse=out.coarse), faces)
    assert perfect["heatmap"].item() == 0.0
    sse = ((out.heatmaps[0].detach() - target) ** 2).sum()
    torch.testing.assert_close(base["heatmap"].detach(), sse / (2 * 2))
    fine_sse = ((out.sr.detach() - faces["hr"]) ** 2).sum()
    torch.testing.assert_close(base["sr"].detach(), fine_sse / (2 * 2), rtol=1e-4, atol=0)


def test_fsrnet_decoder_uses_the_prior(faces):
    model = small("fsrnet").eval()
    with torch.no_grad():
        a = model(faces["lr"])
        hook = model.prior.register_forward_hook(lambda m, i, o: o + 1.0)
        b = model(faces["lr"])
        hook.remove()
    assert torch.equal(a.coarse, b.coarse)
    assert not torch.allclose(a.sr, b.sr)


# -- Super-FAN --------------------------------------------------------------------------
def test_superfan_heatmaps_are_computed_from_the_sr_image(faces):
    model = small("superfan")
    seen = []
    hook = model.fan.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    out = model(faces["lr"])
    hook.remove()
    assert seen[0] is out.sr
    assert len(out.heatmaps) == 2 and all(h.shape == (2, 69, 32, 32) for h in out.heatmaps)

    # The heatmap loss alone trains the SR network (through the SR image).
    target, mask = model.heatmap_targets(faces)
    model.heatmap_loss_value(out.heatmaps, target, mask).backward()
    sr_params = [p for n, p in model.named_parameters() if not n.startswith("fan.")]
    assert sr_params and all(p.grad is not None and p.grad.abs().sum() > 0 for p in sr_params)


def test_superfan_sr_heatmap_weight_scales_only_the_sr_networks_heatmap_gradient(faces):
    """sr_heatmap_weight w: the SR network's heatmap gradient is w times the unweighted one; the
    FAN's and the forward pass are unchanged, and the pixel term reaches the SR network in full."""

    def grads(weight: float, term: str) -> tuple[ModelOutput, dict[str, torch.Tensor]]:
        model = small("superfan", sr_heatmap_weight=weight)
        out = model(faces["lr"])
        losses = model.loss(out, faces)
        losses[term].backward()
        return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    ref_out, ref = grads(1.0, "heatmap")
    out, scaled = grads(0.25, "heatmap")
    torch.testing.assert_close(out.sr, ref_out.sr, rtol=0, atol=0)
    torch.testing.assert_close(out.heatmaps[-1], ref_out.heatmaps[-1], rtol=0, atol=0)
    sr_names = [n for n in ref if not n.startswith("fan.")]
    fan_names = [n for n in ref if n.startswith("fan.")]
    assert sr_names and fan_names
    for n in fan_names:
        torch.testing.assert_close(scaled[n], ref[n])
    for n in sr_names:
        torch.testing.assert_close(scaled[n], 0.25 * ref[n], rtol=1e-4, atol=1e-9)
    _, pixel_ref = grads(1.0, "sr")
    _, pixel = grads(0.25, "sr")
    for n in sr_names:
        torch.testing.assert_close(pixel[n], pixel_ref[n])


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_superfan_rejects_a_heatmap_weight_outside_0_1(bad):
    with pytest.raises(ValueError, match="sr_heatmap_weight"):
        build("superfan", **{**SMALL["superfan"], "sr_heatmap_weight": bad})


def test_superfan_heatmap_loss_is_per_map_sum_averaged_over_maps(faces):
    model = small("superfan")
    target, mask = model.heatmap_targets(faces)
    mask = mask.clone()
    mask[0, :10] = False  # ten points unannotated on the first face
    pred = [target + 0.1, target]
    expected = ((0.1**2) * 32 * 32 * mask.sum()) / mask.sum()
    torch.testing.assert_close(model.heatmap_loss_value(pred, target, mask), expected.float())


def test_superfan_sr_network_is_progressive():
    model = build("superfan")
    assert [len(s.body) - 2 for s in model.stages] == [12, 3, 2, 2]
    sizes = []
    hooks = [s.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1])) for s in model.stages]
    with torch.no_grad():
        model.eval().super_resolve(torch.rand(1, 3, 16, 16))
    for h in hooks:
        h.remove()
    assert sizes == [16, 32, 64, 128]


# -- CPM --------------------------------------------------------------------------------
def test_cpm_sr_is_exactly_the_bicubic_upsampling(faces):
    model = small("cpm")
    out = model(faces["lr"])
    assert torch.equal(out.sr, degrade.upsample(faces["lr"]))
    assert not model.predicts_sr and model.predicts_landmarks
    assert len(out.heatmaps) == 3 and all(h.shape == (2, 69, 16, 16) for h in out.heatmaps)
    loss = model.loss(out, faces)
    assert loss["sr"].item() == 0.0 and loss["heatmap"] > 0


def test_cpm_later_stages_take_the_previous_maps(faces):
    model = small("cpm").eval()
    for t in (1, 2):  # shifting stage t−1's maps changes stage t (and not the stages before)
        with torch.no_grad():
            a = model(faces["lr"]).heatmaps
            model.stages[t - 1][-1].bias.add_(1.0)
            b = model(faces["lr"]).heatmaps
        assert differs(a[t], b[t])
        assert all(torch.equal(a[s], b[s]) for s in range(t - 1))
    stage2_in = model.stages[1][0].in_channels
    assert stage2_in == 8 + 69


# -- all landmark models ----------------------------------------------------------------
@pytest.mark.parametrize("name", LANDMARK_MODELS)
def test_landmark_models_take_19_points(name, faces):
    model = small(name, num_points=19)
    batch = with_points(faces, 19)
    out = model(batch["lr"])
    assert all(h.shape[1] == 20 and h.shape[-1] == model.heatmap_size for h in out.heatmaps)
    loss = model.loss(out, batch)
    assert torch.isfinite(loss["total"]) and loss["heatmap"] > 0
    loss["total"].backward()
    assert model.decode_landmarks(out).shape == (2, 19, 2)


@pytest.mark.parametrize("name", BASELINES)
def test_a_few_steps_reduce_the_training_loss(name, faces):
    """End to end: the loss each model reports is the one its parameters can descend."""
    model = small(name).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = model.loss(model(faces["lr"]), faces)["total"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
