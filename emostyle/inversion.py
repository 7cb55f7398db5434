"""GAN inversion: the latent whose image is a user's photo, so the guidance can edit the photo.

One loop for every generator, after rosinality's `projector.py` (read, not copied):
Adam on the latent (and on the generator's noise inputs, where it has them) from the
generator's `inversion_start` (StyleGAN2: the mean w on every W+ layer; DCGAN: z = 0) or
from an encoder's estimate (e4e), minimising

    L = d(G(w), x) + l_mse MSE(G(w), x) + l_noise R(noise)

with d a perceptual distance (LPIPS-VGG for the paper's StyleGAN2, a FER2013 CNN's
features for the offline DCGAN, none for the photo grader), R the projector's noise
regulariser (squared autocorrelation of each noise map at every scale down to 8 px), the
official learning-rate schedule (`emostyle.guidance.lr_at`), and latent noise of strength
spread x `noise` x max(0, 1 - t / noise_ramp)^2 early on, which helps the search escape
poor basins. Noise maps are renormalised to zero mean and unit variance after each step.
Images larger than 256 px are mean-pooled to 256 px before the losses, as in the projector.

`Inversion.error` reports how close the reconstruction is, on the 8-bit images a viewer
sees: mean absolute error in levels (0-255) and PSNR in dB.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .guidance import lr_at
from .parts import Generator, to_uint8
from .progress import progress_bar

__all__ = ["Inversion", "invert", "reconstruction_error", "error_text", "noise_regularizer"]

Perceptual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (B, 3, H, W) x2 -> (B,)
LOSS_SIZE = 256  # px; larger renders are mean-pooled to this before the losses


@dataclass
class Inversion:
    """A photo projected into a generator: the latent, its image, and how well it fits."""

    latent: torch.Tensor  # (1, n_layers, latent_dim)
    reconstruction: torch.Tensor  # (1, 3, R, R) in [-1, 1]
    target: torch.Tensor  # (1, 3, R, R) in [-1, 1], the photo as the generator sees it
    generator: Generator  # renders `latent` as `reconstruction` (with the fitted noise maps)
    losses: dict[str, list[float]] = field(default_factory=dict)  # per step
    error: dict[str, float] = field(default_factory=dict)  # reconstruction_error
    start_error: dict[str, float] = field(default_factory=dict)  # the same, of the start latent
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # how the photo was read, aligned or cropped
    source: str = ""  # the photo's file
    weights: list[dict] = field(default_factory=list)  # the registry files it read (`registry.used`), for a manifest
    settings: dict = field(default_factory=dict)  # `pipeline.inversion_settings` of its configuration


def reconstruction_error(image: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Mean absolute error (8-bit levels) and PSNR (dB, peak 255) of images (B, 3, H, W) in [-1, 1],
    both quantised to 8 bits as they are saved."""
    a = to_uint8(image).astype(np.float64)
    b = to_uint8(target).astype(np.float64)
    mse = float(((a - b) ** 2).mean())
    psnr = float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
    return {"mae_levels": float(np.abs(a - b).mean()), "psnr_db": float(psnr)}


def error_text(error: dict, sep: str = ", ") -> str:
    """A reconstruction error for a caption: "1.2 levels, PSNR 31.0 dB", or "0.0 levels, identical"
    where the PSNR is infinite (null once written to a manifest, which is strict JSON)."""
    db = error["psnr_db"]
    return f"{error['mae_levels']:.1f} levels{sep}" + ("identical" if db is None or np.isinf(db) else f"PSNR {db:.1f} dB")


