"""JASRNet: joint ×8 super-resolution and landmark localization of tiny faces.

Yin, Robinson, Zhang & Fu, "Joint Super-Resolution and Alignment of Tiny
Faces", AAAI 2020. Built from DESIGN §3 (the facts of the authors' released
implementation) and pinned by its parameter count: ``build("jasrnet")`` has
exactly **19,885,814** parameters, the number the authors' code reports
(the paper's "18.96M" is that number / 1024²).

Architecture (n = ``n_feats`` = 128, every conv 3×3 with bias, padding 1)
--------------------------------------------------------------------------
::

    x   = head(sub_mean(bicubic×8(lr)))   sub_mean: (x − μ)/σ  conv 3→n          128²
    H0  = encoder_a(x)            2 × (ResBlock + ReLU)                          128²
    b   = encoder_b1(H0)          maxpool, 3 × (ResBlock + ReLU)     (H1)        64²
    c   = encoder_c1(maxpool(b))  4 × (ResBlock + ReLU)              (H2)        32²
    fusion (eq. 1):  f = down_a(H0) + b;  f = down_b(f);  f = f + c;  f = down_c(f)   → 16²
    c   = encoder_c2(c)           maxpool, 2 × (ResBlock + ReLU)                 16²
    feat = features(c)            n_shared_blocks × (ResBlock + ReLU)            16²
    feat = feat + f               (eq. 2; "concat": conv 2n→n on [feat, f])
    SR:  s = sr_feature(feat)     2 × ResBlock(res_scale 0.1), conv n→n
         s = s + long_connection(x)   3 × (conv n→n + maxpool 2): 128² → 16²
         sr = add_mean(conv n→3(Upsampler×8(s)))   3 × (conv n→4n + PixelShuffle 2); add_mean: (y + μ)/σ
    Alignment (CPM): xf = cpm_feature(feat)   2 × (ResBlock + ReLU), conv n→n
         stage 1: 2 × (ResBlock + ReLU), conv n→K+1
         stage t ≥ 2 on [xf, maps_{t−1}]: conv n+K+1→n + ReLU,
                  3 × (ResBlock + ReLU), conv n→K+1

ResBlock = conv → ReLU → conv, × res_scale, + identity (no batch norm). All
``n_stages`` heatmap stages (B×(K+1)×16×16, 68 points + background) are
supervised.

How the description's ambiguities were resolved (the published parameter count decides;
details from the authors' code, github.com/YuYin1/JASRNet ``src/model/jasr.py``, DESIGN §3)
------------------------------------------------------------------------------------------
- Downsamplers down_a/b/c: 3×3, stride 2, padding 1, with bias (a 1×1 or 4×4 kernel, or no
  bias, misses the count). Every conv has a bias (EDSR's ``default_conv``).
- 36 of the counted parameters are three frozen mean shifts (EDSR's 1×1 conv, 12 each) that
  the authors' ``parameters()`` counts: ``sub_mean``, ``add_mean`` and ``sub_mean_cpm``, which
  their model creates but never calls; it is kept, unused, only so the count matches.
- ``normalization="imagenet"`` (default) is the authors' code: input ``(x − μ)/σ``, output
  ``(y + μ)/σ`` with ImageNet μ, σ: not an inverse pair, but what produced the paper's numbers.
  ``"div2k"`` is EDSR's DIV2K mean with σ = 1 (an inverse pair). Same parameter count.
- The SR branch's conv n→n follows its two ResBlocks, before the long connection (three conv +
  maxpool pairs on the head output, no ReLU) is added; the CPM feature's conv follows its two
  ResBlock+ReLU pairs; the shared blocks have no trailing conv.
- ``fusion_mode="concat"`` (Table 5) replaces only the final ``feat + f`` by a ``conv 2n→n``
  (the layer the authors' code keeps commented out); without fusion the strided convs do not
  exist.
- ``tasks="sr"`` builds no CPM branch; ``tasks="align"`` builds no SR branch and returns the
  bicubic upsampling as ``sr``, so evaluation needs no special case.
- Init: conv weights N(0, 0.01), biases 0 (the authors' ``weights_init_cpm``, which skips the
  mean shifts, as :func:`~jasrbench.models.base.init_normal_` does).

Parameter counts: see :class:`JASRNet` (the full model and the Table 5
variants reproduce the paper's numbers exactly).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .base import FaceModel, ModelOutput, init_normal_
from .blocks import MeanShift, ResBlock, Upsampler, default_conv
from .registry import register

TASKS = ("both", "sr", "align")
# Mean/std of the frozen mean shifts: the authors' released code ("imagenet") or EDSR's DIV2K mean, σ = 1.
NORMALIZATIONS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "div2k": ((0.4488, 0.4371, 0.4040), (1.0, 1.0, 1.0)),
}
FUSION_MODES = ("add", "concat")


def _res_relu(n_feats: int, count: int) -> list[nn.Module]:
    """``count`` × (ResBlock + ReLU), the authors' encoder/feature unit."""
    layers: list[nn.Module] = []
    for _ in range(count):
        layers += [ResBlock(n_feats, 3), nn.ReLU(inplace=True)]
    return layers


