"""ResNet-50 (He et al. 2016) in torchvision's layout, for EmoGen's networks and Sem-C.

Module names follow torchvision `models/resnet.py` (conv1, bn1, layer1-4 of Bottleneck blocks
with conv1-3, bn1-3 and downsample.0/1, fc), so torchvision's ImageNet weights, the Places365
ResNet-50 (`resnet50_places365.pth.tar`) and EmoGen's image encoder load strictly. The stride
sits on the 3x3 convolution (torchvision's "ResNet v1.5"). The class count is read from `fc`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["ResNet50", "resnet50_from_state"]

_BLOCKS = (3, 4, 6, 3)  # bottleneck blocks per stage of ResNet-50
_EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride here), 1x1 expand, plus the identity or a projected shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * _EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * _EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * _EXPANSION:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * _EXPANSION, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes * _EXPANSION))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet50(nn.Module):
    """Images (B, 3, H, W), ImageNet-normalised, to logits (B, num_classes); `features` gives the
    pooled (B, 2048) vector before `fc`. `width` scales the stage widths (64 in ResNet-50; tests
    use small ones)."""

    def __init__(self, num_classes: int = 1000, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = width
        for i, blocks in enumerate(_BLOCKS):
            planes = width * 2**i
            stage = []
            for b in range(blocks):
                stage.append(Bottleneck(inplanes, planes, stride=2 if (b == 0 and i > 0) else 1))
                inplanes = planes * _EXPANSION
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)

    @property
    def feature_dim(self) -> int:
        return self.fc.in_features

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The convolutional feature map (B, 2048, H/32, W/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.avgpool(self.trunk(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def resnet50_from_state(state: Mapping[str, torch.Tensor], what: str) -> ResNet50:
    """A ResNet50 whose width and class count are read from a torchvision-layout state dict,
    loaded strictly (eval mode, frozen)."""
    from emostyle.models.checkpoint import load_strict

    if "conv1.weight" not in state or "fc.weight" not in state:
        raise ValueError(f"{what}: not a torchvision ResNet state dict (no conv1.weight / fc.weight); "
                         f"keys start {sorted(state)[:3]}")
    model = ResNet50(num_classes=state["fc.weight"].shape[0], width=state["conv1.weight"].shape[0])
    return load_strict(model, state, what).eval().requires_grad_(False)
