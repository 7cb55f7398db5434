"""e4e, "Designing an Encoder for StyleGAN Image Manipulation" (Tov et al. 2021): photo -> W+.

The encoder of omertov/encoder4editing (`Encoder4Editing(50, 'ir_se')`): an IR-SE50 trunk
(the blocks of `emostyle.models.arcface`), a feature pyramid over three of its stages, and
one `GradualStyleBlock` per W+ layer. The first block predicts one w from the coarsest
features; every other layer adds a delta to it, from coarse (16 px maps, layers 1-2),
middle (32 px, layers 3-6) or fine (64 px, layers 7+) features, so all layers stay near
one w, the property that keeps e4e's codes editable. `latent_avg` of the checkpoint is
added to every layer (the code's `start_from_latent_avg`).

`e4e_ffhq_encode.pt` holds {'state_dict': {'encoder.*', 'decoder.*'}, 'latent_avg', 'opts'};
the encoder's part loads strictly and its architecture (units, widths, W+ layers, pyramid
sizes) is read from the shapes. Input: an FFHQ-aligned face resized to 256 px in [-1, 1].
In the kit it is a fast start that projection (`emostyle.inversion`) refines.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from emostyle.models.arcface import ir_se_trunk, ir_se_units
from emostyle.models.checkpoint import load_strict, read_checkpoint
from emostyle.models.stylegan2 import EqualLinear

__all__ = ["Encoder4Editing", "E4E", "load_e4e", "tiny_e4e", "INPUT_SIZE"]

INPUT_SIZE = 256  # e4e's transforms: Resize((256, 256)), Normalize(0.5, 0.5)
COARSE, MIDDLE = 3, 7  # first W+ layers read from the middle and the fine pyramid levels


class GradualStyleBlock(nn.Module):
    """Stride-2 3x3 convs with leaky ReLU down to 1x1, then an equalised linear: (B, in, s, s) -> (B, out)."""

    def __init__(self, in_ch: int, out_ch: int, spatial: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(max(1, spatial.bit_length() - 1)):  # log2(spatial) halvings
            layers += [nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_ch, out_ch, lr_mul=1)
        self.channels, self.spatial = out_ch, spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        if x.shape[-2:] != (1, 1):
            raise ValueError(f"a style block of {self.spatial} px maps got {tuple(x.shape[-2:])} after its "
                             f"convolutions; e4e takes {INPUT_SIZE} px faces")
        return self.linear(x.flatten(1))


def _upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """The pyramid's top-down step: bilinear (align_corners=True, as pSp) to the lateral size, plus it."""
    return F.interpolate(top, size=lateral.shape[2:], mode="bilinear", align_corners=True) + lateral


class Encoder4Editing(nn.Module):
    """IR-SE trunk + pyramid + style blocks: faces (B, 3, 256, 256) in [-1, 1] -> W+ offsets (B, n_latent, dim).

    units: the trunk's (in, depth, stride); spatials: each style block's input size (16, 32
    or 64 in e4e). The pyramid taps the last unit of the last three widths (units 6, 20, 23
    of IR-SE50: 128, 256 and 512 channels).
    """

    def __init__(self, units: list[tuple[int, int, int]], spatials: list[int], reduction: int = 16,
                 style_dim: int = 512):
        super().__init__()
        self.input_layer, self.body = ir_se_trunk(units, reduction)
        widths = [d for _, d, _ in units]
        # The last unit of each width; the pyramid reads the last three.
        ends = [i for i in range(len(widths)) if i == len(widths) - 1 or widths[i + 1] != widths[i]]
        if len(ends) < 3:
            raise ValueError(f"e4e needs a trunk with at least three widths; got {sorted(set(widths))}")
        self.taps = tuple(ends[-3:])
        fine, middle, coarse = (widths[i] for i in self.taps)
        self.styles = nn.ModuleList(GradualStyleBlock(coarse, style_dim, s) for s in spatials)
        self.latlayer1 = nn.Conv2d(middle, coarse, 1)
        self.latlayer2 = nn.Conv2d(fine, coarse, 1)
        self.n_latent = len(spatials)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        x = self.input_layer(faces)
        feats = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                feats[i] = x
        c1, c2, c3 = (feats[i] for i in self.taps)
        w0 = self.styles[0](c3)
        deltas = [torch.zeros_like(w0)]
        features = c3
        for i in range(1, self.n_latent):
            if i == COARSE:
                p2 = features = _upsample_add(c3, self.latlayer1(c2))
            elif i == MIDDLE:
                features = _upsample_add(p2, self.latlayer2(c1))
            deltas.append(self.styles[i](features))
        return w0.unsqueeze(1) + torch.stack(deltas, dim=1)


