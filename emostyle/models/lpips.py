"""LPIPS with VGG16 (Zhang et al. 2018): the perceptual distance of StyleGAN2 projection.

rosinality's `projector.py` minimises LPIPS "net-lin" / VGG (v0.1) between the generated
and the target image. The network: VGG16's convolutional features (torchvision layout,
ImageNet weights) read after relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3; each map is
unit-normalised over channels, the squared differences are weighted per channel by a 1x1
convolution (the learned `lin` layers), averaged over space and summed over the five layers.
Inputs are in [-1, 1], shifted and scaled per channel first (the v0.1 `ScalingLayer`).

Weights through the registry: `vgg16-imagenet` (torchvision's `vgg16-397923af.pth`; only
`features.*` is used) and `lpips-vgg-lin` (`lpips/weights/v0.1/vgg.pth` of the PyPI wheel
`lpips==0.1.4`, keys `lin{k}.model.1.weight`). Both load strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from emostyle.models.checkpoint import load_strict, read_state_dict

__all__ = ["LPIPS", "load_lpips"]

# VGG16 ("configuration D"): widths of the 3x3 convs, "M" a 2x2 max pool.
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAPS = (3, 8, 15, 22, 29)  # indices in `features` of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
SHIFT = (-0.030, -0.088, -0.188)  # the v0.1 ScalingLayer: (x - shift) / scale
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # of lpips.normalize_tensor


class _Lin(nn.Module):
    """A learned non-negative weight per channel (key `model.1.weight`, after an inactive dropout)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """Perceptual distance (B,) between images (B, 3, H, W) and targets (B or 1, 3, H, W) in [-1, 1]."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in VGG16:
            if width == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=False)]
                channels = width
        self.features = nn.Sequential(*layers)  # up to relu5_3, torchvision's indices
        widths = [64, 128, 256, 512, 512]
        for k, width in enumerate(widths):
            self.add_module(f"lin{k}", _Lin(width))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def _maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps, x = [], (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                maps.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS))
        return maps

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3 or targets.shape[1:] != images.shape[1:]:
            raise ValueError(f"LPIPS compares RGB images of one size; got {tuple(images.shape)} "
                             f"and {tuple(targets.shape)}")
        total = 0
        for k, (a, b) in enumerate(zip(self._maps(images), self._maps(targets))):
            total = total + getattr(self, f"lin{k}")((a - b) ** 2).mean(dim=(1, 2, 3))
        return total


def _features(state: Mapping[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """The `features.*` tensors of a torchvision VGG16 state dict (its classifier is not used)."""
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    if not features:
        raise ValueError(f"{name} has no `features.*` tensors; expected torchvision's vgg16-397923af.pth")
    return features


def load_lpips(vgg: str | Path | Mapping | None = None, lin: str | Path | Mapping | None = None,
               device: str | torch.device = "cpu") -> LPIPS:
    """LPIPS-VGG from torchvision's VGG16 weights and the lpips v0.1 `vgg.pth` (None: the registry's
    `vgg16-imagenet` and `lpips-vgg-lin`), or from their state dicts; eval mode, frozen."""
    from emostyle import registry

    def state(source, what, entry):
        if isinstance(source, Mapping):
            return dict(source), "the given state dict"
        path = registry.path(entry) if source is None else Path(source)
        return read_state_dict(path, what, entry), str(path)

    vgg_state, vgg_name = state(vgg, "VGG16 ImageNet weights", "vgg16-imagenet")
    lin_state, lin_name = state(lin, "LPIPS v0.1 VGG linear layers", "lpips-vgg-lin")
    model = LPIPS()
    own = model.state_dict()
    merged = {**_features(vgg_state, vgg_name), **lin_state,
              "shift": own["shift"], "scale": own["scale"]}  # constants of the method, not of a file
    load_strict(model, merged, f"{vgg_name} + {lin_name} (LPIPS-VGG)")
    return model.eval().requires_grad_(False).to(device)