FEATURE_STRIDE = 8  # 128² input → 16² shared features
_PAPER = "Yin, Robinson, Zhang & Fu, Joint Super-Resolution and Alignment of Tiny Faces, AAAI 2020"


@register("jasrnet", description="JASRNet (full: fusion + long skip, SR + alignment, 3 stages, 32 shared blocks)")
@register(
    "jasrnet_bl_sr",
    description="Table 4 BL, SR model: no fusion, no long skip, SR only",
    fusion=False,
    long_skip=False,
    tasks="sr",
)
@register(
    "jasrnet_bl_align",
    description="Table 4 BL, alignment model: no fusion, alignment only",
    fusion=False,
    long_skip=False,
    tasks="align",
)
@register(
    "jasrnet_bl_f_sr",
    description="Table 4 BL_F, SR model: fusion, no long skip, SR only",
    fusion=True,
    long_skip=False,
    tasks="sr",
)
@register(
    "jasrnet_bl_f_align",
    description="Table 4 BL_F, alignment model: fusion, alignment only",
    fusion=True,
    long_skip=False,
    tasks="align",
)
@register("jasrnet_jt", description="Table 4 JT: both tasks, no fusion, no long skip", fusion=False, long_skip=False)
@register("jasrnet_jt_f", description="Table 4 JT_F: both tasks + fusion, no long skip", fusion=True, long_skip=False)
@register("jasrnet_concat", description="Table 5 Concat: fusion by concatenation + conv", fusion_mode="concat")
@register("jasrnet_stages1", description="Table 5 One stage: 1 alignment stage", n_stages=1)
@register("jasrnet_stages2", description="Table 5 Two stages: 2 alignment stages", n_stages=2)
@register("jasrnet_res16", description="Table 5 Res_16: 16 shared ResBlocks", n_shared_blocks=16)
@register("jasrnet_lr64", description="Table 2 top row: the full JASRNet on 64×64 faces (×2 LR, same 128² input)",
          lr_scale=2)
