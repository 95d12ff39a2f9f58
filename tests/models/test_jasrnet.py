"""JASRNet specifics: the published size, the Table 4/5 switches, init, loss and decoding.

The shared contract (shapes, gradients, channels_last, bf16, …) is in
test_all_models.py; here is what only JASRNet promises.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jasrbench.data import degrade, heatmaps
from jasrbench.errors import ConfigError
from jasrbench.models import ModelOutput, available, build, spec
from jasrbench.models.blocks import MeanShift, ResBlock

SMALL = dict(n_feats=8, n_shared_blocks=2)
NAMES = [n for n in available() if n.startswith("jasrnet")]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def small(name: str = "jasrnet", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build(name, **{**SMALL, **overrides})


def layer_list_count(
    n=128, blocks=32, stages=3, points=68, fusion=True, fusion_mode="add", long_skip=True, tasks="both"
) -> int:
    """JASRNet's size from its layer list (DESIGN §3), independent of the module code."""
    conv = lambda cin, cout: cin * cout * 9 + cout  # noqa: E731  3×3 conv with bias
    rb = 2 * conv(n, n)
    k = points + 1
    sr, align = tasks in ("both", "sr"), tasks in ("both", "align")
    total = 12  # sub_mean: a frozen 1×1 conv 3→3 (9 + 3)
    total += conv(3, n) + (2 + 3 + 4 + 2 + blocks) * rb  # head, encoders a/b1/c1/c2, shared blocks
    if fusion:
        total += 3 * conv(n, n) + (conv(2 * n, n) if fusion_mode == "concat" else 0)
    if sr:
        total += 12 + 2 * rb + conv(n, n) + 3 * conv(n, 4 * n) + conv(n, 3)  # add_mean, branch, upsampler, tail
        total += 3 * conv(n, n) if long_skip else 0
    if align:
        total += 12 + 2 * rb + conv(n, n)  # sub_mean_cpm (unused), CPM feature
        total += 2 * rb + conv(n, k)  # stage 1
        total += (stages - 1) * (conv(n + k, n) + 3 * rb + conv(n, k))
    return total


# -- size ------------------------------------------------------------------------------------
def test_published_parameter_count():
    model = build("jasrnet")
    assert n_params(model) == 19_885_814
    assert round(19_885_814 / 1024**2, 2) == 18.96  # the paper's "18.96M"
    frozen = [(name, p) for name, p in model.named_parameters() if not p.requires_grad]
    assert sum(p.numel() for _, p in frozen) == 36
    assert {name.rsplit(".", 1)[0] for name, _ in frozen} == {"sub_mean", "add_mean", "sub_mean_cpm"}
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 19_885_778


@pytest.mark.parametrize(
    "name, paper_m",
    [("jasrnet", 18.96), ("jasrnet_stages1", 16.69), ("jasrnet_stages2", 17.83), ("jasrnet_res16", 14.46)],
)
def test_table5_sizes_match_the_paper(name, paper_m):
    assert round(n_params(build(name)) / 1024**2, 2) == paper_m


@pytest.mark.parametrize("name", NAMES)
def test_every_variant_matches_its_layer_list(name):
    kw = {**spec(name).defaults}
    expected = layer_list_count(
        blocks=kw.get("n_shared_blocks", 32),
        stages=kw.get("n_stages", 3),
        fusion=kw.get("fusion", True),
        fusion_mode=kw.get("fusion_mode", "add"),
        long_skip=kw.get("long_skip", True),
        tasks=kw.get("tasks", "both"),
    )
    assert n_params(build(name)) == expected
    assert f"Parameters ({name}): {expected:,}" in spec(name).builder.__doc__


def test_widths_are_keywords():
    model = small(n_feats=16, n_shared_blocks=3, n_stages=2, num_points=19)
    assert n_params(model) == layer_list_count(n=16, blocks=3, stages=2, points=19)
    out = model(torch.rand(1, 3, 16, 16))
    assert [h.shape for h in out.heatmaps] == [(1, 20, 16, 16)] * 2


