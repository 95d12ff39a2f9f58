"""DIC's structure on real 300W faces: sizes, the part-map attention, decoding, the loss, the hourglass freeze
and pretraining interface, and an interrupted training run that resumes to the same weights.

The equality with the authors' code itself is measured by ``benchmarks/fidelity_dic.py`` (their code
is not a test dependency); these tests pin what that measurement relies on.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import yaml
from model_helpers import SMALL

from jasrbench.data import heatmaps as hm
from jasrbench.errors import ConfigError
from jasrbench.models import ModelOutput, build
from jasrbench.models.dic import MEAN, PART_GROUPS, AttentionFusion, part_maps
from jasrbench.paths import REPO_ROOT


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small(**overrides):
    torch.manual_seed(0)
    return build("dic", **{**SMALL["dic"], **overrides})


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- sizes ---------------------------------------------------------------------------------------
def test_parameter_counts_of_both_branches():
    """The authors' network has 21,803,849 parameters (measured by benchmarks/fidelity_dic.py on their code);
    the issue's hand count: SR ≈ 9.8 M, hourglass ≈ 12.0 M."""
    model = build("dic")
    assert n_params(model) == 21_803_849
    assert n_params(model.hourglass) == 11_999_172
    assert n_params(model) - n_params(model.hourglass) == 9_804_677
    # The recurrent feedback block is shared by steps 2…4: more steps add no weights.
    assert n_params(build("dic", n_steps=6)) == n_params(model)


def test_shapes_of_every_step_and_the_hourglass_resolution(faces):
    model = small(n_steps=3).eval()
    with torch.no_grad():
        out = model(faces["lr"])
    assert len(out.sr_steps) == 3 and len(out.heatmaps) == 3
    assert out.sr is out.sr_steps[-1]
    for sr, maps in zip(out.sr_steps, out.heatmaps):
        assert sr.shape == (2, 3, 128, 128)
        assert maps.shape == (2, 68, 32, 32)  # K maps (no background) at stride 4
    assert model.heatmap_channels == 68 and model.heatmap_size == 32
    # The steps differ: each one refines the previous through the feedback block and the attention.
    assert not torch.equal(out.sr_steps[0], out.sr_steps[1])


def test_unsupported_markup_and_bad_sizes_are_named():
    with pytest.raises(ConfigError, match="num_points=21"):
        build("dic", num_points=21)
    with pytest.raises(ConfigError, match="hg_feats=18"):
        build("dic", hg_feats=18)
    with pytest.raises(ConfigError, match="landmark_freeze_steps"):
        build("dic", landmark_freeze_steps=-1)


# -- the part-map attention -----------------------------------------------------------------------
@pytest.mark.parametrize("k", sorted(PART_GROUPS))
def test_part_groups_partition_the_markup_into_five_parts(k):
    groups = PART_GROUPS[k]
    assert len(groups) == 5
    covered = [i for ranges in groups for start, stop in ranges for i in range(start, stop)]
    assert sorted(covered) == list(range(k)), f"{k} points: every point in exactly one part"


def test_68_point_parts_are_the_authors_eyes_nose_mouth_and_jaw_with_brows():
    groups = PART_GROUPS[68]
    assert groups == (((36, 42),), ((42, 48),), ((27, 36),), ((48, 68),), ((0, 27),))