def _encoder_state(checkpoint, name: str) -> tuple[dict, torch.Tensor | None]:
    """(encoder state dict without its `encoder.` prefix, latent_avg or None)."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{name} holds a {type(checkpoint).__name__}, not e4e's checkpoint dict")
    state = checkpoint.get("state_dict", checkpoint)
    encoder = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    if not encoder:
        keys = ", ".join(list(map(str, state))[:6])
        raise ValueError(f"{name} has no `encoder.*` weights (keys: {keys}); expected e4e_ffhq_encode.pt "
                         f"({{'state_dict': {{'encoder.*', 'decoder.*'}}, 'latent_avg'}})")
    return encoder, checkpoint.get("latent_avg")


def _architecture(state: Mapping[str, torch.Tensor], name: str) -> dict:
    units, reduction = ir_se_units(state, name)
    n = sum(1 for k in state if k.startswith("styles.") and k.endswith(".linear.weight"))
    if n == 0:
        raise ValueError(f"{name}: no style blocks (keys styles.N.*); not an e4e encoder")
    spatials = [2 ** sum(1 for k in state if k.startswith(f"styles.{i}.convs.") and k.endswith(".weight"))
                for i in range(n)]
    return dict(units=units, spatials=spatials, reduction=reduction,
                style_dim=state["styles.0.linear.weight"].shape[0])


class E4E(nn.Module):
    """The encoder plus the checkpoint's `latent_avg`: aligned faces -> W+ latents (B, n_latent, dim)."""

    def __init__(self, encoder: Encoder4Editing, latent_avg: torch.Tensor | None):
        super().__init__()
        self.encoder = encoder
        dim = encoder.styles[0].channels
        avg = torch.zeros(1, 1, dim) if latent_avg is None else latent_avg.reshape(1, -1, dim)
        if avg.shape[1] not in (1, encoder.n_latent):
            raise ValueError(f"latent_avg of shape {tuple(latent_avg.shape)} fits neither one w nor "
                             f"{encoder.n_latent} W+ layers")
        self.register_buffer("latent_avg", avg.float())

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        if faces.ndim != 4 or faces.shape[1] != 3:
            raise ValueError(f"e4e takes RGB faces (B, 3, H, W) in [-1, 1]; got {tuple(faces.shape)}")
        if faces.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            faces = F.interpolate(faces, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                                  antialias=True)
        return self.encoder(faces) + self.latent_avg


def load_e4e(path_or_checkpoint: str | Path | Mapping | None = None, device: str | torch.device = "cpu") -> E4E:
    """e4e from `e4e_ffhq_encode.pt` (None: the registry's `e4e-ffhq-encode`) or its loaded dict.

    The encoder's weights load strictly; eval mode, parameters frozen.
    """
    if isinstance(path_or_checkpoint, Mapping):
        name, checkpoint = "the given checkpoint", path_or_checkpoint
    else:
        if path_or_checkpoint is None:
            from emostyle import registry

            path_or_checkpoint = registry.path("e4e-ffhq-encode")
        name = str(path_or_checkpoint)
        # `opts` is a plain dict of options; nothing but tensors and builtins is allowed.
        checkpoint = read_checkpoint(path_or_checkpoint, "the e4e encoder (e4e_ffhq_encode.pt)", "e4e-ffhq-encode")
    state, latent_avg = _encoder_state(checkpoint, name)
    config = _architecture(state, name)
    encoder = load_strict(Encoder4Editing(**config), state, f"{name} (e4e encoder, {len(config['spatials'])} W+ layers)")
    return E4E(encoder, latent_avg).eval().requires_grad_(False).to(device)


def tiny_e4e(n_latent: int, style_dim: int, seed: int = 0) -> E4E:
    """A narrow random e4e (IR-SE widths 8-32, 256 px input) with `n_latent` layers, for the tiny profile."""
    from emostyle.models.checkpoint import random_state

    units = [(8, 8, 2), (8, 16, 2), (16, 24, 2), (24, 32, 2)]
    spatials = [16 if i < COARSE else 32 if i < MIDDLE else 64 for i in range(n_latent)]
    encoder = Encoder4Editing(units, spatials, reduction=4, style_dim=style_dim)
    encoder = load_strict(encoder, random_state(encoder, seed), f"tiny_e4e(seed={seed})")
    return E4E(encoder, None).eval().requires_grad_(False)
