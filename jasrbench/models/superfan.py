"""Super-FAN: progressive residual SR network + a 2-stack FAN on the SR output, trained jointly (Tables 1–3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import pretrained_weights
from .base import FaceModel, ModelOutput
from .fsrnet import BasicBlock
from .registry import register


def scale_gradient(x: torch.Tensor, weight: float) -> torch.Tensor:
    """``x`` in the forward pass; its gradient multiplied by ``weight`` in the backward pass."""
    if weight == 1.0 or not x.requires_grad:
        return x
    return x.detach() + weight * (x - x.detach())


class ConvBlock(nn.Module):
    """FAN's hierarchical, parallel, multi-scale residual block (Bulat &
    Tzimiropoulos, ICCV 2017): three pre-activated 3×3 convs of out/2, out/4,
    out/4 channels whose outputs are concatenated, plus the input (through
    BN-ReLU-conv1×1 when the width changes). Convs without bias, as in FAN."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        half, quarter = cout // 2, cout // 4
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, cout - half - quarter, 3, padding=1, bias=False)
        self.downsample = (
            nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=False), nn.Conv2d(cin, cout, 1, bias=False))
            if cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat([out1, out2, out3], dim=1) + residual


class FANHourglass(nn.Module):
    """FAN's hourglass: upper ConvBlock branch + avg-pool → ConvBlock → inner → ConvBlock → nearest ×2."""

    def __init__(self, n_feats: int, depth: int):
        super().__init__()
        self.b1 = ConvBlock(n_feats, n_feats)
        self.b2 = ConvBlock(n_feats, n_feats)
        self.inner = FANHourglass(n_feats, depth - 1) if depth > 1 else ConvBlock(n_feats, n_feats)
        self.b3 = ConvBlock(n_feats, n_feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.b3(self.inner(self.b2(F.avg_pool2d(x, 2, 2))))
        return self.b1(x) + F.interpolate(low, scale_factor=2, mode="nearest")


class FAN(nn.Module):
    """Face Alignment Network (Bulat & Tzimiropoulos, ICCV 2017) with ``stacks`` hourglasses.

    conv7×7 stride 2 + BN + ReLU, ConvBlock(64→128), avg-pool 2, ConvBlock(128→128),
    ConvBlock(128→n_feats); per stack: hourglass, ConvBlock, conv1×1 + BN + ReLU,
    conv1×1 → maps; between stacks the features are merged back through two 1×1
    convs (FAN's intermediate supervision). Maps at 1/4 of the input size.
    """

    def __init__(self, out_channels: int, n_feats: int = 256, stacks: int = 2, depth: int = 4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, n_feats)
        self.hourglasses = nn.ModuleList([FANHourglass(n_feats, depth) for _ in range(stacks)])
        self.tops = nn.ModuleList(
            [
                nn.Sequential(
                    ConvBlock(n_feats, n_feats),
                    nn.Conv2d(n_feats, n_feats, 1),
                    nn.BatchNorm2d(n_feats),
                    nn.ReLU(inplace=True),
                )
                for _ in range(stacks)
            ]
        )
        self.heads = nn.ModuleList([nn.Conv2d(n_feats, out_channels, 1) for _ in range(stacks)])
        self.merge_features = nn.ModuleList([nn.Conv2d(n_feats, n_feats, 1) for _ in range(stacks - 1)])
        self.merge_maps = nn.ModuleList([nn.Conv2d(out_channels, n_feats, 1) for _ in range(stacks - 1)])

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = F.avg_pool2d(self.conv2(self.stem(image)), 2, 2)
        previous = self.conv4(self.conv3(x))
        outputs = []
        for i, (hourglass, top, head) in enumerate(zip(self.hourglasses, self.tops, self.heads)):
            ll = top(hourglass(previous))
            maps = head(ll)
            outputs.append(maps)
            if i < len(self.heads) - 1:
                previous = previous + self.merge_features[i](ll) + self.merge_maps[i](maps)
        return outputs


class ScaleStage(nn.Module):
    """Residual blocks at one resolution followed by conv3×3 + BN, with a skip over the stage."""

    def __init__(self, n_feats: int, n_blocks: int):
        super().__init__()
        self.body = nn.Sequential(
            *[BasicBlock(n_feats) for _ in range(n_blocks)],
            nn.Conv2d(n_feats, n_feats, 3, padding=1, bias=False),
            nn.BatchNorm2d(n_feats),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register("superfan", description="Super-FAN: progressive residual SR (16→32→64→128) + 2-stack FAN on the SR output")
class SuperFAN(FaceModel):
    """Super-FAN ×8 (Bulat & Tzimiropoulos, "Super-FAN: Integrated Facial Landmark
    Localization and Super-Resolution of Real-World Low Resolution Faces in
    Arbitrary Poses with GANs", CVPR 2018).

    Input: LR 16×16. Network:

    - SR network (the paper's residual architecture, with the residual blocks
      spread over the resolutions instead of all at 16×16): conv3×3 3→n_feats +
      ReLU; at each of 16, 32, 64, 128 px a stage of ``n_blocks[i]`` residual blocks
      (conv-BN-ReLU-conv-BN + identity) + conv3×3 + BN with a skip over the stage;
      between stages ×2 upsampling (conv3×3 →4·n_feats, PixelShuffle(2), ReLU);
      conv3×3 →3 (``output.sr``).
    - FAN (Bulat & Tzimiropoulos, ICCV 2017) with ``fan_stacks`` hourglasses of
      depth ``fan_depth`` and ``fan_feats`` features, applied to the SR image:
      K+1 maps at 32×32 (``heatmap_stride`` 4), one entry of ``heatmaps`` per stack.

    Training, as Bulat & Tzimiropoulos do it: (1) the FAN is first trained alone on
    HR faces — here the 128² HR training crops, in the DVC stage
    ``pretrain@superfan_fan-<dataset>`` (:mod:`jasrbench.pretrain`; a profile asks for
    it with ``models.superfan.pretrain``) — and (2) SR network and FAN are then
    trained jointly from that FAN (:meth:`load_pretrained`, called by ``train``).

    Loss (joint): ``l_pixel + alpha · l_heatmap``. Both terms have the paper's
    normalizations (supplementary material of the CVPR 2018 paper, Eqs. 1–2):
    l_pixel = 1/(r²WH) Σ (I_HR − G(I_LR))², the mean squared error over the HR
    pixels (images in [0, 1]); l_heatmap = (1/N) Σ_n Σ_ij (M̃ⁿ_ij − M̂ⁿ_ij)², squared
    error summed over each map's pixels and averaged over the N landmarks (here
    the masked maps and the batch), summed over the stacks. Gradients of the
    heatmap loss reach the SR network through the SR image (the point of
    Super-FAN). The paper's l_feature and l_WGAN terms are its optional GAN extras
    (off here, as for every model of the benchmark).

    The heatmap weight: the main paper's numeric loss weights could not be retrieved here (only
    the supplementary's definitions above), so it is calibrated, not copied. What the paper does
    show is the regime: its ablations move PSNR by fractions of a dB between the pixel-only and
    the pixel + heatmap generator, so the pixel term governs the SR image and the heatmap term
    nudges it. With these normalizations and a weight of 1, l_heatmap (≈ 3–9 from an
    HR-pretrained FAN) outweighs l_pixel (≈ 0.007 at bicubic quality) ~10³ times; the SR image
    became whatever the FAN responds to and collapsed to 14 dB, with or without the pretrained
    FAN. ``sr_heatmap_weight`` is the weight of l_heatmap in the *SR network's* gradient
    (the gradient reaching the SR image through the FAN is scaled by it); the FAN itself gets
    l_heatmap at weight ``alpha``. Under Adam this is the paper's single weight: a parameter's
    step does not depend on the scale of its gradient, and only l_heatmap reaches the FAN, but a
    small loss weight would let the L2 weight decay (5e-4) outgrow the FAN's gradient and shrink
    it. The ``cpu`` and ``paper`` profiles set ``sr_heatmap_weight`` 3e-4, which puts the
    heatmap term at about a tenth of the pixel term at the start of joint training (the
    ``train`` history logs both). The default, 1, is the loss as the supplementary defines it.

    Parameters: 14,107,597

    Widths/depths: ``n_feats`` (64), ``n_blocks`` ((12, 3, 2, 2) at 16/32/64/128 px),
    ``fan_feats`` (256), ``fan_stacks`` (2), ``fan_depth`` (4), ``alpha`` (1.0),
    ``sr_heatmap_weight`` (1.0),
    ``num_points`` (68; 19 for AFLW). The pretrained FAN
    (``models/<profile>/pretrain/superfan_fan-<dataset>/fan.pt``) is loaded by ``train``
    when the profile has ``models.superfan.pretrain``; without it the FAN starts from scratch.
    Init: PyTorch defaults.

    Adaptations: Super-FAN is ×4 (16 → 64) with blocks 12/3/2 at 16/32/64 px; for ×8
    a third ×2 upsampling and a 128 px stage (2 blocks, like the paper's last
    stage) are added. FAN takes 256×256 faces and returns 64×64 maps (1/4); here it
    takes the 128×128 SR image and returns 32×32 maps (also 1/4, σ = 4 HR px =
    1 cell, FAN's own σ). Super-FAN's heatmap target is FAN's output on the HR
    image; here it is the ground-truth heatmap (K points + background), which the
    benchmark has.
    """

    paper = (
        "Bulat & Tzimiropoulos, Super-FAN: Integrated Facial Landmark Localization and Super-Resolution "
        "of Real-World Low Resolution Faces in Arbitrary Poses with GANs, CVPR 2018"
    )
    input_kind = "lr"
    predicts_sr = True
    predicts_landmarks = True
    heatmap_stride = 4
    sr_loss = "mse"
    pretrain_part = "fan"  # jasrbench.pretrain trains this network alone on HR faces first

    def __init__(
        self,
        num_points: int = 68,
        n_feats: int = 64,
        n_blocks: tuple[int, ...] = (12, 3, 2, 2),
        fan_feats: int = 256,
        fan_stacks: int = 2,
        fan_depth: int = 4,
        alpha: float = 1.0,
        sr_heatmap_weight: float = 1.0,
    ):
        super().__init__(num_points=num_points, alpha=alpha)
        if not 0.0 <= sr_heatmap_weight <= 1.0 or math.isnan(sr_heatmap_weight):
            raise ValueError(f"Super-FAN's sr_heatmap_weight must lie in [0, 1], got {sr_heatmap_weight}")
        self.sr_heatmap_weight = float(sr_heatmap_weight)
        n_blocks = (int(n_blocks),) * 4 if isinstance(n_blocks, int) else tuple(int(b) for b in n_blocks)
        n_scales = int(math.log2(self.scale)) + 1
        if len(n_blocks) != n_scales:
            raise ValueError(f"Super-FAN needs {n_scales} block counts (16…128 px), got {n_blocks}")
        if fan_stacks < 1:
            raise ValueError(f"Super-FAN needs at least one FAN stack, got {fan_stacks}")
        self.head = nn.Sequential(nn.Conv2d(3, n_feats, 3, padding=1), nn.ReLU(inplace=True))
        self.stages = nn.ModuleList([ScaleStage(n_feats, b) for b in n_blocks])
        self.upsamplers = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(inplace=True))
                for _ in range(n_scales - 1)
            ]
        )
        self.tail = nn.Conv2d(n_feats, 3, 3, padding=1)
        self.fan = FAN(num_points + 1, n_feats=fan_feats, stacks=fan_stacks, depth=fan_depth)

    def super_resolve(self, lr: torch.Tensor) -> torch.Tensor:
        x = self.head(lr)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.upsamplers):
                x = self.upsamplers[i](x)
        return self.tail(x)

    def forward(self, lr: torch.Tensor) -> ModelOutput:
        sr = self.super_resolve(lr)
        return ModelOutput(sr=sr, heatmaps=self.fan(scale_gradient(sr, self.sr_heatmap_weight)))

    def load_pretrained(self, path: str) -> None:
        """Start the joint training from the FAN pretrained on HR faces (``jasrbench pretrain``)."""
        pretrained_weights.load_pretrained(self.fan, path, self.pretrain_part, self.num_points)

    def heatmap_loss_value(self, stages: list[torch.Tensor], target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Super-FAN's heatmap loss: per-map squared error summed over pixels, mean over masked maps, summed over stacks."""
        m = mask.to(target.dtype)
        n_maps = m.sum().clamp_min(1.0)
        m = m.unsqueeze(-1).unsqueeze(-1)
        return sum(((s.float() - target) ** 2 * m).sum() for s in stages) / n_maps
