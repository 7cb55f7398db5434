"""dlib's face-recognition ResNet (King 2017): a person's identity as 128 numbers, in PyTorch.

The weights are `dlib_face_recognition_resnet_model_v1.dat` of the PyPI source archive
`face-recognition-models==0.3.0` (registry entry `dlib-face-resnet`), the same archive as the
landmark judge's predictor; dlib serialized it (read by `emostyle.models.dlib_dnn`, no dlib
needed). It was trained with a metric loss on about 3 million faces of 7485 people (FaceScrub, the
VGG face dataset, images from the internet), so that two photos of one person lie within 0.6 of
each other (99.38% on LFW). Layout, from dlib's dnn_face_recognition_ex.cpp and the file itself:

    150 px RGB, (x - channel mean) / 256
    7x7 conv 32 stride 2, affine, ReLU, 3x3 max pool stride 2
    residual units of [3x3 conv, affine, ReLU, 3x3 conv, affine] + shortcut, ReLU:
      3 x 32; 64 (down), 3 x 64; 128 (down), 2 x 128; 256 (down), 2 x 256; 256 (down)
    mean over the grid, linear 256 -> 128 (no bias)

A unit that downsamples has a stride-2 first conv (padding 0, as dlib pads only stride-1 convs)
and a 2x2 average pool on its shortcut; dlib adds tensors of different sizes by zero-padding the
smaller at its end (more channels, one more row and column). "Affine" is dlib's frozen batch
norm: a per-channel scale and shift.

`DlibFaceIdentity` is the identity loss: L_ID = 1 - cos of the descriptors of the two faces,
each resized to the network's 150 px.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from emostyle.models.checkpoint import check_download, load_network, load_strict, random_state
from emostyle.models.dlib_dnn import DlibLayer, read_dlib_net
from emostyle.parts import IdentityLoss

__all__ = ["DlibResNet", "DlibFaceIdentity", "load_dlib_resnet", "tiny_dlib_resnet", "state_from_layers"]

REGISTRY_NAME = "dlib-face-resnet"
# What the reader's layer records must spell, unit by unit (the avg pool only in a down unit).
_STEM = ["con", "affine", "relu", "max_pool"]
_UNIT = ["con", "affine", "relu", "con", "affine", "add_prev", "relu"]
_DOWN_UNIT = ["con", "affine", "relu", "con", "affine", "avg_pool", "add_prev", "relu"]
_HEAD = ["avg_pool", "fc"]


class Affine(nn.Module):
    """dlib's affine layer: a per-channel scale and shift (a batch norm with its statistics folded in)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b as dlib adds them: the smaller zero-padded at the end of channels, rows and columns."""
    k, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(x):
        return F.pad(x, (0, w - x.shape[3], 0, h - x.shape[2], 0, k - x.shape[1]))

    return pad(a) + pad(b)


class Unit(nn.Module):
    """[3x3 conv, affine, ReLU, 3x3 conv, affine] + shortcut (2x2 average pool when down), ReLU."""

    def __init__(self, in_ch: int, out_ch: int, down: bool):
        super().__init__()
        self.down = down
        stride = 2 if down else 1
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 0 if down else 1)
        self.affine1 = Affine(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1)
        self.affine2 = Affine(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2) if self.down else x
        return F.relu(_add_padded(y, shortcut))


