"""Optional adversarial and perceptual training terms (DESIGN §3), off in every profile.

The paper compares pixel-trained models; these terms exist so the GAN/perceptual versions of the
baselines (SRGAN = ``srresnet`` + both, FSRGAN, Super-FAN's full loss) train with the same loop,
via ``train.adversarial_weight``, ``train.perceptual_weight`` and ``train.perceptual_layer``
(SRGAN's VGG54 is ``relu5_4``). :class:`Discriminator` is SRGAN's (Ledig et al., CVPR 2017),
average-pooled to 4×4 before the dense layers so its size does not depend on the input, trained
with the non-saturating GAN loss on logits. :class:`PerceptualLoss` is the MSE between frozen
fp32 VGG-19 features of SR and HR; weights from ``weights=PATH``, ``$JASRBENCH_VGG_WEIGHTS`` or
torchvision's download, and an error naming both ways when none works.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, JasrbenchError

VGG_LAYERS = {"relu1_2": 4, "relu2_2": 9, "relu3_4": 18, "relu4_4": 27, "relu5_4": 36}  # features[:n]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG_WEIGHTS_ENV = "JASRBENCH_VGG_WEIGHTS"


class Discriminator(nn.Module):
    """SRGAN's discriminator for 128×128 faces. Parameters (width 64): 13,077,889.

    A 3×3 conv + LeakyReLU(0.2), seven conv + BN + LeakyReLU blocks (64, 64/2, 128, 128/2, 256,
    256/2, 512, 512/2: width/stride), the 8×8 map average-pooled to 4×4 (SRGAN used 96×96 crops),
    dense 1024 + LeakyReLU, dense 1; ``width`` scales every layer. Loss: generator −log D(SR),
    discriminator −log D(HR) − log(1 − D(SR)).
    """

    def __init__(self, width: int = 64, in_channels: int = 3):
        super().__init__()
        w = int(width)
        plan = [(w, 2), (2 * w, 1), (2 * w, 2), (4 * w, 1), (4 * w, 2), (8 * w, 1), (8 * w, 2)]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, w, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        cin = w
        for cout, stride in plan:
            layers += [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(cin * 16, 16 * w), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Linear(16 * w, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images B×3×H×W in [0, 1] → logits B (real > 0)."""
        return self.head(self.pool(self.features(images * 2 - 1))).view(-1)


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator term: −log D(SR)."""
    return F.binary_cross_entropy_with_logits(fake_logits.float(), torch.ones_like(fake_logits, dtype=torch.float32))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """−log D(HR) − log(1 − D(SR))."""
    real = F.binary_cross_entropy_with_logits(real_logits.float(), torch.ones_like(real_logits, dtype=torch.float32))
    fake = F.binary_cross_entropy_with_logits(fake_logits.float(), torch.zeros_like(fake_logits, dtype=torch.float32))
    return real + fake


def _load_vgg19(weights: str | Path | None) -> nn.Module:
    from torchvision.models import VGG19_Weights, vgg19

    path = weights or os.environ.get(VGG_WEIGHTS_ENV)
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"VGG-19 weights file {path} not found")
        model = vgg19(weights=None)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:  # torch raises several types for foreign files
            raise ConfigError(f"{path}: not a state_dict of torchvision's vgg19 ({exc})") from exc
        return model
    try:
        return vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
    except Exception as exc:  # no network, blocked host, corrupt cache …
        raise JasrbenchError(
            "the perceptual loss needs VGG-19 ImageNet weights: torchvision could not download them "
            f"({exc}). Either allow the download ({VGG19_Weights.IMAGENET1K_V1.url}, cached in $TORCH_HOME), "
            f"or give a local state_dict file with {VGG_WEIGHTS_ENV}=PATH."
        ) from exc


class PerceptualLoss(nn.Module):
    """MSE of frozen VGG-19 features up to ``layer`` between SR and HR (both in [0, 1])."""

    def __init__(self, layer: str = "relu5_4", weights: str | Path | None = None):
        super().__init__()
        if layer not in VGG_LAYERS:
            raise ConfigError(f"perceptual_layer {layer!r}: choose one of {sorted(VGG_LAYERS)}")
        self.layer = layer
        self.features = _load_vgg19(weights).features[: VGG_LAYERS[layer]].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> PerceptualLoss:  # the VGG stays in eval mode
        return super().train(False)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.autocast(sr.device.type, enabled=False):
            both = (torch.cat([sr.float(), hr.float()]) - self.mean) / self.std
            feats = self.features(both.contiguous(memory_format=torch.channels_last))
            f_sr, f_hr = feats.chunk(2)
            return F.mse_loss(f_sr, f_hr.detach())