def noise_regularizer(noises: list[torch.Tensor]) -> torch.Tensor:
    """Sum over maps and scales (down to 8 px) of the squared mean products of each map with
    itself shifted by one pixel along x and along y: 0 for white noise."""
    total = torch.zeros((), device=noises[0].device) if noises else torch.zeros(())
    for noise in noises:
        size = noise.shape[2]
        while True:
            total = total + (noise * torch.roll(noise, 1, dims=3)).mean().pow(2) \
                + (noise * torch.roll(noise, 1, dims=2)).mean().pow(2)
            if size <= 8:
                break
            noise = noise.reshape(-1, 1, size // 2, 2, size // 2, 2).mean(dim=(3, 5))
            size //= 2
    return total


def _pool(images: torch.Tensor) -> torch.Tensor:
    size = images.shape[-1]
    return F.avg_pool2d(images, size // LOSS_SIZE) if size > LOSS_SIZE else images


def invert(generator: Generator, target: torch.Tensor, perceptual: Perceptual | None = None,
           steps: int = 1000, lr: float = 0.1, l_mse: float = 0.0, l_noise: float = 1e5,
           noise: float = 0.05, noise_ramp: float = 0.75, start: torch.Tensor | None = None,
           starts: int = 1, seed: int = 0, progress: bool = True) -> Inversion:
    """Project `target` (1, 3, R, R) in [-1, 1], R = generator.resolution, into the generator.

    perceptual: d(images, targets) -> (B,), differentiable; None uses pixels only (then
    l_mse must be > 0). start: a latent (1, n_layers, dim) to refine (an encoder's), else
    the generator's `inversion_start`. starts > 1 also tries starts - 1 latents drawn by the
    generator's `sample` and keeps the one with the lowest loss (the search is not convex).
    The latent noise and the extra starts come from a generator seeded `seed`.
    """
    if target.ndim != 4 or target.shape[0] != 1 or target.shape[1] != 3:
        raise ValueError(f"the photo must be one RGB image (1, 3, R, R); got {tuple(target.shape)}")
    if target.shape[-2:] != (generator.resolution, generator.resolution):
        raise ValueError(f"the photo is {tuple(target.shape[-2:])} px; the {generator.name} generator draws "
                         f"{generator.resolution} px: align or crop it to that size first")
    if perceptual is None and l_mse <= 0:
        raise ValueError("inversion needs a perceptual distance or l_mse > 0 (pixels), or it has nothing to fit")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    begun = time.perf_counter()
    device = generator.device
    target = target.to(device).float()
    generator = generator.for_photo(target)
    mean_start, spread = generator.inversion_start()
    latent = (mean_start if start is None else start.to(device)).detach().clone()
    if latent.shape != mean_start.shape:
        raise ValueError(f"start latent must be {tuple(mean_start.shape)}, got {tuple(latent.shape)}")
    noises = [n.requires_grad_(True) for n in generator.noise_maps()]
    fitted = generator.with_noise(noises) if noises else generator
    rng = torch.Generator(device="cpu").manual_seed(seed)
    reference = _pool(target)

    def loss_of(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per image (B,): the fit d + l_mse MSE, d, and the MSE against the photo."""
        images = _pool(images)
        mse = (images - reference).pow(2).mean(dim=(1, 2, 3))
        d = perceptual(images, reference.expand_as(images)) if perceptual is not None else torch.zeros_like(mse)
        return d + l_mse * mse, d, mse

    if starts > 1:
        with torch.no_grad():
            candidates = torch.cat([latent, generator.sample(starts - 1, rng).to(device)])
            latent = candidates[int(loss_of(fitted.render(candidates))[0].argmin())].unsqueeze(0).clone()
    with torch.no_grad():
        start_error = reconstruction_error(fitted.render(latent), target)
    latent.requires_grad_(True)
    optimizer = torch.optim.Adam([latent, *noises], lr=lr)
    losses: dict[str, list[float]] = {"total": [], "perceptual": [], "mse": [], "noise": []}

    for step in progress_bar(range(steps), desc="inversion", disable=not progress):
        t = step / steps
        for group in optimizer.param_groups:
            group["lr"] = lr_at(t, lr)
        strength = spread * noise * max(0.0, 1 - t / noise_ramp) ** 2
        jitter = torch.randn(latent.shape, generator=rng).to(device) * strength
        fit, p_loss, mse = (x.sum() for x in loss_of(fitted.render(latent + jitter)))
        n_loss = noise_regularizer(noises) if noises else fit.new_zeros(())
        loss = fit + l_noise * n_loss
        if not torch.isfinite(loss):
            raise RuntimeError(f"inversion diverged at step {step} (loss {loss.item()}); lower inversion.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # the projector keeps each noise map white: zero mean, unit variance
            for n in noises:
                n.sub_(n.mean()).div_(n.std())
            latent.copy_(generator.constrain(latent))
        for key, value in (("total", loss), ("perceptual", p_loss), ("mse", mse), ("noise", n_loss)):
            losses[key].append(float(value.detach()))

    latent = latent.detach()
    fitted = generator.with_noise([n.detach() for n in noises]) if noises else generator
    with torch.no_grad():
        reconstruction = fitted.render(latent)
    return Inversion(latent=latent, reconstruction=reconstruction, target=target, generator=fitted,
                     losses=losses, error=reconstruction_error(reconstruction, target),
                     start_error=start_error, seconds=time.perf_counter() - begun)