class DlibResNet(nn.Module):
    """RGB faces (B, 3, S, S) in [0, 255] -> descriptors (B, dim); S is the network's input size."""

    def __init__(self, units: list[tuple[int, int, bool]], dim: int = 128, stem: int = 32, input_size: int = 150,
                 mean_rgb: tuple[float, float, float] = (122.782, 117.001, 104.298)):
        super().__init__()
        self.input_size = input_size
        self.register_buffer("mean_rgb", torch.tensor(mean_rgb).view(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, stem, 7, 2)
        self.affine = Affine(stem)
        self.units = nn.ModuleList(Unit(i, o, d) for i, o, d in units)
        self.fc = nn.Linear(units[-1][1], dim, bias=False)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        if faces.ndim != 4 or faces.shape[1:] != (3, self.input_size, self.input_size):
            raise ValueError(f"dlib ResNet input must be (B, 3, {self.input_size}, {self.input_size}) RGB in "
                             f"[0, 255]; got {tuple(faces.shape)} (DlibFaceIdentity resizes images)")
        x = F.max_pool2d(F.relu(self.affine(self.conv((faces - self.mean_rgb) / 256))), 3, 2)
        for unit in self.units:
            x = unit(x)
        return self.fc(x.mean(dim=(2, 3)))


class DlibFaceIdentity(IdentityLoss):
    """L_ID = 1 - cos(descriptor(images), descriptor(reference)): the face-recognition network holds
    who the person is, not the expression (it was trained to give one person's photos, smiling or
    not, the same descriptor)."""

    name = "dlib face-recognition ResNet"

    def __init__(self, network: DlibResNet):
        self.network = network

    def features(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        size = self.network.input_size
        faces = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return self.network((faces.clamp(-1, 1) + 1) * 127.5)


# --- the dlib file ---------------------------------------------------------------------------

def _pattern(layers: list[DlibLayer], name: str) -> list[bool]:
    """The down flags of the units, after checking that the layers spell stem, units, head."""
    kinds = [layer.kind.rstrip("_0123456789") for layer in layers[1:]]
    fail = ValueError(f"{name}: not dlib's face-recognition ResNet (layers {' '.join(kinds[:12])} ...); "
                      f"expected dlib_face_recognition_resnet_model_v1.dat")
    if kinds[:4] != _STEM or kinds[-2:] != _HEAD:
        raise fail
    body, downs = kinds[4:-2], []
    while body:
        for pattern in (_UNIT, _DOWN_UNIT):
            if body[:len(pattern)] == pattern:
                downs.append(pattern is _DOWN_UNIT)
                body = body[len(pattern):]
                break
        else:
            raise fail
    return downs


def state_from_layers(layers: list[DlibLayer], name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """The architecture (DlibResNet's arguments) and state dict of the reader's layer records."""
    downs = _pattern(layers, name)
    source = layers[0].fields
    if source["nr"] != source["nc"]:
        raise ValueError(f"{name}: input {source['nr']}x{source['nc']}; expected a square input")
    convs = [layer for layer in layers if layer.kind.startswith("con")]
    affines = [layer for layer in layers if layer.kind.startswith("affine")]
    fc = layers[-1]
    if fc.fields["bias_mode"] != 1:
        raise ValueError(f"{name}: its last layer has a bias; dlib's metric network ends in fc_no_bias")
    state: dict[str, torch.Tensor] = {}

    def conv(prefix: str, layer: DlibLayer):
        shape = layer.fields["filters"]
        n = shape[0] * shape[1] * shape[2] * shape[3]
        state[f"{prefix}.weight"] = torch.from_numpy(layer.params[:n].reshape(shape).copy())
        state[f"{prefix}.bias"] = torch.from_numpy(layer.params[n:].copy())

    def affine(prefix: str, layer: DlibLayer):
        k = layer.fields["gamma"][1]
        state[f"{prefix}.weight"] = torch.from_numpy(layer.params[:k].copy())
        state[f"{prefix}.bias"] = torch.from_numpy(layer.params[k:].copy())

    conv("conv", convs[0])
    affine("affine", affines[0])
    units, width = [], convs[0].fields["num_filters"]
    for i, down in enumerate(downs):
        out = convs[1 + 2 * i].fields["num_filters"]
        units.append((width, out, down))
        width = out
        for j in (1, 2):
            conv(f"units.{i}.conv{j}", convs[2 * i + j])
            affine(f"units.{i}.affine{j}", affines[2 * i + j])
    weights = fc.params.reshape(fc.fields["num_inputs"], fc.fields["num_outputs"])  # dlib: x @ W
    state["fc.weight"] = torch.from_numpy(weights.T.copy())
    mean = (source["avg_red"], source["avg_green"], source["avg_blue"])
    state["mean_rgb"] = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    arch = dict(units=units, dim=fc.fields["num_outputs"], stem=convs[0].fields["num_filters"],
                input_size=source["nr"], mean_rgb=mean)
    return arch, state


def _read(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    check_download(path, "dlib's face-recognition ResNet", REGISTRY_NAME)
    return state_from_layers(read_dlib_net(path)[1], str(path))


def _build(arch_and_state: tuple[dict, Mapping[str, torch.Tensor]], name: str) -> DlibResNet:
    arch, state = arch_and_state
    return load_strict(DlibResNet(**arch), state, name).eval().requires_grad_(False)


def load_dlib_resnet(path: str | Path | None = None, device: str | torch.device = "cpu") -> DlibResNet:
    """The network from dlib's .dat file (None: the registry's `dlib-face-resnet`). Loaded once per
    (path, device); eval mode, parameters frozen."""
    return load_network(path, device, REGISTRY_NAME, _read, _build)


def tiny_dlib_resnet(seed: int = 0) -> DlibResNet:
    """A narrow random network of the same pattern (widths 8-16, 64 px) for runs on random weights."""
    arch = dict(units=[(8, 8, False), (8, 16, True)], dim=16, stem=8, input_size=64)
    model = DlibResNet(**arch)
    state = random_state(model, seed) | {"mean_rgb": model.mean_rgb}  # a preprocessing constant, not a weight
    return _build((arch, state), f"tiny_dlib_resnet(seed={seed})")
