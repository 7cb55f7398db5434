"""StyleGAN2 in W+ behind the `Generator` interface (the DCGAN and the photo grader are
`Generator`s in their own modules, `emostyle.models.dcgan` and `emostyle.models.photo_grader`).

The guidance optimises whatever latent `sample` returns and `render` reads, so a stage
never knows which network draws the image.
"""

from __future__ import annotations

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
        rng = torch.Generator(device="cpu").manual_seed(seed)
        with torch.no_grad():
            z = torch.randn(mean_latent_samples, self.latent_dim, generator=rng).to(self.device)
            self.mean_latent = net.style(z).mean(0, keepdim=True)

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
        image, _ = self.net([latents], input_is_latent=True, randomize_noise=False)
        return image

