"""StyleGAN2 in W+ behind the `Generator` interface (the DCGAN and the photo grader are
`Generator`s in their own modules, `emostyle.models.dcgan` and `emostyle.models.photo_grader`).

The guidance optimises whatever latent `sample` returns and `render` reads, so a stage
never knows which network draws the image.
"""

from __future__ import annotations

import copy

import torch

from .parts import Generator

__all__ = ["StyleGAN2Generator"]


class StyleGAN2Generator(Generator):
    """StyleGAN2 with the official code's start latents: z -> mapping -> truncation toward
    the mean latent (of `mean_latent_samples` seeded draws), repeated over the W+ layers;
    rendered with `randomize_noise=False` (the fixed noise buffers), as everywhere in the code."""

    name = "stylegan2"

    def __init__(self, net: torch.nn.Module, truncation: float = 0.7, mean_latent_samples: int = 4096,
                 seed: int = 0):
        self.net = net.eval().requires_grad_(False)
        self.n_layers = net.n_latent
        self.latent_dim = net.style_dim
        self.resolution = net.size
        self.truncation = truncation
        # The fixed noise buffers (None), or the maps a projection fitted to a photo (`with_noise`).
        self.noise: list[torch.Tensor] | None = None
        rng = torch.Generator(device="cpu").manual_seed(seed)
        with torch.no_grad():
            z = torch.randn(mean_latent_samples, self.latent_dim, generator=rng).to(self.device)
            w = net.style(z)
            self.mean_latent = w.mean(0, keepdim=True)
            # rosinality's projector's latent_std: sqrt(E ||w - mean||^2) over the same draws.
            self.spread = float(((w - self.mean_latent).pow(2).sum() / len(w)).sqrt())

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        w = self.net.style(z)
        w = self.mean_latent + self.truncation * (w - self.mean_latent)
        return w.unsqueeze(1).repeat(1, self.n_layers, 1)

    def render(self, latents: torch.Tensor) -> torch.Tensor:
        image, _ = self.net([latents], input_is_latent=True, noise=self.noise, randomize_noise=False)
        return image

    def inversion_start(self) -> tuple[torch.Tensor, float]:
        # As rosinality's projector: the mean w on every W+ layer.
        return self.mean_latent.unsqueeze(1).repeat(1, self.n_layers, 1), self.spread

    def noise_maps(self) -> list[torch.Tensor]:
        maps = self.noise or [getattr(self.net.noises, f"noise_{i}") for i in range(self.net.num_layers)]
        return [m.detach().clone() for m in maps]

    def with_noise(self, noise: list[torch.Tensor]) -> "StyleGAN2Generator":
        if len(noise) != self.net.num_layers:
            raise ValueError(f"StyleGAN2 needs {self.net.num_layers} noise maps, got {len(noise)}")
        fitted = copy.copy(self)
        fitted.noise = list(noise)
        return fitted
