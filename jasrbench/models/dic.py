"""DIC: deep iterative collaboration of face SR and landmark estimation (a modern joint baseline, not in the paper).

Ma, Jiang, Lu, Zhou & Chen, "Deep Face Super-Resolution with Iterative Collaboration between
Attentive Recovery and Landmark Estimation", CVPR 2020; the authors' code is
github.com/Maclory/Deep-Iterative-Collaboration (MIT). Built from that code (``networks/dic_arch.py``,
``srfbn_hg_arch.py``, ``srfbn_arch.py``, ``blocks.py``, ``modules/StackedHourGlass.py``,
``solvers/SRLandmarkSolver.py`` and ``options/train/train_DIC_*.json``); nothing of it is copied.
``benchmarks/fidelity_dic.py --authors-src DIR`` runs their code beside this file on real faces and
writes ``results/fidelity/dic.json`` (their weights copied into this model by a name map; every
step's SR image and heatmaps, the loss and one Adam step compared).

Architecture (F = ``n_feats`` = 48, G = ``n_groups`` = 6, T = ``n_steps`` = 4, every conv with bias)
-----------------------------------------------------------------------------------------------------
::

    x     = lr − μ                       μ = (0.509, 0.424, 0.378): the authors' dataset mean, subtracted
                                         from LR and HR alike; the network works on mean-free images
    inter = bilinear×8(x)                (align_corners False)                                  128²
    feat  = PixelShuffle2(PReLU(conv3×3 3→4F (x)))                                               32², F
    step 1:   h = FB₁(feat)              FB₁: conv1×1 F→F + PReLU, then the G projection groups
    step t>1: h = FB(feat, h, parts)     FB: conv1×1 2F→F + PReLU on [feat, h], attention fusion, groups
    sr_t  = inter + conv3×3 F→3 (PReLU(deconv 8×8 /4 F→F (h)))                                  128²
    maps_t, hidden = HG(sr_t, hidden)    68 maps at 32² (stride 4)
    output: sr = sr_T + μ, heatmaps = [maps_1 … maps_T], sr_steps = [sr_1 + μ … sr_T + μ]

- Projection groups (SRFBN's feedback block, Li et al. CVPR 2019): for g = 1…G, an up-projection
  deconv 12×12 stride 8 padding 2 (32² → 256²) + PReLU on the 1×1-compressed (conv + PReLU) concat
  of all previous LR features, and a down-projection conv 12×12 stride 8 padding 2 (256² → 32²)
  + PReLU on the compressed concat of all previous HR features; the G LR features → conv1×1 GF→F
  + PReLU. FB₁ and FB have separate weights; FB is shared by steps 2…T, and its hidden state is the
  previous step's block output (FB₁'s at step 2).
- Attention fusion (steps 2…T): each of the 68 previous-step heatmaps is divided by its own
  spatial maximum (floored at 0.05), then summed into 5 part maps — eyes 36–41 and 42–47,
  nose 27–35, mouth 48–67, jaw and brows 0–26 — and softmaxed across the parts. The features go
  conv1×1 F→5F + LeakyReLU(0.2), then 7 residual blocks (conv3×3 groups 5 + LeakyReLU(0.2) +
  conv3×3 groups 5, + identity) so each group of F channels belongs to one part; the output is
  the attention-weighted sum of the 5 groups. Gradients flow through the attention into the
  hourglass (the authors' ``detach_attention: false``).
- Hourglass (the authors' ``FeedbackHourGlass``, no batch norm; C = ``hg_feats`` = 256): conv7×7
  stride 2 3→C/4 + ReLU, bottleneck C/4→C/2, max-pool 2, bottlenecks C/2→C/2→C (32²); conv1×1
  2C→2C on [features, hidden] (on [features, features] at step 1); one 4-level hourglass of 2C =
  512 channels (bottlenecks, max-pool down, bilinear ×2 up with align_corners True); the first C
  channels → bottleneck C→C, conv1×1 C→C + ReLU, conv1×1 C→K: the heatmaps; the other C channels
  are the hidden state of the next step. Bottleneck (no BN): conv1×1 in→out/2 + ReLU, conv3×3,
  conv1×1 →out (the authors' block has a single ReLU), plus the input (conv1×1 when widths differ).

Loss, as ``SRLandmarkSolver.train_step`` with ``train_DIC_*.json`` computes it:
Σ_t [ L1(sr_t, hr) + α · MSE(maps_t, target) ], α = 0.1 (``alpha``); L1 and MSE are means. The
targets are K Gaussians of σ = 1 cell (4 HR px) at 32×32 without threshold or background channel,
as the authors' ``generate_gt(sigma=1)``; the one convention that differs is where a cell sits:
here cell i is centred on HR pixel 4i + 1.5 (:func:`jasrbench.data.heatmaps.cell_centres`, which
decoding inverts), in the authors' code on 4i (their decoding multiplies the argmax by 4). A point
that is not annotated or lies outside the crop gets no loss (the MSE is the mean over the other
maps); the authors' data has no such points. ``loss()['sr']`` and ``['heatmap']`` are the two sums
over the steps, unweighted.

Landmarks: decoded as the suite decodes every heatmap model (:meth:`FaceModel.decode_landmarks`):
argmax of the last step's maps, 9×9 soft-argmax, cell c → HR pixel 4c + 1.5.

Training extras (see :class:`DIC`): the hourglass is pretrained alone on HR faces
(``pretrain_part = "hourglass"``, the ``pretrain@dic_hourglass-<dataset>`` stage of
:mod:`jasrbench.pretrain`) and frozen for the first ``landmark_freeze_steps`` optimizer steps of
joint training (:meth:`DIC.set_training_step`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import pretrained_weights
from ..data import heatmaps as hm
from ..errors import ConfigError
from ..numerics import fixed_order_mean, fixed_order_sum
from .base import FaceModel, ModelOutput
from .registry import register

# The authors' dataset mean (``HRLandmarkDataset.norm``), subtracted from LR and HR images (σ = 1).
MEAN = (0.509, 0.424, 0.378)
PRELU_INIT = 0.2  # the authors' activation('prelu') uses slope 0.2 as PReLU's initial value
LEAKY_SLOPE = 0.2
MAX_FLOOR = 0.05  # each heatmap is divided by max(its maximum, 0.05) before the parts are summed

# Part groups of the attention, as index ranges [start, stop) of the markup.
# 68 points: the authors' merge_heatmap_5 (left eye, right eye, nose, mouth, jaw + brows).
# 194 points (HELEN's own markup, jasrbench/data/helen.py): the authors' HELEN branch groups each
# eye with its brow, the nose, the lips, and the jaw; their index lists (torch.arange(134, 153) …)
# stop one short of each range and leave out points 40, 57, 113, 133, 153, 173 and 193 (their
# configurations train HELEN on 68 points, so that branch never ran); here the ranges are whole.
# 19 points (AFLW, jasrbench/data/aflw.py): not in the authors' code; grouped as their 68-point
# case: each eye, the nose, the mouth, and brows + chin.
PART_GROUPS: dict[int, tuple[tuple[tuple[int, int], ...], ...]] = {
    68: (((36, 42),), ((42, 48),), ((27, 36),), ((48, 68),), ((0, 27),)),
    194: (((134, 154), (174, 194)), ((114, 134), (154, 174)), ((41, 58),), ((58, 114),), ((0, 41),)),
    19: (((6, 9),), ((9, 12),), ((12, 15),), ((15, 18),), ((0, 6), (18, 19))),
}


def _prelu() -> nn.PReLU:
    return nn.PReLU(num_parameters=1, init=PRELU_INIT)


def _conv_prelu(cin: int, cout: int, kernel: int, stride: int = 1, padding: int | None = None) -> nn.Sequential:
    """The authors' ``ConvBlock(..., act_type='prelu', norm_type=None)``: conv (padding (k−1)/2 unless given) + PReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=stride,
                                   padding=(kernel - 1) // 2 if padding is None else padding), _prelu())