def test_full_size_forward():
    model = build("jasrnet").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 16, 16))
    assert out.sr.shape == (1, 3, 128, 128)
    assert [h.shape for h in out.heatmaps] == [(1, 69, 16, 16)] * 3


def test_bad_switches_are_config_errors():
    with pytest.raises(ConfigError, match="tasks"):
        build("jasrnet", tasks="segmentation")
    with pytest.raises(ConfigError, match="fusion_mode"):
        build("jasrnet", fusion_mode="multiply")


# -- init --------------------------------------------------------------------------------------
def test_init_is_normal_001_with_zero_biases():
    model = build("jasrnet")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    weights = torch.cat([c.weight.detach().flatten() for c in convs])
    assert weights.numel() > 19_000_000
    assert abs(weights.std().item() - 0.01) < 1e-4
    assert abs(weights.mean().item()) < 1e-5
    assert all(c.bias is not None and torch.equal(c.bias, torch.zeros_like(c.bias)) for c in convs)
    # the mean shifts keep their fixed values (not re-initialized): the authors' ImageNet μ, σ
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    for shift, sign in ((model.sub_mean, -1), (model.add_mean, 1), (model.sub_mean_cpm, -1)):
        torch.testing.assert_close(shift.weight.view(3, 3), torch.diag(1 / std))
        torch.testing.assert_close(shift.bias, sign * mean / std)


def test_normalization_is_the_authors_and_div2k_is_a_named_option():
    x = torch.rand(2, 3, 128, 128)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    model = small("jasrnet")
    torch.testing.assert_close(model.sub_mean(x), (x - mean) / std)
    torch.testing.assert_close(model.add_mean(x), (x + mean) / std)  # not sub_mean's inverse: as released
    div2k = small("jasrnet", normalization="div2k")
    torch.testing.assert_close(div2k.add_mean(div2k.sub_mean(x)), x)
    torch.testing.assert_close(div2k.sub_mean(x), x - torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1))
    assert sum(p.numel() for p in build("jasrnet", normalization="div2k").parameters()) == 19_885_814
    with pytest.raises(ConfigError, match="normalization"):
        build("jasrnet", normalization="cifar")


def test_init_std_is_a_keyword():
    model = small(init_std=0.05)
    w = torch.cat([m.weight.detach().flatten() for m in model.modules() if isinstance(m, nn.Conv2d)])
    assert abs(w.std().item() - 0.05) < 2e-3


# -- ablation switches -------------------------------------------------------------------------
def has(model, attr: str) -> bool:
    return hasattr(model, attr)


@pytest.mark.parametrize(
    "name, fusion, long_skip, sr, align",
    [
        ("jasrnet_bl_sr", False, False, True, False),
        ("jasrnet_bl_align", False, False, False, True),
        ("jasrnet_bl_f_sr", True, False, True, False),
        ("jasrnet_bl_f_align", True, False, False, True),
        ("jasrnet_jt", False, False, True, True),
        ("jasrnet_jt_f", True, False, True, True),
        ("jasrnet", True, True, True, True),
    ],
)
def test_table4_switches(name, fusion, long_skip, sr, align):
    model = small(name)
    assert (model.predicts_sr, model.predicts_landmarks) == (sr, align)
    assert model.fusion == fusion and model.long_skip == long_skip
    assert has(model, "down_a") == has(model, "down_b") == has(model, "down_c") == fusion
    assert has(model, "long_connection") == long_skip
    assert has(model, "sr_feature") == has(model, "sr_tail") == has(model, "add_mean") == sr
    assert has(model, "cpm_feature") == has(model, "stages") == has(model, "sub_mean_cpm") == align
    assert not has(model, "fuse")
    lr = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        out = model(lr)
    assert (out.heatmaps is not None) == align
    if not sr:
        assert torch.equal(out.sr, degrade.upsample(lr))


