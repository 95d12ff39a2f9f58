"""FSRNet: coarse SR → fine SR encoder + landmark-heatmap prior → fine SR decoder (Tables 1–3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import FaceModel, ModelOutput, init_normal_
from .registry import register


class BasicBlock(nn.Module):
    """Residual block conv3×3 → BN → ReLU → conv3×3 → BN, plus identity."""

    def __init__(self, n_feats: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, 3, padding=1, bias=False),
            nn.BatchNorm2d(n_feats),
            nn.ReLU(inplace=True),
            nn.Conv2d(n_feats, n_feats, 3, padding=1, bias=False),
            nn.BatchNorm2d(n_feats),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Bottleneck(nn.Module):
    """Newell et al.'s hourglass residual module (pre-activation bottleneck):
    BN-ReLU-conv1×1 (→out/2), BN-ReLU-conv3×3, BN-ReLU-conv1×1 (→out), plus the
    input (through a 1×1 conv when the width changes)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cout // 2
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=False),
            nn.Conv2d(cin, mid, 1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1),
        )
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class Hourglass(nn.Module):
    """Newell et al.'s hourglass of ``depth`` levels: per level an upper residual
    branch and a max-pool → residual → (inner hourglass) → residual → nearest ×2
    branch, summed."""

    def __init__(self, n_feats: int, depth: int):
        super().__init__()
        self.up = Bottleneck(n_feats, n_feats)
        self.low1 = Bottleneck(n_feats, n_feats)
        self.inner = Hourglass(n_feats, depth - 1) if depth > 1 else Bottleneck(n_feats, n_feats)
        self.low3 = Bottleneck(n_feats, n_feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.low3(self.inner(self.low1(F.max_pool2d(x, 2, 2))))
        return self.up(x) + F.interpolate(low, scale_factor=2, mode="nearest")


@dataclass
class FSRNetOutput(ModelOutput):
    """FSRNet's output: ``sr`` is the fine SR image, ``coarse`` the coarse SR image."""

    coarse: torch.Tensor | None = None


@register("fsrnet", description="FSRNet: coarse SR, fine encoder + 2-HG heatmap prior (64×64), fine decoder; MSE ×3")
class FSRNet(FaceModel):
    """FSRNet ×8 (Chen, Tai, Liu, Shen & Yang, "FSRNet: End-to-End Learning Face
    Super-Resolution with Facial Priors", CVPR 2018).

    Input: the LR 16×16 bicubic-upsampled to 128×128 inside the model (as FSRNet).
    Network:

    - coarse SR network: conv3×3 3→n_feats + BN + ReLU, ``coarse_blocks`` residual
      blocks (conv-BN-ReLU-conv-BN + identity), conv3×3 →3: the coarse image y_c.
    - fine SR encoder on y_c: conv3×3 stride 2 (→64×64) + BN + ReLU,
      ``encoder_blocks`` residual blocks, conv3×3.
    - prior estimation network on y_c: conv7×7 stride 2 (→64×64) + BN + ReLU,
      3 hourglass residual modules (→prior_feats), ``hourglasses`` stacked
      hourglasses of depth ``hg_depth`` (Newell et al.), a residual module, conv1×1
      + BN + ReLU, conv1×1 → K+1 heatmaps at 64×64 (``heatmap_stride`` 2).
    - fine SR decoder on [encoder features, heatmaps]: conv3×3 →n_feats + BN + ReLU,
      4×4 stride-2 transposed conv (→128×128) + BN + ReLU, ``decoder_blocks``
      residual blocks, conv3×3 →3: the fine image (``output.sr``).

    Loss: FSRNet's own, at its own scale (Chen et al., CVPR 2018:
    (1/2N) Σ_i ‖y − y_c‖² + α‖y − y_f‖² + β‖p − p̂‖², with α = β = 1 there):
    ``total = SSE(y_c)/2B + SSE(y_f)/2B + prior_weight · Σ_masked (p − p̂)²/2B``, sums
    over all pixels (images in [0, 1]) and over the masked maps. Returned keys: total,
    sr (fine term), coarse (coarse term), heatmap (prior term), all on that scale.

    Why sums and not per-pixel means: Adam ignores a global loss scale except against its coupled
    L2 weight decay (the paper profile's 5e-4). Dividing the loss by 3·128·128/2 made the decay
    that much stronger relative to the data; the prior then collapsed to all-zero point maps and
    the decoder got no landmark prior. At FSRNet's scale the decay is as weak as the profile
    intends (as for JASRNet's and CPM's Σ/2B heatmap terms).

    Parameters: 3,177,867

    Widths/depths: ``n_feats`` (64), ``prior_feats`` (128), ``coarse_blocks`` (3),
    ``encoder_blocks`` (12), ``decoder_blocks`` (3), ``hourglasses`` (2),
    ``hg_depth`` (4), ``prior_weight`` (1.0), ``num_points`` (68; 19 for AFLW).
    Init: PyTorch defaults, except the prior's last 1×1 conv: N(0, 0.01) weights,
    zero bias (JASRNet's init for its heatmap heads), so the prior starts near the
    all-zero maps instead of spending its first steps shrinking outputs of order 1
    on 64×64×(K+1) maps.

    Adaptations: 300W/AFLW have no parsing maps, so the prior is K point heatmaps
    plus the background map (our encoding, σ = 4 HR px = 2 cells at 64×64). FSRNet
    is already ×8 from 16×16 to 128×128. The prior's hourglasses are stacked
    without intermediate supervision (FSRNet's loss has one prior term), so
    ``heatmaps`` has one entry. Widths of the prior branch (128) and the hourglass
    depth (4, Newell et al.'s) are our reading of the paper. The paper's count of
    27.14M (JASRNet's Table 3) is not reproduced by this description.
    """

    paper = (
        "Chen, Tai, Liu, Shen & Yang, FSRNet: End-to-End Learning Face Super-Resolution with "
        "Facial Priors, CVPR 2018"
    )
    input_kind = "upsampled"
    predicts_sr = True
    predicts_landmarks = True
    heatmap_stride = 2
    sr_loss = "mse"

    def __init__(
        self,
        num_points: int = 68,
        n_feats: int = 64,
        prior_feats: int = 128,
        coarse_blocks: int = 3,
        encoder_blocks: int = 12,
        decoder_blocks: int = 3,
        hourglasses: int = 2,
        hg_depth: int = 4,
        prior_weight: float = 1.0,
        alpha: float = 1.0,
    ):
        super().__init__(num_points=num_points, alpha=alpha)
        if hourglasses < 1:
            raise ValueError(f"FSRNet needs at least one hourglass, got {hourglasses}")
        self.prior_weight = float(prior_weight)
        out = num_points + 1

        def conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.coarse = nn.Sequential(
            *conv_bn_relu(3, n_feats, 3),
            *[BasicBlock(n_feats) for _ in range(coarse_blocks)],
            nn.Conv2d(n_feats, 3, 3, padding=1),
        )
        self.encoder = nn.Sequential(
            *conv_bn_relu(3, n_feats, 3, stride=2),
            *[BasicBlock(n_feats) for _ in range(encoder_blocks)],
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
        )
        prior_head = nn.Conv2d(prior_feats, out, 1)
        init_normal_(prior_head, 0.01)
        self.prior = nn.Sequential(
            *conv_bn_relu(3, n_feats, 7, stride=2),
            Bottleneck(n_feats, prior_feats),
            Bottleneck(prior_feats, prior_feats),
            Bottleneck(prior_feats, prior_feats),
            *[Hourglass(prior_feats, hg_depth) for _ in range(hourglasses)],
            Bottleneck(prior_feats, prior_feats),
            *conv_bn_relu(prior_feats, prior_feats, 1),
            prior_head,
        )
        self.decoder = nn.Sequential(
            *conv_bn_relu(n_feats + out, n_feats, 3),
            nn.ConvTranspose2d(n_feats, n_feats, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(n_feats),
            nn.ReLU(inplace=True),
            *[BasicBlock(n_feats) for _ in range(decoder_blocks)],
            nn.Conv2d(n_feats, 3, 3, padding=1),
        )

    def forward(self, lr: torch.Tensor) -> FSRNetOutput:
        coarse = self.coarse(self.upsample(lr))
        features = self.encoder(coarse)
        prior = self.prior(coarse)
        fine = self.decoder(torch.cat([features, prior.to(features.dtype)], dim=1))
        return FSRNetOutput(sr=fine, heatmaps=[prior], coarse=coarse)

    def loss(self, output: ModelOutput, batch: dict) -> dict[str, torch.Tensor]:
        # Σ over an image's pixels / 2, per image: the MSE (a mean) × (3·H·W)/2 → FSRNet's SSE/2B.
        half_pixels = batch["hr"][0].numel() / 2.0
        fine_term = self.sr_loss_value(output.sr, batch["hr"]) * half_pixels
        coarse = getattr(output, "coarse", None)
        coarse_term = (self.sr_loss_value(coarse, batch["hr"]) * half_pixels if coarse is not None
                       else fine_term.new_zeros(()))
        hm_term = fine_term.new_zeros(())
        if output.heatmaps:
            target, mask = self.heatmap_targets(batch)
            hm_term = self.heatmap_loss_value(output.heatmaps, target, mask)  # Σ_masked (p − p̂)² / 2B
        return {
            "total": coarse_term + fine_term + self.prior_weight * hm_term,
            "sr": fine_term,
            "coarse": coarse_term,
            "heatmap": hm_term,
        }
