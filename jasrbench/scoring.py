"""A model's metrics on a prepared split: the one path shared by validation, evaluation and the report.

:func:`score_split` moves each batch's uint8 LR and HR to the device, predicts
there (fp32 unless asked), scores PSNR/SSIM on the device and decodes the
landmarks, so the host never holds float copies of the split. Per-image values
do not depend on the batch size (:mod:`jasrbench.metrics.image_quality` sums in
a fixed order), so validation and evaluation agree on every face.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from . import runtime
from .data import degrade
from .data.split import PreparedSplit
from .errors import ConfigError
from .metrics import image_quality
from .metrics import landmarks as lm_metrics

# The authors scored LFW (Table 3) on the whole 128² output minus this border (EDSR-style shave).
LFW_BORDER = 8


def border_boxes(n: int, size: int, border: int = LFW_BORDER) -> torch.Tensor:
    """N×4 boxes covering a ``size``² image minus ``border`` pixels on each side.

    With the metrics' rule (pixels whose centres lie in the closed box) the box
    ``(b, b, size−1−b, size−1−b)`` is exactly ``image[b:−b, b:−b]``, so PSNR/SSIM
    on it equal scikit-image's on that crop.
    """
    if not 0 <= border < size // 2:
        raise ValueError(f"border {border} does not fit a {size}-pixel image")
    lo, hi = float(border), float(size - 1 - border)
    return torch.tensor([lo, lo, hi, hi], dtype=torch.float32).expand(n, 4).clone()


# Per-image PSNR/SSIM variants: suffix → psnr_ssim options. "" (face box, standard Y) is what validation
# selects on and the tables show; the others are the whole image, the authors' LFW border and the
# authors'-code convention, reported beside it.
VARIANTS = {"": {}, "_image": {"region": "image"}, f"_border{LFW_BORDER}": {"border": LFW_BORDER},
            "_jasrnet_code": {"convention": "jasrnet-code"}}


@dataclass
class SplitScores:
    """Per-image metrics (arrays in split order), predicted landmarks and, if kept, the SR faces (uint8)."""

    per_image: dict[str, np.ndarray] = field(default_factory=dict)
    landmarks: np.ndarray | None = None
    sr: np.ndarray | None = None


@torch.no_grad()
def score_split(model, split: PreparedSplit, dev: torch.device, batch_size: int, precision: str = "fp32", *,
                variants: tuple[str, ...] = ("",), inter_pupil: bool = False, keep_sr: bool = False) -> SplitScores:
    """Predict ``split`` with ``model`` on ``dev`` and score it: PSNR/SSIM per ``variants`` (SR models),
    NME with the markup's normalizer (splits with landmarks; ``inter_pupil`` adds it for 68 points)."""
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown metric variants {sorted(unknown)}; known: {sorted(VARIANTS)}")
    model.eval()
    precision = runtime.resolve_precision(precision, dev)
    sums: dict[str, list[torch.Tensor]] = {}
    points, srs = [], []
    with runtime.prediction_backends(dev, precision):  # on CUDA: no TF32 in fp32, no autotuning (issue 28)
        _score_batches(model, split, dev, batch_size, precision, variants, keep_sr, sums, points, srs)
    scores = SplitScores(per_image={k: torch.cat(v).numpy() for k, v in sums.items()},
                         landmarks=torch.cat(points).numpy() if points else None,
                         sr=np.concatenate(srs) if keep_sr else None)
    if scores.landmarks is not None and split.num_points:
        if scores.landmarks.shape[1] != split.num_points:
            raise ConfigError(f"{getattr(model, 'name', type(model).__name__)} predicts {scores.landmarks.shape[1]} "
                              f"points, the split has {split.num_points}")
        normalizer = lm_metrics.default_normalizer(split.num_points)
        scores.per_image["nme"] = lm_metrics.nme(scores.landmarks, split.landmarks, split.visible,
                                                 normalizer=normalizer, boxes=split.boxes)
        if inter_pupil and split.num_points == 68:
            scores.per_image["nme_inter_pupil"] = lm_metrics.nme(scores.landmarks, split.landmarks, split.visible,
                                                                 normalizer="inter_pupil")
    return scores


def _score_batches(model, split: PreparedSplit, dev: torch.device, batch_size: int, precision: str,
                   variants: tuple[str, ...], keep_sr: bool, sums: dict[str, list[torch.Tensor]],
                   points: list[torch.Tensor], srs: list[np.ndarray]) -> None:
    """score_split's loop over the split's batches: appends to ``sums``, ``points``, ``srs``."""
    for i in range(0, len(split), batch_size):
        sl = slice(i, i + batch_size)
        sr, pts = runtime.predict_batch(model, degrade.to_tensor(split.lr_at(model.scale, sl), dev), dev, precision)
        if model.predicts_sr:
            hr = degrade.to_tensor(split.hr[sl], dev)
            for suffix in variants:
                options = dict(VARIANTS[suffix])
                border = options.pop("border", None)
                boxes = (border_boxes(len(hr), hr.shape[-1], border) if border is not None
                         else torch.from_numpy(split.boxes[sl]))
                values = image_quality.psnr_ssim(sr, hr, **({"boxes": boxes} | options))
                sums.setdefault(f"psnr{suffix}", []).append(values["psnr"].cpu())
                sums.setdefault(f"ssim{suffix}", []).append(values["ssim"].cpu())
        if keep_sr:
            srs.append(degrade.to_uint8(sr))
        if pts is not None:
            points.append(pts.cpu())


def validation_metrics(model, val: PreparedSplit, dev: torch.device, batch_size: int) -> dict[str, float]:
    """``val_psnr``/``val_ssim`` (SR models) and ``val_nme`` (landmark models): means over the validation faces."""
    scores = score_split(model, val, dev, batch_size)
    out: dict[str, float] = {}
    if model.predicts_sr:
        out["val_psnr"] = float(torch.from_numpy(scores.per_image["psnr"]).mean())
        out["val_ssim"] = float(torch.from_numpy(scores.per_image["ssim"]).mean())
    if "nme" in scores.per_image:
        out["val_nme"] = float(np.mean(scores.per_image["nme"]))
    return out
