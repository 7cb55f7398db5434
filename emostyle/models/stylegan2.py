"""StyleGAN2 generator (Karras et al. 2020), the image generator EmoStyle edits in W+.

Module names, parameter shapes and numerics follow rosinality/stylegan2-pytorch, so the
`g_ema` state dict of its checkpoints (and of the converted official ones) loads strictly.
Blocks come first, then `Generator`, then `load_stylegan2`, which derives the architecture
from a checkpoint's keys and shapes.

W+ has `n_latent = 2 log2(size) - 2` layers: 14 at 256 px, 16 at 512 px, 18 at 1024 px.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from emostyle.models.checkpoint import load_strict, read_checkpoint
from emostyle.models.ops import FusedLeakyReLU, fused_leaky_relu, upfirdn2d

__all__ = ["Generator", "load_stylegan2"]

BLUR_KERNEL = (1, 3, 3, 1)


class PixelNorm(nn.Module):
    """Normalise each z (B, dim) to unit root-mean-square over its features."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return input * torch.rsqrt(torch.mean(input**2, dim=1, keepdim=True) + 1e-8)


def _make_kernel(k: Sequence[float]) -> torch.Tensor:
    """Separable 2-D FIR kernel (len, len) from 1-D taps, normalised to sum 1."""
    k = torch.tensor(k, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


class Upsample(nn.Module):
    """2x FIR upsampling of the RGB skip path (buffer `kernel`)."""

    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        # Zero insertion keeps 1 of factor**2 samples; the gain restores the mean.
        self.register_buffer("kernel", _make_kernel(kernel) * factor**2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(input, self.kernel, up=self.factor, pad=self.pad)


class Blur(nn.Module):
    """FIR low-pass filter after a transposed convolution (buffer `kernel`)."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", _make_kernel(kernel) * upsample_factor**2)
        self.pad = pad

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(input, self.kernel, pad=self.pad)


class EqualLinear(nn.Module):
    """Linear layer with the equalised learning rate: weights stored at unit variance, scaled at run time."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            return fused_leaky_relu(F.linear(input, self.weight * self.scale), bias)
        return F.linear(input, self.weight * self.scale, bias=bias)


class ModulatedConv2d(nn.Module):
    """Convolution whose weights are scaled per input channel by the style and demodulated.

    input (B, in, H, W), style (B, style_dim) -> (B, out, H, W), or (B, out, 2H, 2W) when upsampling.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_kernel: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1),
                             upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        # bias_init=1: styles start as the identity modulation.
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def forward(self, input: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, in_channel, height, width = input.shape
        k = self.kernel_size
        style = self.modulation(style).view(batch, 1, in_channel, 1, 1)
        weight = self.scale * self.weight * style
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(batch, self.out_channel, 1, 1, 1)

        # Each sample has its own weights: fold the batch into groups of one convolution.
        input = input.reshape(1, batch * in_channel, height, width)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * in_channel, self.out_channel, k, k)
            out = F.conv_transpose2d(input, weight, padding=0, stride=2, groups=batch)
            out = out.view(batch, self.out_channel, *out.shape[2:])
            return self.blur(out)
        weight = weight.reshape(batch * self.out_channel, in_channel, k, k)
        out = F.conv2d(input, weight, padding=self.padding, groups=batch)
        return out.view(batch, self.out_channel, *out.shape[2:])


class NoiseInjection(nn.Module):
    """Adds per-pixel noise (B or 1, 1, H, W) times a learned scalar `weight`."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image: torch.Tensor, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if noise is None:
            batch, _, height, width = image.shape
            noise = _randn((batch, 1, height, width), generator, image)
        return image + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 constant the synthesis starts from, repeated over the batch."""

    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.input.repeat(latent.shape[0], 1, 1, 1)


class StyledConv(nn.Module):
    """Modulated 3x3 convolution, noise, biased leaky ReLU: one W+ layer."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[float] = BLUR_KERNEL,
                 demodulate: bool = True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim,
                                    demodulate=demodulate, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, input: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        out = self.noise(self.conv(input, style), noise=noise, generator=generator)
        return self.activate(out)


class ToRGB(nn.Module):
    """1x1 modulated convolution to RGB, added to the upsampled RGB of the previous resolution."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = BLUR_KERNEL):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, input: torch.Tensor, style: torch.Tensor,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(input, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


def _randn(shape, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise drawn from `generator` (on its device), placed beside `like`."""
    device = like.device if generator is None else generator.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


class Generator(nn.Module):
    """StyleGAN2 generator: z or W+ latents in, images (B, 3, size, size) in about [-1, 1] out.

    Arguments as in rosinality's `Generator`; `channel_base` (default 512, the published
    models) scales every layer's width, so tests can build narrow models. Channels at
    resolution r: min(channel_base, channel_base * channel_multiplier * 32 // r).
    """

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, lr_mlp: float = 0.01,
                 channel_base: int = 512):
        super().__init__()
        if size < 4 or size & (size - 1):
            raise ValueError(f"StyleGAN2 size must be a power of two >= 4 (e.g. 256, 512, 1024), got {size}")
        self.size = size
        self.style_dim = style_dim
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2
        self.channels = {
            2**i: max(1, min(channel_base, channel_base * channel_multiplier * 32 // 2**i))
            for i in range(2, self.log_size + 1)
        }

        # The mapping network z -> w.
        self.style = nn.Sequential(
            PixelNorm(),
            *(EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)),
        )

        # The synthesis network, 4x4 then two StyledConvs and a ToRGB per doubling.
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channel = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2**i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim, blur_kernel=blur_kernel))
            in_channel = out_channel

        # Fixed noise maps used when randomize_noise=False (saved in checkpoints).
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, res, res))

    def make_noise(self, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """One noise map (1, 1, r, r) per layer, drawn from `generator`, on the model's device."""
        like = self.input.input
        return [_randn((1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2)), generator, like)
                for i in range(self.num_layers)]

    @torch.no_grad()
    def mean_latent(self, n_latent: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean w (1, style_dim) of `n_latent` mapped z, the truncation centre.

        z comes from `generator` (a CPU generator seeded 0 when None), so it is reproducible.
        """
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        z = _randn((n_latent, self.style_dim), generator, self.input.input)
        return self.style(z).mean(0, keepdim=True)

    def get_latent(self, input: torch.Tensor) -> torch.Tensor:
        """The mapping network: z (B, style_dim) -> w (B, style_dim)."""
        return self.style(input)

    def forward(self, styles, return_latents: bool = False, inject_index: int | None = None,
                truncation: float = 1, truncation_latent: torch.Tensor | None = None,
                input_is_latent: bool = False, noise: Sequence[torch.Tensor | None] | None = None,
                randomize_noise: bool = True, generator: torch.Generator | None = None):
        """Render images; returns (image (B, 3, size, size), W+ latent (B, n_latent, style_dim) or None).

        styles: a list of one or two tensors (or one tensor): z (B, style_dim), or with
        input_is_latent w (B, style_dim) or W+ (B, n_latent, style_dim). Two styles mix at
        `inject_index`. noise: one map per layer (`num_layers`); else random (from `generator`)
        when randomize_noise, or the stored `noises.noise_{i}` buffers.
        """
        if isinstance(styles, torch.Tensor):
            styles = [styles]
        if len(styles) not in (1, 2):
            raise ValueError(f"styles must hold one latent or two to mix, got {len(styles)}")
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (e.g. generator.mean_latent(4096))")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]

        if noise is None:
            if randomize_noise:
                noise = [None] * self.num_layers
            else:
                noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if len(noise) != self.num_layers:
            raise ValueError(f"noise must hold {self.num_layers} maps (one per layer), got {len(noise)}")

        if len(styles) == 1:
            latent = styles[0]
            if latent.ndim < 3:
                latent = latent.unsqueeze(1).repeat(1, self.n_latent, 1)
        else:
            if inject_index is None:
                inject_index = int(torch.randint(1, self.n_latent, (1,), generator=generator))
            latent = torch.cat([styles[0].unsqueeze(1).repeat(1, inject_index, 1),
                                styles[1].unsqueeze(1).repeat(1, self.n_latent - inject_index, 1)], 1)
        if latent.shape[1:] != (self.n_latent, self.style_dim):
            raise ValueError(f"W+ latent must be (B, {self.n_latent}, {self.style_dim}), "
                             f"got {tuple(latent.shape)}")

        out = self.conv1(self.input(latent), latent[:, 0], noise=noise[0], generator=generator)
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv1, conv2, noise1, noise2, to_rgb in zip(
            self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs
        ):
            out = conv1(out, latent[:, i], noise=noise1, generator=generator)
            out = conv2(out, latent[:, i + 1], noise=noise2, generator=generator)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip, (latent if return_latents else None)


_FETCH = ("stylegan2-ffhq-1024", "stylegan2-lhq-256")  # the registry entries


def _read_checkpoint(path: Path):
    # rosinality's train.py pickles its argparse.Namespace under "args": allow that class only.
    return read_checkpoint(path, "a StyleGAN2 checkpoint", _FETCH, safe_globals=[argparse.Namespace])


def _generator_state(checkpoint, name: str):
    """(g_ema state dict, latent_avg or None) from a rosinality checkpoint or a bare state dict."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{name} holds a {type(checkpoint).__name__}, not a checkpoint dict "
                         f"with 'g_ema'")
    if "g_ema" in checkpoint:
        return checkpoint["g_ema"], checkpoint.get("latent_avg")
    if "input.input" in checkpoint:
        return checkpoint, None
    keys = ", ".join(list(map(str, checkpoint))[:8])
    raise ValueError(f"{name} has no 'g_ema' generator (keys: {keys}); expected a "
                     f"rosinality/stylegan2-pytorch checkpoint {{'g_ema': state_dict, 'latent_avg'}} "
                     f"or a bare g_ema state dict")