def _deconv_prelu(cin: int, cout: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=padding), _prelu())


def part_maps(heatmaps: torch.Tensor, groups: tuple[tuple[tuple[int, int], ...], ...]) -> torch.Tensor:
    """B×K×h×w heatmaps → B×P×h×w part maps: each map over max(its maximum, 0.05), summed per part.

    The operations are the authors' (max over rows then columns; maximum with a 0.05 tensor; a
    contiguous slice summed over the point axis) so that values and gradients match theirs bit for bit
    where they can.
    """
    peak = heatmaps.max(dim=2, keepdim=True)[0].max(dim=3, keepdim=True)[0]
    normalized = heatmaps / torch.maximum(peak, torch.full_like(peak, MAX_FLOOR))
    parts = []
    for ranges in groups:
        total = None
        for start, stop in ranges:
            piece = normalized[:, start:stop].sum(1)
            total = piece if total is None else total + piece
        parts.append(total)
    return torch.stack(parts, dim=1)


class GroupedResBlock(nn.Module):
    """conv3×3 (groups P) + LeakyReLU(0.2) + conv3×3 (groups P), plus the input: one part per group."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=groups),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, groups=groups),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class AttentionFusion(nn.Module):
    """DIC's attentive fusion: features → P part-specific feature groups, weighted by softmaxed part maps, summed."""

    def __init__(self, n_feats: int, n_parts: int = 5, n_blocks: int = 7):
        super().__init__()
        self.n_parts = n_parts
        channels = n_feats * n_parts
        self.expand = nn.Sequential(nn.Conv2d(n_feats, channels, 1), nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
        self.blocks = nn.Sequential(*[GroupedResBlock(channels, n_parts) for _ in range(n_blocks)])

    def forward(self, features: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
        if parts.shape[1] != self.n_parts:
            raise ValueError(f"DIC attention: expected {self.n_parts} part maps, got {parts.shape[1]}")
        b, _, h, w = features.shape
        grouped = self.blocks(self.expand(features)).view(b, self.n_parts, -1, h, w)
        attention = F.softmax(parts, dim=1).unsqueeze(2)  # B×P×1×h×w
        return (grouped * attention).sum(1)


class FeedbackBlock(nn.Module):
    """SRFBN's feedback block (G up/down projection groups, dense over the group outputs), optionally
    with DIC's attention fusion after its input compression. ``in_feats``: F for the first step's
    block (no hidden state), 2F for the recurrent one (input features + hidden state)."""

    def __init__(self, n_feats: int, n_groups: int, in_feats: int, fusion: AttentionFusion | None = None,
                 kernel: int = 12, stride: int = 8, padding: int = 2):
        super().__init__()
        self.compress_in = _conv_prelu(in_feats, n_feats, 1)
        self.fusion = fusion
        self.up = nn.ModuleList([_deconv_prelu(n_feats, n_feats, kernel, stride, padding) for _ in range(n_groups)])
        self.down = nn.ModuleList([_conv_prelu(n_feats, n_feats, kernel, stride, padding) for _ in range(n_groups)])
        self.up_transition = nn.ModuleList([_conv_prelu((g + 1) * n_feats, n_feats, 1) for g in range(1, n_groups)])
        self.down_transition = nn.ModuleList([_conv_prelu((g + 1) * n_feats, n_feats, 1) for g in range(1, n_groups)])
        self.compress_out = _conv_prelu(n_groups * n_feats, n_feats, 1)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor | None = None,
                parts: torch.Tensor | None = None) -> torch.Tensor:
        x = self.compress_in(x if hidden is None else torch.cat((x, hidden), dim=1))
        if self.fusion is not None:
            x = self.fusion(x, parts)
        low, high = [x], []
        for g in range(len(self.up)):
            lo = torch.cat(low, 1)
            if g > 0:
                lo = self.up_transition[g - 1](lo)
            high.append(self.up[g](lo))
            hi = torch.cat(high, 1)
            if g > 0:
                hi = self.down_transition[g - 1](hi)
            low.append(self.down[g](hi))
        return self.compress_out(torch.cat(low[1:], 1))


class Bottleneck(nn.Module):
    """The authors' hourglass residual block without batch norm: conv1×1 in→out/2 + ReLU, conv3×3,
    conv1×1 →out (no activation between the last two, as in their code), plus the input (conv1×1 if widths differ)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cout // 2
        self.body = nn.Sequential(nn.Conv2d(cin, mid, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(mid, mid, 3, padding=1), nn.Conv2d(mid, cout, 1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.body(x)
        return (x if self.skip is None else self.skip(x)) + residual


class Hourglass(nn.Module):
    """Newell et al.'s hourglass, ``depth`` levels, no BN: upper bottleneck + (max-pool → bottleneck →
    inner → bottleneck → bilinear ×2, align_corners True), summed."""

    def __init__(self, n_feats: int, depth: int):
        super().__init__()
        self.up = Bottleneck(n_feats, n_feats)
        self.down = Bottleneck(n_feats, n_feats)
        self.inner = Hourglass(n_feats, depth - 1) if depth > 1 else Bottleneck(n_feats, n_feats)
        self.after = Bottleneck(n_feats, n_feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        upper = self.up(x)
        low = self.after(self.inner(self.down(F.max_pool2d(x, 2, 2))))
        return upper + F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=True)


class FeedbackHourglass(nn.Module):
    """DIC's landmark estimator: one recurrent 4-level hourglass of 2·``n_feats`` channels (see the module docstring).

    :meth:`step` is what DIC calls, on its mean-free SR image, with the previous step's hidden
    state; calling the module (``forward``) takes an image in [0, 1], subtracts the authors' mean
    and runs one step without a hidden state: how it is pretrained alone on HR faces
    (:mod:`jasrbench.pretrain`) and how its HR accuracy is measured.
    """

    def __init__(self, n_feats: int = 256, num_points: int = 68, depth: int = 4):
        super().__init__()
        self.n_feats = n_feats
        self.pre = nn.Sequential(
            nn.Conv2d(3, n_feats // 4, 7, stride=2, padding=3),
            nn.ReLU(inplace=True),
            Bottleneck(n_feats // 4, n_feats // 2),
            nn.MaxPool2d(2, 2),
            Bottleneck(n_feats // 2, n_feats // 2),
            Bottleneck(n_feats // 2, n_feats),
        )
        self.compress_in = nn.Conv2d(2 * n_feats, 2 * n_feats, 1)
        self.hourglass = Hourglass(2 * n_feats, depth)
        self.head = nn.Sequential(Bottleneck(n_feats, n_feats), nn.Conv2d(n_feats, n_feats, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(n_feats, num_points, 1))
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)

    def step(self, image: torch.Tensor, hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean-free image B×3×128×128 (+ hidden B×C×32×32) → heatmaps B×K×32×32, next hidden state."""
        features = self.pre(image)
        features = self.compress_in(torch.cat((features, features if hidden is None else hidden), dim=1))
        features = self.hourglass(features)
        return self.head(features[:, : self.n_feats]), features[:, self.n_feats :]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.step(image - self.mean.to(image.dtype))[0]


