"""ArcFace IR-SE50 (Deng et al. 2019): the face identity features of EmoStyle's L_ID (paper Eq. 6).

Module names follow TreB1eN/InsightFace_Pytorch's `Backbone(50, 0.6, 'ir_se')` as StyleCLIP and
the sound-guided code use it, so `model_ir_se50.pth` loads strictly. The stages (units, widths,
strides), the SE reduction, the embedding size and the input size (112 or 224) are derived from
the checkpoint's shapes: a unit downsamples (stride 2) when it opens the network or changes width.

`ArcFaceIdentity` preprocesses as StyleCLIP's IDLoss: images not 256 px are average-pooled to
256 px, cropped to the face [35:223, 32:220], pooled to 112 px; L_ID = 1 - cos per item.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from emostyle.models.checkpoint import (
    build_from_shapes,
    load_network,
    random_state,
    read_state_dict,
    without_data_parallel,
)
from emostyle.parts import IdentityLoss

__all__ = ["Backbone", "ArcFaceIdentity", "load_arcface", "tiny_arcface", "ir_se_units", "ir_se_trunk"]

FACE_CROP = (35, 223, 32, 220)  # rows, then columns, of a 256 px FFHQ-aligned face


class SEModule(nn.Module):
    """Squeeze-and-excitation: channels reweighted by a sigmoid of their pooled means."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        return x * w


class BottleneckIRSE(nn.Module):
    """Improved residual unit: BN, 3x3 conv, PReLU, 3x3 conv (stride), BN, SE; plus shortcut."""

    def __init__(self, in_ch: int, depth: int, stride: int, reduction: int):
        super().__init__()
        self.stride = stride
        # Same width: the shortcut only subsamples (the original MaxPool2d(1, stride)).
        self.shortcut_layer = None if in_ch == depth else nn.Sequential(
            nn.Conv2d(in_ch, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut_layer is None:
            shortcut = x[:, :, :: self.stride, :: self.stride]
        else:
            shortcut = self.shortcut_layer(x)
        return self.res_layer(x) + shortcut


def ir_se_trunk(units: list[tuple[int, int, int]], reduction: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The IR-SE input layer (3x3 conv, BN, PReLU) and body of `units` (in, depth, stride)."""
    stem = units[0][0]
    input_layer = nn.Sequential(nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.PReLU(stem))
    return input_layer, nn.Sequential(*(BottleneckIRSE(i, d, s, reduction) for i, d, s in units))


class Backbone(nn.Module):
    """IR-SE network: aligned faces (B, 3, S, S) in [-1, 1], S = 112 or 224 -> unit features (B, dim)."""

    def __init__(self, units: list[tuple[int, int, int]], reduction: int = 16, embed_dim: int = 512,
                 input_size: int = 112):
        super().__init__()
        self.input_size = input_size
        self.input_layer, self.body = ir_se_trunk(units, reduction)
        width, grid = units[-1][1], input_size // 2 ** sum(s == 2 for _, _, s in units)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.Dropout(0.6),  # the reference's drop_ratio; inactive in eval mode
            nn.Flatten(),
            nn.Linear(width * grid * grid, embed_dim),
            nn.BatchNorm1d(embed_dim),
        )

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.output_layer(self.body(self.input_layer(faces))), dim=1)


class ArcFaceIdentity(IdentityLoss):
    """L_ID = 1 - cos(ArcFace(images), ArcFace(reference)) per item; the reference is not differentiated."""

    name = "ArcFace IR-SE50"

    def __init__(self, backbone: Backbone):
        self.backbone = backbone

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Unit identity features (B, dim) of face images (B, 3, H, W) in [-1, 1] (StyleCLIP crop)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[-2:] != (256, 256):
            images = F.adaptive_avg_pool2d(images, (256, 256))
        top, bottom, left, right = FACE_CROP
        faces = F.adaptive_avg_pool2d(images[:, :, top:bottom, left:right], (112, 112))
        if self.backbone.input_size != 112:
            faces = F.interpolate(faces, size=self.backbone.input_size, mode="bilinear", align_corners=False)
        return self.backbone(faces)


# --- checkpoints -----------------------------------------------------------------------------

def ir_se_units(state: Mapping[str, torch.Tensor], name: str) -> tuple[list[tuple[int, int, int]], int]:
    """The IR-SE body of a state dict (keys `body.N.res_layer.*`): units (in, depth, stride) and the
    SE reduction. A unit downsamples when it opens the network or changes width."""
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.res_layer\.1\.weight$", k))})
    if not indices:
        raise ValueError(f"{name}: no IR-SE body (keys body.N.res_layer.*)")
    if indices != list(range(len(indices))):
        raise ValueError(f"{name}: body units are not numbered 0..{len(indices) - 1}; the file is incomplete")
    if "body.0.res_layer.5.fc1.weight" not in state:
        raise ValueError(f"{name}: an IR network without SE modules; expected IR-SE50")
    units = []
    for i in indices:
        depth, in_ch = state[f"body.{i}.res_layer.1.weight"].shape[:2]
        units.append((in_ch, depth, 2 if i == 0 or in_ch != depth else 1))
    return units, units[0][1] // state["body.0.res_layer.5.fc1.weight"].shape[0]


def _architecture(state: Mapping[str, torch.Tensor], name: str) -> dict:
    if "output_layer.3.weight" not in state or "input_layer.0.weight" not in state:
        raise ValueError(f"{name}: expected an ArcFace IR-SE checkpoint (keys input_layer.*, body.N.res_layer.*, "
                         f"output_layer.*; model_ir_se50.pth)")
    units, reduction = ir_se_units(state, name)
    linear = state["output_layer.3.weight"]
    grid = round((linear.shape[1] / units[-1][1]) ** 0.5)
    input_size = grid * 2 ** sum(s == 2 for _, _, s in units)
    if input_size not in (112, 224):
        raise ValueError(f"{name}: its output layer implies {input_size} px faces; ArcFace takes 112 or 224")
    return dict(units=units, reduction=reduction, embed_dim=linear.shape[0], input_size=input_size)


def _build(state: Mapping[str, torch.Tensor], name: str) -> Backbone:
    net = build_from_shapes(Backbone, without_data_parallel(state), lambda s: _architecture(s, name),
                            f"{name} (an IR-SE network)", "model_ir_se50.pth (input_layer, body.*, output_layer)")
    return net.eval().requires_grad_(False)


def _read_state(path: Path) -> Mapping[str, torch.Tensor]:
    return read_state_dict(path, "ArcFace weights", "arcface-ir-se50")


def load_arcface(path_or_state: str | Path | Mapping | None = None, device: str | torch.device = "cpu") -> Backbone:
    """IR-SE network from `model_ir_se50.pth` or a state dict (None: registry `arcface-ir-se50`).

    Loaded once per (path, device); eval mode, parameters frozen.
    """
    return load_network(path_or_state, device, "arcface-ir-se50", _read_state, _build)


def tiny_arcface(seed: int = 0, embed_dim: int = 32) -> Backbone:
    """A narrow random IR-SE network (widths 16-64, one unit per stage, 112 px) for the tiny profile."""
    units = [(16, 16, 2), (16, 32, 2), (32, 48, 2), (48, 64, 2)]
    model = Backbone(units, reduction=16, embed_dim=embed_dim)
    return _build(random_state(model, seed), f"tiny_arcface(seed={seed})")