def _architecture(state: Mapping[str, torch.Tensor], name: str) -> dict:
    """Generator arguments derived from the state dict's keys and shapes."""
    needed = ["input.input", "style.1.weight"]
    missing = [k for k in needed if k not in state]
    if missing:
        raise ValueError(f"{name} is not a StyleGAN2 g_ema state dict: missing {missing}")
    n_mlp = sum(1 for k in state if re.fullmatch(r"style\.\d+\.weight", k))
    log_size = 2 + sum(1 for k in state if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
    channel_base = state["input.input"].shape[1]
    channel_multiplier = 2  # only layers at 64 px and above depend on it
    if log_size >= 6:
        # Width at 64 px is channel_base * channel_multiplier / 2.
        channel_multiplier = max(1, round(2 * state["convs.6.conv.weight"].shape[1] / channel_base))
    return dict(size=2**log_size, style_dim=state["style.1.weight"].shape[1], n_mlp=n_mlp,
                channel_multiplier=channel_multiplier, channel_base=channel_base)


def load_stylegan2(path_or_state, device: str | torch.device = "cpu", size: int | None = None):
    """Load a rosinality/stylegan2-pytorch checkpoint strictly.

    path_or_state: a checkpoint file, its loaded dict ({'g_ema', 'latent_avg'?, ...}) or a bare
    g_ema state dict. size: the resolution the caller expects (px); a different checkpoint is an
    error. Returns (generator in eval mode on `device`, latent_avg (style_dim,) or None).
    """
    if isinstance(path_or_state, Mapping):
        name, checkpoint = "the given state dict", path_or_state
    else:
        name = str(path_or_state)
        checkpoint = _read_checkpoint(Path(path_or_state))
    state, latent_avg = _generator_state(checkpoint, name)
    config = _architecture(state, name)
    if size is not None and size != config["size"]:
        have, want = config["size"], size
        raise ValueError(f"{name}: checkpoint is {have} px ({2 * int(math.log2(have)) - 2} W+ layers), "
                         f"profile expects {want} px ({2 * int(math.log2(want)) - 2} W+ layers); use "
                         f"the checkpoint of that resolution or the profile of this one")
    generator = load_strict(Generator(**config), state, f"{name} (the StyleGAN2 generator {config})")
    if latent_avg is not None:
        latent_avg = latent_avg.to(device)
    return generator.to(device).eval(), latent_avg