def test_table5_switches():
    concat = small("jasrnet_concat")
    assert concat.fusion_mode == "concat"
    assert concat.fuse.in_channels == 16 and concat.fuse.out_channels == 8
    assert len(small("jasrnet_stages1").stages) == 1 and len(small("jasrnet_stages2").stages) == 2
    assert len(small("jasrnet").stages) == 3
    res16 = [m for m in build("jasrnet_res16").features if isinstance(m, ResBlock)]
    res32 = [m for m in build("jasrnet").features if isinstance(m, ResBlock)]
    assert (len(res16), len(res32)) == (16, 32)


def test_fusion_and_long_skip_change_the_output():
    """With the same weights, removing the fusion path or the long skip changes SR."""
    full = small("jasrnet", init_std=0.1).eval()
    lr = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        ref = full(lr).sr
        full.long_skip = False
        no_skip = full(lr).sr
        full.long_skip, full.fusion = True, False
        no_fusion = full(lr).sr
    assert not torch.allclose(ref, no_skip, atol=1e-5)
    assert not torch.allclose(ref, no_fusion, atol=1e-5)


def test_stages_are_fed_the_feature_and_previous_maps():
    model = small("jasrnet")
    n, k = 8, 69
    assert model.stages[0][-1].out_channels == k
    for stage in model.stages[1:]:
        assert stage[0].in_channels == n + k
    res_scales = [m.res_scale for m in model.sr_feature if isinstance(m, ResBlock)]
    assert res_scales == [0.1, 0.1]
    assert isinstance(model.sub_mean, MeanShift)


# -- loss ----------------------------------------------------------------------------------------
def hand_targets(points: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' heatmap targets, written out: Gaussians σ 4 on cell centres 8i + 3.5."""
    b, k, _ = points.shape
    centres = torch.arange(16, dtype=torch.float64) * 8 + 3.5
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    d2 = (xx - points[..., 0, None, None].double()) ** 2 + (yy - points[..., 1, None, None].double()) ** 2
    g = torch.exp(-d2 / (2 * 4.0**2))
    g = torch.where(g < 0.01, 0.0, g) * visible[..., None, None]
    maps = torch.cat([g, 1 - g.amax(dim=1, keepdim=True)], dim=1)
    mask = torch.cat([visible, torch.ones(b, 1, dtype=torch.bool)], dim=1)
    return maps.float(), mask


def test_loss_equals_a_hand_computation():
    torch.manual_seed(1)
    model = small("jasrnet", init_std=0.05, alpha=0.5)
    lr, hr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 128, 128)
    points = torch.rand(2, 68, 2) * 100 + 14
    visible = torch.ones(2, 68, dtype=torch.bool)
    visible[0, 5] = visible[1, 60] = False
    points[1, 7] = torch.tensor([130.0, 40.0])  # outside the image: masked too
    batch = {"lr": lr, "hr": hr, "landmarks": points, "visible": visible}
    out = model(lr)
    terms = model.loss(out, batch)

    target, mask = hand_targets(points, visible & (points <= 127).all(-1))
    l1 = (out.sr - hr).abs().mean()
    sq = sum(((s - target) ** 2 * mask[..., None, None]).sum() for s in out.heatmaps)
    hm = sq / (2 * 2)
    torch.testing.assert_close(terms["sr"], l1)
    torch.testing.assert_close(terms["heatmap"], hm, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["total"], l1 + 0.5 * hm, rtol=1e-5, atol=1e-6)
    # the masked maps really are out of the loss: changing them changes nothing
    poked = [s.detach().clone() for s in out.heatmaps]
    for s in poked:
        s[0, 5] += 10
        s[1, 7] += 10
        s[1, 60] += 10
    again = model.loss(ModelOutput(sr=out.sr, heatmaps=poked), batch)
    torch.testing.assert_close(again["heatmap"], hm.detach(), rtol=1e-5, atol=1e-6)


