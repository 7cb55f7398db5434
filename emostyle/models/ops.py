"""StyleGAN2's two custom ops in plain PyTorch: biased leaky ReLU and upfirdn2d.

Numerically the ops of rosinality/stylegan2-pytorch (`op/fused_act.py`, `op/upfirdn2d.py`),
which compile CUDA kernels at import time; these run on any device and differentiate
through ordinary autograd.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["fused_leaky_relu", "FusedLeakyReLU", "upfirdn2d"]


def fused_leaky_relu(
    input: torch.Tensor,
    bias: torch.Tensor | None = None,
    negative_slope: float = 0.2,
    scale: float = math.sqrt(2.0),
) -> torch.Tensor:
    """Leaky ReLU of `input + bias` times `scale` (sqrt 2 keeps the activations' variance).

    input: (B, C, ...); bias: (C,) added along dim 1, or None.
    """
    if bias is not None:
        input = input + bias.view(1, -1, *([1] * (input.ndim - 2)))
    return F.leaky_relu(input, negative_slope=negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """`fused_leaky_relu` with a learned per-channel bias (state-dict key `bias`)."""

    def __init__(self, channel: int, bias: bool = True, negative_slope: float = 0.2,
                 scale: float = math.sqrt(2.0)):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(input, self.bias, self.negative_slope, self.scale)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def upfirdn2d(
    input: torch.Tensor,
    kernel: torch.Tensor,
    up: int | tuple[int, int] = 1,
    down: int | tuple[int, int] = 1,
    pad: tuple[int, ...] = (0, 0),
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with a FIR kernel, downsample by striding.

    input: (B, C, H, W); kernel: (kh, kw), applied as a true convolution (flipped) to every
    channel; up, down: factor or (x, y); pad: (p0, p1) for both axes or (x0, x1, y0, y1),
    negative values crop. Output (B, C, (H*up_y + y0 + y1 - kh) // down_y + 1, same for W).
    """
    up_x, up_y = _pair(up)
    down_x, down_y = _pair(down)
    if len(pad) == 2:
        pad = (pad[0], pad[1], pad[0], pad[1])
    pad_x0, pad_x1, pad_y0, pad_y1 = pad
    batch, channel, in_h, in_w = input.shape

    out = input.reshape(batch, channel, in_h, 1, in_w, 1)
    out = F.pad(out, [0, up_x - 1, 0, 0, 0, up_y - 1])
    out = out.reshape(batch, channel, in_h * up_y, in_w * up_x)
    # F.pad crops on negative widths, as the reference does.
    out = F.pad(out, [pad_x0, pad_x1, pad_y0, pad_y1])

    # One depthwise convolution applies the same kernel to every channel.
    weight = torch.flip(kernel, [0, 1]).to(device=out.device, dtype=out.dtype)
    weight = weight.view(1, 1, *kernel.shape).repeat(channel, 1, 1, 1)
    return F.conv2d(out, weight, stride=(down_y, down_x), groups=channel)
