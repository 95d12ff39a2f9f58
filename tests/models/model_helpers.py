"""Helpers of the model tests: small widths of every registered model (structure kept, channels/depths cut)
for fast forward/backward checks, and point subsets of the test faces."""

from __future__ import annotations

import pytest

from jasrbench.models import available, spec

SMALL: dict[str, dict] = {
    "bicubic": {},
    "vdsr": dict(n_feats=8, depth=5),
    "edsr": dict(n_feats=8, n_blocks=2),
    "edsr_paper": dict(n_feats=8, n_blocks=2),
    "srresnet": dict(n_feats=8, n_blocks=2),
    "urdgn": dict(widths=(16, 8, 8, 8)),
    "tdae": dict(widths=(16, 8, 8, 8), code_channels=4, loc_feats=4),
    "fsrnet": dict(n_feats=8, prior_feats=8, coarse_blocks=1, encoder_blocks=1, decoder_blocks=1, hg_depth=2),
    "superfan": dict(n_feats=8, n_blocks=(1, 1, 1, 1), fan_feats=16, fan_depth=2),
    "cpm": dict(vgg_widths=(8, 8, 8, 8), n_feats=8, stage1_feats=8),
    "mean_shape": {},
    # DIC: two steps keep the attention path (steps ≥ 2), two projection groups (transitions exist), one fusion block.
    "dic": dict(n_feats=8, n_groups=2, n_steps=2, hg_feats=16, n_fusion_blocks=1),
}
for _name in available():  # JASRNet and its ablations: 8 features, 1/8 of the shared blocks
    if _name.startswith("jasrnet"):
        SMALL[_name] = dict(n_feats=8, n_shared_blocks=max(1, spec(_name).defaults.get("n_shared_blocks", 32) // 8))


def at_model_scale(faces: dict, model) -> dict:
    """The faces with their LR at ``model.scale`` (×8 as stored; ×2 for ``jasrnet_lr64``), made from the HR."""
    from jasrbench.data import degrade

    if model.scale == degrade.SCALE:
        return faces
    return {**faces, "lr": degrade.make_lr(faces["hr"], model.scale)}


def with_points(faces: dict, k: int) -> dict:
    """The faces with only their first ``k`` points (AFLW-style models predict 19)."""
    if k > faces["landmarks"].shape[1]:
        pytest.fail(f"model expects {k} points; the test faces have {faces['landmarks'].shape[1]}")
    return {**faces, "landmarks": faces["landmarks"][:, :k], "visible": faces["visible"][:, :k]}
