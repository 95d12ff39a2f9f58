"""TDAE: the transformative discriminative autoencoder (decoder–encoder–decoder) of Yu & Porikli (Table 1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import FaceModel, ModelOutput
from .registry import register
from .urdgn import conv_bn_relu, deconv_bn_relu


@dataclass
class TDAEOutput(ModelOutput):
    """TDAE's output: ``sr`` is the second decoder's image; ``intermediate`` the first decoder's."""

    intermediate: torch.Tensor | None = None


class SpatialTransformer(nn.Module):
    """A spatial transformer layer (Jaderberg et al. 2015): a small localization
    network regresses a 2×3 affine matrix from the feature map, which is then
    resampled bilinearly with that transform.

    The regression layer starts at the identity transform (bias = identity) with
    small random weights (N(0, 1e-3)): all-zero weights would start at the identity
    too but leave the localization convolutions without any gradient.
    """

    def __init__(self, channels: int, loc_feats: int = 32):
        super().__init__()
        self.localization = nn.Sequential(
            nn.Conv2d(channels, loc_feats, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(loc_feats, loc_feats, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.theta = nn.Linear(loc_feats, 6)
        nn.init.normal_(self.theta.weight, 0.0, 1e-3)
        with torch.no_grad():
            self.theta.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.theta(self.localization(x)).float().view(-1, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # Resampling in float32: grid_sample needs input and grid of one dtype, and
        # bf16 sampling coordinates would be off by up to half a pixel at 128 px.
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.to(x.dtype)


@register("tdae", description="TDAE: decoder (16→128, STNs) – encoder (128→16, STNs) – decoder (16→128), pixel MSE")
class TDAE(FaceModel):
    """TDAE ×8 (Yu & Porikli, "Hallucinating Very Low-Resolution Unaligned and Noisy
    Face Images by Transformative Discriminative Autoencoders", CVPR 2017; it builds
    on their "Face Hallucination with Tiny Unaligned Images by Transformative
    Discriminative Neural Networks", AAAI 2017).

    Input: LR 16×16. Network, decoder–encoder–decoder:

    - D1 (decoder): conv 5×5 3→widths[0] + BN + ReLU at 16×16; three ×2 stages of
      4×4 stride-2 transposed conv + BN + ReLU and conv + BN + ReLU (as URDGN),
      with a spatial transformer after the 32×32 and 64×64 stages; conv 5×5 → an
      intermediate 3×128×128 image (``output.intermediate``).
    - E (encoder): three 4×4 stride-2 convs + BN + ReLU (128→64→32→16, widths
      reversed) with a spatial transformer after the 64×64 and 32×32 ones, then
      conv 3×3 → a compact code of ``code_channels`` × 16 × 16.
    - D2 (decoder): the D1 layout without transformers, from the code to the final
      3×128×128 image (``output.sr``).

    Loss: pixel MSE on the final image + ``intermediate_weight`` × pixel MSE on D1's
    image (both means over pixels); the paper's discriminative (adversarial) loss is
    not used. Returned keys: total, sr (final), intermediate (D1), heatmap (0).

    Parameters: 8,412,510

    Widths/depths: ``widths`` (512, 256, 128, 64) for both decoders (features at 16,
    32, 64, 128 px; the encoder uses them reversed), ``code_channels`` (64),
    ``loc_feats`` (32, the transformers' localization nets), ``stn`` (True),
    ``intermediate_weight`` (1.0).
    Init: PyTorch defaults; transformers start at the identity transform.

    Adaptations and choices: the paper already maps 16×16 → 128×128. It describes
    the three parts, their deconvolution/convolution layer types and the spatial
    transformers interleaved in D1 and E; the exact widths, kernel sizes, code size
    and the weight of the D1 pixel loss are our choices (constructor arguments).
    Supervising D1 with the HR image follows the paper's design, in which D1
    produces an upsampled face that E re-encodes.
    """

    paper = (
        "Yu & Porikli, Hallucinating Very Low-Resolution Unaligned and Noisy Face Images by "
        "Transformative Discriminative Autoencoders, CVPR 2017"
    )
    input_kind = "lr"
    predicts_sr = True
    predicts_landmarks = False
    sr_loss = "mse"

    def __init__(
        self,
        widths: tuple[int, ...] = (512, 256, 128, 64),
        code_channels: int = 64,
        loc_feats: int = 32,
        stn: bool = True,
        intermediate_weight: float = 1.0,
        num_points: int = 68,
        alpha: float = 1.0,
    ):
        super().__init__(num_points=num_points, alpha=alpha)
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4:
            raise ValueError(f"TDAE needs 4 widths (16, 32, 64, 128 px), got {widths}")
        self.intermediate_weight = float(intermediate_weight)

        def stn_or_identity(channels: int) -> nn.Module:
            return SpatialTransformer(channels, loc_feats) if stn else nn.Identity()

        # D1: 16 → 128 with transformers after the 32 and 64 px stages.
        d1: list[nn.Module] = conv_bn_relu(3, widths[0], 5, True)
        for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
            d1 += deconv_bn_relu(cin, cout, True) + conv_bn_relu(cout, cout, 3, True)
            if i < 2:
                d1.append(stn_or_identity(cout))
        d1.append(nn.Conv2d(widths[-1], 3, 5, padding=2))
        self.decoder1 = nn.Sequential(*d1)

        # E: 128 → 16 with transformers after the 64 and 32 px stages.
        rev = widths[::-1]  # 64, 128, 256, 512
        enc: list[nn.Module] = []
        cin = 3
        for i, cout in enumerate(rev[:3]):
            enc += [nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if i < 2:
                enc.append(stn_or_identity(cout))
            cin = cout
        enc.append(nn.Conv2d(cin, code_channels, 3, padding=1))
        self.encoder = nn.Sequential(*enc)

        # D2: code → 128, no transformers.
        d2: list[nn.Module] = conv_bn_relu(code_channels, widths[0], 3, True)
        for cin, cout in zip(widths[:-1], widths[1:]):
            d2 += deconv_bn_relu(cin, cout, True) + conv_bn_relu(cout, cout, 3, True)
        d2.append(nn.Conv2d(widths[-1], 3, 5, padding=2))
        self.decoder2 = nn.Sequential(*d2)

    def forward(self, lr: torch.Tensor) -> TDAEOutput:
        intermediate = self.decoder1(lr)
        sr = self.decoder2(self.encoder(intermediate))
        return TDAEOutput(sr=sr, intermediate=intermediate)

    def loss(self, output: ModelOutput, batch: dict) -> dict[str, torch.Tensor]:
        sr_term = self.sr_loss_value(output.sr, batch["hr"])
        inter = getattr(output, "intermediate", None)
        inter_term = self.sr_loss_value(inter, batch["hr"]) if inter is not None else sr_term.new_zeros(())
        zero = sr_term.new_zeros(())
        return {
            "total": sr_term + self.intermediate_weight * inter_term,
            "sr": sr_term,
            "intermediate": inter_term,
            "heatmap": zero,
        }