def test_single_task_losses():
    lr, hr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 128, 128)
    batch = {"lr": lr, "hr": hr, "landmarks": torch.rand(2, 68, 2) * 100 + 14}
    sr_only = small("jasrnet_bl_sr")
    t = sr_only.loss(sr_only(lr), batch)
    assert t["heatmap"] == 0 and t["total"] == t["sr"] > 0
    align = small("jasrnet_bl_align")
    t = align.loss(align(lr), batch)
    assert t["sr"] == 0 and t["total"] == t["heatmap"] > 0


# -- decoding ------------------------------------------------------------------------------------
def test_decoding_recovers_subpixel_positions():
    """Maps shaped like training targets (the encoder's Gaussians) decode to within 0.5 px."""
    model = small("jasrnet")
    gen = torch.Generator().manual_seed(3)
    points = torch.rand(2, 68, 2, generator=gen) * 104 + 12  # sub-pixel, off the border cells
    maps, _ = heatmaps.encode(points, size=16, stride=8)
    noise = torch.rand(maps.shape, generator=gen)  # an earlier, worse stage: not the one decoded
    decoded = model.decode_landmarks(ModelOutput(sr=torch.zeros(2, 3, 128, 128), heatmaps=[noise, maps]))
    assert decoded.shape == (2, 68, 2)
    err = (decoded - points).norm(dim=-1)
    assert err.max() < 0.5, f"largest decoding error {err.max():.3f} px"
    assert math.isclose(model.heatmap_stride * model.heatmap_size, 128)


def test_sr_only_decodes_nothing():
    model = small("jasrnet_bl_sr")
    assert model.decode_landmarks(model(torch.rand(1, 3, 16, 16))) is None


# -- Table 2's top row: the same network on 64×64 faces --------------------------------------
def test_lr64_is_the_same_network_on_a_x2_input(faces):
    full, lr64 = build("jasrnet"), build("jasrnet_lr64")
    assert (full.scale, lr64.scale) == (8, 2)
    assert {k: v.shape for k, v in full.state_dict().items()} == {k: v.shape for k, v in lr64.state_dict().items()}
    model = small("jasrnet_lr64").eval()
    lr = degrade.make_lr(faces["hr"], 2)
    assert lr.shape == (2, 3, 64, 64)
    with torch.no_grad():
        out = model(lr)
    assert out.sr.shape == (2, 3, 128, 128) and [h.shape for h in out.heatmaps] == [(2, 69, 16, 16)] * 3
    # The network's input is the ×2 bicubic upsampling, which is far closer to the HR than the ×8 one.
    err2 = (model.upsample(lr) - faces["hr"]).abs().mean()
    err8 = (degrade.upsample(faces["lr"]) - faces["hr"]).abs().mean()
    assert err2 < 0.5 * err8
    with pytest.raises(ConfigError, match="lr_scale"):
        build("jasrnet", lr_scale=3)


def test_split_lr_at_a_scale_is_made_like_a_training_batch(faces):
    import numpy as np

    from jasrbench.data.split import PreparedSplit

    hr8 = degrade.to_uint8(faces["hr"])
    split = PreparedSplit(hr=hr8, lr=degrade.to_uint8(degrade.make_lr(faces["hr"], protocol="paper")),
                          landmarks=faces["landmarks"].numpy(), visible=faces["visible"].numpy(),
                          boxes=np.zeros((2, 4), np.float32), names=np.array(["a", "b"]),
                          metadata={"protocol": "paper"})
    assert split.lr_at(8) is split.lr
    lr64 = split.lr_at(2)
    assert lr64.shape == (2, 64, 64, 3) and lr64.dtype == np.uint8
    expected = degrade.to_uint8(degrade.make_lr(degrade.to_tensor(hr8), 2, protocol="paper"))
    assert np.array_equal(lr64, expected)
    # the ×8 LR made the same way is the stored one: one degradation, whatever the scale
    assert np.array_equal(degrade.to_uint8(degrade.make_lr(degrade.to_tensor(hr8), 8, protocol="paper")), split.lr)
