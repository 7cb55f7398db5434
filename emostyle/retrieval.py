"""Semantic similarity-based image retrieval (paper 3.1, Eq. 1-2).

Sample N latents, render G(w), embed the images and the audio in one joint space,
s_i = E_img,i . E_a, softmax over the N images, keep the best w. Rendering and embedding
run in batches so memory stays bounded whatever N is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .parts import EmbeddingSpace, Generator

__all__ = ["Retrieval", "retrieve"]


@dataclass
class Retrieval:
    """Ranked candidates: latents, thumbnails, similarities s_i and their softmax."""

    latents: torch.Tensor  # (N, n_layers, dim)
    images: torch.Tensor  # (N, 3, H, W) in [-1, 1], on the CPU
    scores: torch.Tensor  # (N,) similarities s_i
    probs: torch.Tensor  # (N,) softmax of the scores times the space's logit scale (Eq. 2)
    space: str  # the joint space the ranking used

    @property
    def order(self) -> torch.Tensor:
        """Candidate indices, best first."""
        return torch.argsort(self.scores, descending=True)

    @property
    def best(self) -> int:
        return int(torch.argmax(self.scores))

    @property
    def best_latent(self) -> torch.Tensor:
        return self.latents[self.best : self.best + 1]


@torch.no_grad()
def retrieve(
    generator: Generator,
    space: EmbeddingSpace,
    audio_embedding: torch.Tensor,
    n: int = 16,
    batch: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> Retrieval:
    """Rank `n` generated candidates by their similarity to `audio_embedding` (1, D)."""
    if n < 1:
        raise ValueError(f"retrieval needs at least one candidate, got n={n}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    # All latents are drawn at once (they are small), so the candidates do not depend on `batch`.
    latents = generator.sample(n, torch.Generator(device="cpu").manual_seed(seed))
    images, scores = [], []
    for start in tqdm(range(0, n, batch), desc="retrieval", disable=not progress, leave=False):
        x = generator.render(latents[start:start + batch])
        s = space.similarity(space.encode_image(x), audio_embedding.to(x.device))[:, 0]
        images.append(x.float().cpu())
        scores.append(s.float().cpu())
    scores = torch.cat(scores)
    if not torch.isfinite(scores).all():
        raise ValueError("retrieval similarities are not finite; check the audio file and the encoders")
    return Retrieval(latents, torch.cat(images), scores, torch.softmax(space.logit_scale * scores, 0), space.name)