def kaiming_init_(module: nn.Module) -> None:
    """The authors' ``init_weights(net, 'kaiming')``: conv/deconv weights Kaiming-normal (fan_in, a = 0), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@dataclass
class DICOutput(ModelOutput):
    """DIC's output: ``sr`` the last step's SR image, ``sr_steps`` every step's (the last is ``sr``)."""

    sr_steps: list[torch.Tensor] | None = None


_PAPER = ("Ma, Jiang, Lu, Zhou & Chen, Deep Face Super-Resolution with Iterative Collaboration between "
          "Attentive Recovery and Landmark Estimation, CVPR 2020")


@register("dic", description="DIC (CVPR 2020): SRFBN feedback SR + recurrent hourglass, part attention, 4 steps")
class DIC(FaceModel):
    """DIC (Ma et al., CVPR 2020), as the authors' ``DIC`` network and ``SRLandmarkSolver`` train it.

    Input: LR 16×16 in [0, 1] (``input_kind = "lr"``); the authors' mean is subtracted inside and
    added back to every SR output. Outputs (:class:`DICOutput`): ``sr`` B×3×128×128 (the last
    step), ``heatmaps`` ``n_steps`` × B×K×32×32 (K = ``num_points`` maps, no background channel:
    the authors' hourglass predicts none), ``sr_steps`` every step's SR image.
    Loss: Σ over the steps of L1(sr_t) + ``alpha`` · MSE(heatmaps_t), α = 0.1 (module docstring).
    Decoding: the suite's (argmax + 9×9 soft-argmax on the last step, cell c → 4c + 1.5 HR px).
    Architecture: see the module docstring. Init: the authors' Kaiming-normal (fan_in), biases 0,
    PReLU slopes 0.2.

    Keywords (defaults = ``train_DIC_CelebA.json``/``train_DIC_Helen.json``): ``n_feats`` 48,
    ``n_groups`` 6, ``n_steps`` 4, ``hg_feats`` 256, ``n_fusion_blocks`` 7, ``alpha`` 0.1,
    ``num_points`` 68 (also 194 for HELEN's markup and 19 for AFLW: :data:`PART_GROUPS`),
    ``landmark_freeze_steps`` 0.

    Parameters: 21,803,849 (SR branch 9,804,677; hourglass 11,999,172; the authors' code counts the same)

    Training extras:

    - ``pretrain_part = "hourglass"``: the hourglass is first trained alone on HR faces (the authors
      load ``FB_HG_68_CelebA.pth``, trained by code they did not publish; here the ``pretrain``
      stage, one hourglass step without hidden state per HR face, the model's own heatmap loss) and
      joint training starts from it (:meth:`load_pretrained`, called by ``train``).
    - ``landmark_freeze_steps``: the authors keep the hourglass's weights fixed for the first
      ``release_HG_grad_step`` iterations (2,000 on CelebA, 20,000 on HELEN, of 150,000): its
      parameters get no gradient, so Adam leaves them (and their moments) untouched, while the
      heatmap loss still reaches the SR branch through it. :meth:`set_training_step` applies this
      for an optimizer step; the training loop must call it before each step (the optimizer must
      hold the hourglass's parameters from the start).
    - Schedule (the profile's ``train`` entry, not the model): Adam lr 1e-4, betas (0.9, 0.999), no
      weight decay, ×0.5 after 10k, 20k, 40k, 80k of 150k iterations, batch 8.

    Left out: DICGAN (an identity loss through LightCNN, whose weights cannot be obtained here, and
    a GAN loss); the authors' GAN solver also reuses the last step's SR image for every step's pixel
    loss, which does not concern DIC's solver used here.
    """

    paper = _PAPER
    input_kind = "lr"
    predicts_sr = True
    predicts_landmarks = True
    heatmap_stride = 4
    sr_loss = "l1"
    pretrain_part = "hourglass"  # jasrbench.pretrain trains this network alone on HR faces first

    def __init__(
        self,
        num_points: int = 68,
        n_feats: int = 48,
        n_groups: int = 6,
        n_steps: int = 4,
        hg_feats: int = 256,
        n_fusion_blocks: int = 7,
        alpha: float = 0.1,
        landmark_freeze_steps: int = 0,
    ):
        super().__init__(num_points=num_points, alpha=alpha)
        if num_points not in PART_GROUPS:
            raise ConfigError(f"DIC: num_points={num_points} has no part grouping for the attention; "
                              f"known markups: {sorted(PART_GROUPS)}")
        if n_feats < 1 or n_groups < 1 or n_steps < 1 or hg_feats < 4 or hg_feats % 4 or n_fusion_blocks < 0:
            raise ConfigError(f"DIC: bad sizes n_feats={n_feats}, n_groups={n_groups}, n_steps={n_steps}, "
                              f"hg_feats={hg_feats} (a multiple of 4), n_fusion_blocks={n_fusion_blocks}")
        if int(landmark_freeze_steps) < 0:
            raise ConfigError(f"DIC: landmark_freeze_steps must be ≥ 0, got {landmark_freeze_steps}")
        self.n_steps = n_steps
        self.landmark_freeze_steps = int(landmark_freeze_steps)
        self.part_groups = PART_GROUPS[num_points]
        n_parts = len(self.part_groups)
        self.conv_in = _conv_prelu(3, 4 * n_feats, 3)
        self.first_block = FeedbackBlock(n_feats, n_groups, in_feats=n_feats)
        self.block = FeedbackBlock(n_feats, n_groups, in_feats=2 * n_feats,
                                   fusion=AttentionFusion(n_feats, n_parts, n_fusion_blocks))
        self.out = _deconv_prelu(n_feats, n_feats, 8, 4, 2)  # 32² → 128²
        self.conv_out = nn.Conv2d(n_feats, 3, 3, padding=1)
        self.hourglass = FeedbackHourglass(hg_feats, num_points)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        kaiming_init_(self)

    def forward(self, lr: torch.Tensor) -> DICOutput:
        mean = self.mean.to(lr.dtype)
        x = lr - mean
        inter = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        feat = F.pixel_shuffle(self.conv_in(x), 2)
        block_out = hidden = maps = None
        sr_steps, heatmaps = [], []
        for t in range(self.n_steps):
            if t == 0:
                block_out = self.first_block(feat)
            else:
                block_out = self.block(feat, block_out, part_maps(maps, self.part_groups))
            sr = inter + self.conv_out(self.out(block_out))
            maps, hidden = self.hourglass.step(sr, hidden)
            sr_steps.append(sr + mean)
            heatmaps.append(maps)
        return DICOutput(sr=sr_steps[-1], heatmaps=heatmaps, sr_steps=sr_steps)

    @property
    def heatmap_channels(self) -> int:
        """K: the authors' hourglass predicts no background map (the suite's other heatmap models have K + 1)."""
        return self.num_points

    # -- training --------------------------------------------------------------------------------
    def load_pretrained(self, path: str) -> None:
        """Start the joint training from the hourglass pretrained on HR faces (``jasrbench pretrain``)."""
        pretrained_weights.load_pretrained(self.hourglass, path, self.pretrain_part, self.num_points)

    def set_training_step(self, step: int) -> bool:
        """Before optimizer step ``step`` (0-based, counted over the whole run): the hourglass trains
        only from ``landmark_freeze_steps`` on. Returns whether it trains at this step."""
        trains = int(step) >= self.landmark_freeze_steps
        for p in self.hourglass.parameters():
            p.requires_grad_(trains)
        return trains

    def heatmap_targets(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """B×K×32×32 Gaussians of σ = 1 cell (4 HR px), no threshold, no background; mask B×K (module docstring)."""
        maps, mask = hm.encode(batch["landmarks"], batch.get("visible"), size=self.heatmap_size,
                               stride=self.heatmap_stride, sigma=float(self.heatmap_stride), threshold=0.0,
                               image_size=self.heatmap_size * self.heatmap_stride)
        return maps[:, : self.num_points], mask[:, : self.num_points]

    def sr_loss_value(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """Mean L1 in at least float32 (the base class's, but a float64 model keeps float64: the fidelity check)."""
        dtype = torch.promote_types(sr.dtype, torch.float32)
        return fixed_order_mean((sr.to(dtype) - hr.to(dtype)).abs())

    def heatmap_loss_value(self, stages: list[torch.Tensor], target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Σ over the steps of the MSE over the masked maps' pixels (the authors' ``nn.MSELoss()`` per step)."""
        dtype = torch.promote_types(stages[0].dtype, torch.float32)
        target = target.to(dtype)
        m = mask.to(dtype)
        count = (m.sum() * target.shape[-2] * target.shape[-1]).clamp_min(1.0)
        m = m.unsqueeze(-1).unsqueeze(-1)
        # Fixed-order sums: a logged loss must not change with the thread count (jasrbench/numerics.py).
        return sum(fixed_order_sum((s.to(dtype) - target) ** 2 * m, 4) for s in stages) / count

    def loss(self, output: ModelOutput, batch: dict) -> dict[str, torch.Tensor]:
        steps = getattr(output, "sr_steps", None) or [output.sr]
        sr_term = sum(self.sr_loss_value(s, batch["hr"]) for s in steps)
        target, mask = self.heatmap_targets(batch)
        hm_term = self.heatmap_loss_value(output.heatmaps, target, mask)
        return {"total": sr_term + self.alpha * hm_term, "sr": sr_term, "heatmap": hm_term}
