"""CPM: landmark-only Convolutional Pose Machine on the bicubic input (alignment baseline of Table 2)."""

from __future__ import annotations

import torch
from torch import nn

from .base import FaceModel, ModelOutput
from .registry import register

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg16_conv4(widths: tuple[int, int, int, int]) -> nn.Sequential:
    """VGG-16 conv1_1 … conv4_3 (2, 2, 3, 3 convs 3×3 + ReLU; max-pool after the first three blocks: stride 8)."""
    layers: list[nn.Module] = []
    cin = 3
    for block, (width, n_convs) in enumerate(zip(widths, (2, 2, 3, 3))):
        for _ in range(n_convs):
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True)]
            cin = width
        if block < 3:
            layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


@register("cpm", description="CPM (SBR's VGG-16 CPM): landmark-only, 3 stages at stride 8 on the bicubic ×8 input")
class CPM(FaceModel):
    """Landmark-only Convolutional Pose Machine (Wei, Ramakrishna, Kanade & Sheikh,
    "Convolutional Pose Machines", CVPR 2016), in the VGG-16 form used by
    Supervision-by-Registration (Dong, Yu, Weng, Wei, Yang & Sheikh,
    "Supervision-by-Registration: An Unsupervised Approach to Improve the Precision
    of Facial Landmark Detectors", CVPR 2018) — the "CPM+SBR (bicubic)" alignment
    baseline of JASRNet's Table 2.

    Input: the LR 16×16 bicubic-upsampled to 128×128 inside the model, normalized
    with the ImageNet mean/std (as SBR). Network: VGG-16 conv1_1…conv4_3 (stride 8,
    16×16 maps, the same grid as JASRNet); CPM feature = conv3×3 →2·n_feats + ReLU,
    conv3×3 →n_feats + ReLU; stage 1 = 4 × (conv3×3 + ReLU), conv1×1 →512 + ReLU,
    conv1×1 →K+1; stages t > 1 take [features, stage t−1 maps]: 5 × (conv7×7 + ReLU),
    conv1×1 + ReLU, conv1×1 →K+1. K + 1 maps (background last), all stages
    returned in ``heatmaps`` and supervised.
    Loss: heatmap squared error summed over masked maps and all stages, / (2·B)
    (the base class's loss, which JASRNet took from SBR's code). No SR term:
    ``predicts_sr`` is False and ``sr`` is the bicubic upsampling itself.

    Parameters: 18,747,791

    Widths/depths: ``vgg_widths`` (64, 128, 256, 512), ``n_feats`` (128),
    ``stage1_feats`` (512), ``stages`` (3), ``num_points`` (68; 19 for AFLW).
    Init: SBR's — conv weights N(0, 0.01), biases 0 — for the CPM feature and
    stages; the VGG-16 part, which SBR initializes from ImageNet weights, is
    trained from scratch here with torchvision's VGG init (He normal, fan_out,
    zero biases), since no pretrained weights are fetched.

    Adaptations: SBR's registration (optical-flow) self-supervision needs videos;
    on still images "CPM+SBR" reduces to the supervised CPM, which is what is
    trained here. The input is 128×128 (SBR uses larger crops), giving 16×16 maps
    at stride 8.
    """

    paper = "Wei, Ramakrishna, Kanade & Sheikh, Convolutional Pose Machines, CVPR 2016 (SBR's VGG-16 variant, CVPR 2018)"
    input_kind = "upsampled"
    predicts_sr = False
    predicts_landmarks = True
    heatmap_stride = 8

    def __init__(
        self,
        num_points: int = 68,
        vgg_widths: tuple[int, ...] = (64, 128, 256, 512),
        n_feats: int = 128,
        stage1_feats: int = 512,
        stages: int = 3,
        alpha: float = 1.0,
    ):
        super().__init__(num_points=num_points, alpha=alpha)
        vgg_widths = tuple(int(w) for w in vgg_widths)
        if len(vgg_widths) != 4:
            raise ValueError(f"CPM needs 4 VGG widths, got {vgg_widths}")
        if stages < 1:
            raise ValueError(f"CPM needs at least one stage, got {stages}")
        out = num_points + 1
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.features = vgg16_conv4(vgg_widths)
        self.cpm_feature = nn.Sequential(
            nn.Conv2d(vgg_widths[-1], 2 * n_feats, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * n_feats, n_feats, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        stage1: list[nn.Module] = []
        for _ in range(4):
            stage1 += [nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.ReLU(inplace=True)]
        stage1 += [nn.Conv2d(n_feats, stage1_feats, 1), nn.ReLU(inplace=True), nn.Conv2d(stage1_feats, out, 1)]
        self.stages = nn.ModuleList([nn.Sequential(*stage1)])
        for _ in range(stages - 1):
            layers: list[nn.Module] = [nn.Conv2d(n_feats + out, n_feats, 7, padding=3), nn.ReLU(inplace=True)]
            for _ in range(4):
                layers += [nn.Conv2d(n_feats, n_feats, 7, padding=3), nn.ReLU(inplace=True)]
            layers += [nn.Conv2d(n_feats, n_feats, 1), nn.ReLU(inplace=True), nn.Conv2d(n_feats, out, 1)]
            self.stages.append(nn.Sequential(*layers))
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for part in (self.cpm_feature, self.stages):
            for m in part.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.normal_(m.weight, 0.0, 0.01)
                    nn.init.zeros_(m.bias)

    def forward(self, lr: torch.Tensor) -> ModelOutput:
        up = self.upsample(lr)
        feat = self.cpm_feature(self.features((up - self.mean) / self.std))
        maps = [self.stages[0](feat)]
        for stage in self.stages[1:]:
            maps.append(stage(torch.cat([feat, maps[-1].to(feat.dtype)], dim=1)))
        return ModelOutput(sr=up, heatmaps=maps)
