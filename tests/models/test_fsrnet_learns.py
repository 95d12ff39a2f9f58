"""FSRNet's prior branch learns: a short run on real faces lowers the validation NME (issue 14, item 2)."""

from __future__ import annotations

import torch

from jasrbench.batcher import Batcher
from jasrbench.data.augment import AugmentConfig
from jasrbench.data.split import load_split
from jasrbench.models import build
from jasrbench.holdout import carve_validation
from jasrbench.scoring import validation_metrics
from model_helpers import SMALL

STEPS = 40


def test_validation_nme_falls_over_a_short_run(prepared_300w):
    """Tiny widths, 40 steps of batch 8 on 48 real training faces, 16 held-out faces for validation.

    Before the fix the prior sat on all-zero point maps (the weight decay, 24,576× too strong against a
    per-pixel-scaled loss, won over its heatmap term) and the NME stayed where random maps put it.
    """
    data = load_split(prepared_300w.out / "train.npz")
    train_idx, val_idx = carve_validation(len(data), 0, 16, 48)
    val = data.subset(val_idx)
    augment = AugmentConfig.from_dict({"scale": [0.95, 1.05], "rotation": 30.0, "flip": 0.5, "translate": 0.0})
    mirror = torch.tensor(data.metadata["mirror_permutation"])
    dev = torch.device("cpu")
    batcher = Batcher(data, train_idx, augment, mirror, dev, seed=0, batch_size=8, copies_per_epoch=1)
    torch.manual_seed(0)
    model = build("fsrnet", **SMALL["fsrnet"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)  # the profiles' weight decay
    before = validation_metrics(model, val, dev, 16)["val_nme"]
    per_epoch = batcher.steps_per_epoch()
    heatmap = []
    for step in range(STEPS):
        model.train()
        batch = batcher.batch(step // per_epoch, step % per_epoch)
        terms = model.loss(model(batch["lr"]), batch)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        heatmap.append(terms["heatmap"].item())
    after = validation_metrics(model, val, dev, 16)["val_nme"]
    assert sum(heatmap[-5:]) < 0.9 * sum(heatmap[:5]), heatmap
    assert after < 0.8 * before, (before, after)