class JASRNet(FaceModel):
    """JASRNet (Yin, Robinson, Zhang & Fu, AAAI 2020) and its Table 4/5 ablations as switches.

    Input: LR 16×16, bicubic-upsampled ×8 to 128×128 inside (``input_kind =
    "upsampled"``, the shared :func:`jasrbench.data.degrade.upsample`).
    Outputs: ``sr`` B×3×128×128 (the bicubic input for alignment-only models)
    and ``heatmaps``, ``n_stages`` × B×(K+1)×16×16 (``None`` for SR-only models).
    Loss: :meth:`FaceModel.loss` — L1 (mean) on SR + ``alpha`` × heatmap squared
    error summed over masked maps and all stages / (2B); α = 1.
    Decoding: argmax + 9×9 soft-argmax on the last stage, mapped as ``x·8 + 3.5``.
    Architecture and how each ambiguity was resolved: see the module docstring.

    Switches (keywords, paper defaults): ``n_feats`` 128, ``n_shared_blocks`` 32,
    ``n_stages`` 3, ``num_points`` 68, ``fusion`` True, ``fusion_mode`` "add" |
    "concat", ``long_skip`` True, ``tasks`` "both" | "sr" | "align", ``alpha`` 1,
    ``init_std`` 0.01, ``normalization`` "imagenet" (the authors' code) | "div2k", ``lr_scale`` 8
    (the LR→HR factor of the input: 2 for ``jasrnet_lr64``, whose 64×64 faces are upsampled to the same
    128² input; the SR tail always upsamples the 16² features ×8, so the weights are identical in shape).

    Parameters (all of ``parameters()``, including the 12 frozen mean-shift
    parameters per shift; in brackets /1024², the paper's unit):

    Parameters: 19,885,814
    Parameters (jasrnet): 19,885,814           [18.96M; paper Res_32 / Adding: 18.96M, Table 3: 18.96M]
    Parameters (jasrnet_stages1): 17,501,548   [16.69M; paper One stage: 16.69M]
    Parameters (jasrnet_stages2): 18,693,681   [17.83M; paper Two stages: 17.83M]
    Parameters (jasrnet_res16): 15,163,126     [14.46M; paper Res_16: 14.46M]
    Parameters (jasrnet_lr64): 19,885,814      [18.96M; the same network as jasrnet]
    Parameters (jasrnet_concat): 20,180,854    [19.25M; not reported]
    Parameters (jasrnet_bl_sr): 15,208,219     [14.50M; not reported]
    Parameters (jasrnet_bl_align): 16,487,911  [15.72M; not reported]
    Parameters (jasrnet_bl_f_sr): 15,650,971   [14.93M; not reported]
    Parameters (jasrnet_bl_f_align): 16,930,663 [16.15M; not reported]
    Parameters (jasrnet_jt): 19,000,310        [18.12M; not reported]
    Parameters (jasrnet_jt_f): 19,443,062      [18.54M; not reported]
    """

    paper = _PAPER
    input_kind = "upsampled"
    heatmap_stride = 8
    sr_loss = "l1"

    def __init__(
        self,
        n_feats: int = 128,
        n_shared_blocks: int = 32,
        n_stages: int = 3,
        num_points: int = 68,
        fusion: bool = True,
        fusion_mode: str = "add",
        long_skip: bool = True,
        tasks: str = "both",
        alpha: float = 1.0,
        init_std: float = 0.01,
        normalization: str = "imagenet",
        lr_scale: int = 8,
    ):
        super().__init__(num_points=num_points, alpha=alpha)
        if lr_scale not in (2, 4, 8):
            raise ConfigError(f"JASRNet: lr_scale must be 2, 4 or 8 (128² HR from 64², 32² or 16² LR), got {lr_scale!r}")
        self.scale = int(lr_scale)
        if normalization not in NORMALIZATIONS:
            raise ConfigError(f"JASRNet: normalization must be one of {sorted(NORMALIZATIONS)}, got {normalization!r}")
        self.normalization = normalization
        mean, std = NORMALIZATIONS[normalization]
        if tasks not in TASKS:
            raise ConfigError(f"JASRNet: tasks must be one of {TASKS}, got {tasks!r}")
        if fusion_mode not in FUSION_MODES:
            raise ConfigError(f"JASRNet: fusion_mode must be one of {FUSION_MODES}, got {fusion_mode!r}")
        if n_feats < 1 or n_shared_blocks < 0 or n_stages < 1 or num_points < 1:
            raise ConfigError(
                f"JASRNet: bad sizes n_feats={n_feats}, n_shared_blocks={n_shared_blocks}, "
                f"n_stages={n_stages}, num_points={num_points}"
            )
        n = n_feats
        parts = num_points + 1
        self.n_feats = n
        self.n_shared_blocks = n_shared_blocks
        self.n_stages = n_stages
        self.fusion = bool(fusion)
        self.fusion_mode = fusion_mode
        self.tasks = tasks
        self.predicts_sr = tasks in ("both", "sr")
        self.predicts_landmarks = tasks in ("both", "align")
        self.long_skip = bool(long_skip) and self.predicts_sr

        # Mean shifts: frozen 1×1 convs, counted as parameters like the authors' code.
        self.sub_mean = MeanShift(rgb_mean=mean, rgb_std=std, sign=-1, frozen_params=True)

        # Shared encoder (always present: it is the path to the shared features).
        self.head = default_conv(3, n, 3)
        self.encoder_a = nn.Sequential(*_res_relu(n, 2))
        self.encoder_b1 = nn.Sequential(nn.MaxPool2d(2), *_res_relu(n, 3))
        self.encoder_c1 = nn.Sequential(*_res_relu(n, 4))
        self.encoder_c2 = nn.Sequential(nn.MaxPool2d(2), *_res_relu(n, 2))
        self.features = nn.Sequential(*_res_relu(n, n_shared_blocks))
        if self.fusion:
            self.down_a = default_conv(n, n, 3, stride=2)
            self.down_b = default_conv(n, n, 3, stride=2)
            self.down_c = default_conv(n, n, 3, stride=2)
            if fusion_mode == "concat":
                self.fuse = default_conv(2 * n, n, 3)

        if self.predicts_sr:
            self.add_mean = MeanShift(rgb_mean=mean, rgb_std=std, sign=+1, frozen_params=True)
            self.sr_feature = nn.Sequential(
                ResBlock(n, 3, res_scale=0.1), ResBlock(n, 3, res_scale=0.1), default_conv(n, n, 3)
            )
            if self.long_skip:
                self.long_connection = nn.Sequential(
                    *[m for _ in range(3) for m in (default_conv(n, n, 3), nn.MaxPool2d(2))]
                )
            # The shared features are 16×16 (three 2× pools of the 128² input) whatever the LR size.
            self.sr_tail = nn.Sequential(Upsampler(FEATURE_STRIDE, n), default_conv(n, 3, 3))

        if self.predicts_landmarks:
            # The authors' third mean shift: created, never used in forward (see docstring).
            self.sub_mean_cpm = MeanShift(rgb_mean=mean, rgb_std=std, sign=-1, frozen_params=True)
            self.cpm_feature = nn.Sequential(*_res_relu(n, 2), default_conv(n, n, 3))
            stages = [nn.Sequential(*_res_relu(n, 2), default_conv(n, parts, 3))]
            for _ in range(1, n_stages):
                stages.append(
                    nn.Sequential(
                        default_conv(n + parts, n, 3),
                        nn.ReLU(inplace=True),
                        *_res_relu(n, 3),
                        default_conv(n, parts, 3),
                    )
                )
            self.stages = nn.ModuleList(stages)

        init_normal_(self, std=init_std)

    def forward(self, lr: torch.Tensor) -> ModelOutput:
        up = self.upsample(lr)
        x = self.head(self.sub_mean(up))
        h0 = self.encoder_a(x)
        b = self.encoder_b1(h0)
        c = self.encoder_c1(nn.functional.max_pool2d(b, 2))
        if self.fusion:
            f = self.down_a(h0) + b
            f = self.down_b(f) + c
            f = self.down_c(f)
        c = self.encoder_c2(c)
        feat = self.features(c)
        if self.fusion:
            feat = feat + f if self.fusion_mode == "add" else self.fuse(torch.cat([feat, f], dim=1))

        if self.predicts_sr:
            s = self.sr_feature(feat)
            if self.long_skip:
                s = s + self.long_connection(x)
            sr = self.add_mean(self.sr_tail(s))
        else:
            sr = up

        maps = None
        if self.predicts_landmarks:
            xf = self.cpm_feature(feat)
            maps = []
            for i, stage in enumerate(self.stages):
                maps.append(stage(xf if i == 0 else torch.cat([xf, maps[-1]], dim=1)))
        return ModelOutput(sr=sr, heatmaps=maps)