def test_part_maps_normalize_each_map_by_its_peak_with_a_floor(faces):
    target = build("dic").heatmap_targets(faces)[0]  # real faces' Gaussians, peak ≤ 1
    scaled = target * torch.linspace(0.2, 3.0, 68).view(1, 68, 1, 1)  # maps of different heights
    parts = part_maps(scaled, PART_GROUPS[68])
    assert parts.shape == (2, 5, 32, 32)
    # Each map is divided by its own maximum, so the part maps do not depend on the heights.
    torch.testing.assert_close(parts, part_maps(target, PART_GROUPS[68]))
    # A left-eye part map is the sum of the six normalized eye maps: its total mass is theirs.
    peak = target.amax(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(parts[:, 0].sum(dim=(1, 2)), (target[:, 36:42] / peak[:, 36:42]).sum(dim=(1, 2, 3)))
    # The floor: a map whose peak is below 0.05 is divided by 0.05, not by its peak.
    faint = part_maps(target * 0.01, PART_GROUPS[68])
    torch.testing.assert_close(faint[:, 0], (target[:, 36:42] * 0.01 / 0.05).sum(1))
    torch.testing.assert_close(faint[:, 4], (target[:, 0:27] * 0.01 / 0.05).sum(1))


def test_each_part_map_peaks_on_its_own_points(faces):
    target = build("dic").heatmap_targets(faces)[0]
    parts = part_maps(target, PART_GROUPS[68])
    cells = hm.cell_centres(32, 4)
    for j, ranges in enumerate(PART_GROUPS[68]):
        idx = [i for start, stop in ranges for i in range(start, stop)]
        for b in range(2):
            flat = int(parts[b, j].argmax())
            peak_xy = torch.stack([cells[flat % 32], cells[flat // 32]])
            nearest = (faces["landmarks"][b, idx] - peak_xy).norm(dim=-1).min()
            assert nearest < 6.0, f"part {j} of face {b} peaks {float(nearest):.1f} px from its nearest point"


def test_attention_weights_the_part_groups_of_the_features():
    torch.manual_seed(0)
    fusion = AttentionFusion(n_feats=4, n_parts=5, n_blocks=2).eval()
    features = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        grouped = fusion.blocks(fusion.expand(features)).view(2, 5, 4, 8, 8)
        for j in range(5):  # one part dominating the softmax everywhere selects its 4-channel group
            logits = torch.full((2, 5, 8, 8), -30.0)
            logits[:, j] = 30.0
            torch.testing.assert_close(fusion(features, logits), grouped[:, j])
        equal = fusion(features, torch.zeros(2, 5, 8, 8))  # equal logits: the mean of the groups
        torch.testing.assert_close(equal, grouped.mean(1))
    # Grouped convolutions (groups = parts) keep each part's channels apart through the residual blocks.
    conv = fusion.blocks[0].body[0]
    assert conv.groups == 5 and conv.weight.shape == (20, 4, 3, 3)


# -- targets, decoding, loss --------------------------------------------------------------------
def test_targets_are_unthresholded_sigma_one_cell_gaussians_and_decode_back(faces):
    model = build("dic")
    target, mask = model.heatmap_targets(faces)
    assert target.shape == (2, 68, 32, 32) and mask.all()
    # No threshold (the authors' generate_gt has none): values far below JASRNet's 0.01 cut-off remain.
    assert ((target > 0) & (target < 1e-3)).any()
    # σ = 1 cell: a neighbour of a cell centred on the point holds exp(−1/2).
    x = torch.tensor([[[4 * 10 + 1.5, 4 * 20 + 1.5]]])
    one, _ = build("dic", num_points=19).heatmap_targets(
        {"landmarks": x.expand(1, 19, 2), "visible": torch.ones(1, 19, dtype=torch.bool)})
    assert one[0, 0, 20, 10] == pytest.approx(1.0) and one[0, 0, 20, 11] == pytest.approx(float(torch.exp(torch.tensor(-0.5))))
    # The suite's decoding (argmax + soft-argmax, cell c → 4c + 1.5) recovers the real points from them.
    points = model.decode_landmarks(ModelOutput(sr=faces["hr"], heatmaps=[target]))
    err = (points - faces["landmarks"]).norm(dim=-1)
    assert float(err.max()) < 0.5, f"decoding the targets misses a point by {float(err.max()):.2f} px"


def test_loss_is_the_authors_sum_over_steps(faces):
    model = small(n_steps=3).train()
    out = model(faces["lr"])
    terms = model.loss(out, faces)
    target, _ = model.heatmap_targets(faces)
    pixel = sum((s - faces["hr"]).abs().mean() for s in out.sr_steps)
    heat = sum(((h - target) ** 2).mean() for h in out.heatmaps)
    torch.testing.assert_close(terms["sr"], pixel)
    torch.testing.assert_close(terms["heatmap"], heat)
    torch.testing.assert_close(terms["total"], pixel + 0.1 * heat)  # α = 0.1 (train_DIC_*.json)
    # An invisible point's map is left out of the mean, not counted as a zero error.
    hidden = {**faces, "visible": faces["visible"].clone()}
    hidden["visible"][:, :10] = False
    got = model.loss(out, hidden)["heatmap"]
    keep = torch.ones(68, dtype=torch.bool)
    keep[:10] = False
    torch.testing.assert_close(got, sum(((h - target)[:, keep] ** 2).mean() for h in out.heatmaps))


def test_mean_is_subtracted_inside_and_sr_is_in_unit_range_space(faces):
    model = small().eval()
    with torch.no_grad():
        x = faces["hr"]
        # The hourglass called alone (pretraining, HR accuracy) takes [0, 1] images and removes the mean itself.
        torch.testing.assert_close(model.hourglass(x), model.hourglass.step(x - torch.tensor(MEAN).view(1, 3, 1, 1))[0])
        # A zero network body leaves the bilinear ×8 upsampling of the LR: the mean goes out and comes back.
        for p in model.conv_out.parameters():
            p.zero_()
        out = model(faces["lr"])
        bilinear = torch.nn.functional.interpolate(faces["lr"], scale_factor=8, mode="bilinear", align_corners=False)
        torch.testing.assert_close(out.sr, bilinear, atol=1e-6, rtol=0)


# -- training extras ----------------------------------------------------------------------------
def test_freeze_keeps_the_hourglass_but_its_gradient_still_reaches_the_sr_branch(faces):
    model = small(landmark_freeze_steps=3).train()
    assert model.set_training_step(0) is False
    out = model(faces["lr"])
    terms = model.loss(out, faces)
    terms["heatmap"].backward()  # the heatmap term alone: it reaches the SR branch only through the hourglass
    assert all(p.grad is None for p in model.hourglass.parameters())
    assert model.conv_out.weight.grad is not None and model.conv_out.weight.grad.abs().sum() > 0
    # An Adam step leaves the frozen hourglass exactly as it was.
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    before = {k: v.clone() for k, v in model.hourglass.state_dict().items()}
    opt.step()
    assert all(torch.equal(v, model.hourglass.state_dict()[k]) for k, v in before.items())
    assert model.set_training_step(2) is False and model.set_training_step(3) is True
    assert all(p.requires_grad for p in model.hourglass.parameters())


def test_pretrained_hourglass_loads_and_a_foreign_file_is_named(tmp_path):
    from jasrbench.pretrained_weights import PRETRAINED_FORMAT, PRETRAINED_VERSION

    source, target = small(), small()
    torch.nn.init.constant_(source.hourglass.compress_in.bias, 0.5)
    path = tmp_path / "hourglass.pt"
    torch.save({"format": PRETRAINED_FORMAT, "version": PRETRAINED_VERSION, "part": "hourglass", "num_points": 68,
                "state_dict": source.hourglass.state_dict()}, path)
    assert target.pretrain_part == "hourglass"
    target.load_pretrained(str(path))
    assert torch.equal(target.hourglass.compress_in.bias, source.hourglass.compress_in.bias)
    wide = build("dic", **{**SMALL["dic"], "hg_feats": 32})
    with pytest.raises(Exception, match="hourglass"):
        wide.load_pretrained(str(path))


def test_a_training_step_lowers_the_loss_on_real_faces(faces):
    model = small().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        terms = model.loss(model(faces["lr"]), faces)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
        losses.append(float(terms["total"].detach()))
    assert losses[-1] < losses[0], f"4 Adam steps on the same faces did not lower the loss: {losses}"


def test_interrupted_training_resumes_to_the_uninterrupted_weights(prepared_300w, tmp_path, monkeypatch):
    """The suite's trainer on 24 real faces, 2 epochs: stopped mid-epoch 2 (its last.pt, as a kill after a
    checkpoint leaves it), resumed, it ends with the weights and history of a run never stopped."""
    from jasrbench.train import train

    monkeypatch.setenv("JASRBENCH_MLFLOW", "0")
    monkeypatch.setenv("JASRBENCH_CHECKPOINT_EVERY", "1")
    params = yaml.safe_load((REPO_ROOT / "pipelines" / "smoke.yaml").read_text())
    params = copy.deepcopy(params)
    params["data"]["prepared"] = str(prepared_300w.out.parent)
    params["train"].update({"epochs": 2, "batch_size": 4, "max_faces": 24, "val_faces": 8, "precision": "fp32"})
    params["models"]["dic"] = {"tables": [], "overrides": dict(SMALL["dic"])}
    steps_per_epoch = math.ceil(24 * params["train"].get("copies_per_epoch", 1) / 4)
    full = train("dic", "300w", params, tmp_path / "full", tmp_path / "full_res")
    stopped = train("dic", "300w", params, tmp_path / "cut", tmp_path / "cut_res",
                    stop_after_steps=steps_per_epoch + 2)
    assert stopped.get("stopped_early") and (tmp_path / "cut" / "last.pt").exists()
    resumed = train("dic", "300w", params, tmp_path / "cut", tmp_path / "cut_res", resume=True)
    a = torch.load(tmp_path / "full" / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cut" / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key in ("best_epoch", "best_val_psnr", "best_val_nme"):
        assert full[key] == resumed[key], key
