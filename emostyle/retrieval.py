"""Semantic similarity-based image retrieval (paper 3.1, Eq. 1-2).

Sample N latents, render G(w), embed the images and the audio in one joint space,
s_i = E_img,i . E_a, softmax over the N images, keep the best w. Rendering and embedding
run in batches so memory stays bounded whatever N is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .parts import EmbeddingSpace, Generator
from .progress import progress_bar

__all__ = ["Candidates", "Retrieval", "rank", "read_candidates", "retrieve"]


@dataclass
class Candidates:
    """N generated candidates read once in a joint space, to be ranked against any song (`rank`)."""

    latents: torch.Tensor  # (N, n_layers, dim)
    images: torch.Tensor  # (N, 3, H, W) in [-1, 1], on the CPU
    embeddings: torch.Tensor  # (N, D) the space's reading of each image, on the device that read it
    confidences: torch.Tensor  # (N,) how surely the space sees each image's subject


@dataclass
class Retrieval:
    """Ranked candidates: latents, thumbnails, similarities s_i and their softmax."""

    latents: torch.Tensor  # (N, n_layers, dim)
    images: torch.Tensor  # (N, 3, H, W) in [-1, 1], on the CPU
    scores: torch.Tensor  # (N,) similarities s_i
    probs: torch.Tensor  # (N,) softmax of the seen candidates' scores times the space's logit scale (Eq. 2)
    space: str  # the joint space the ranking used
    seen: torch.Tensor | None = None  # (N,) bool: the space sees the candidate's subject (None: all)

    @property
    def ranked(self) -> torch.Tensor:
        """The scores by which candidates rank: a candidate the space does not see comes after
        every one it sees (while it sees any)."""
        return torch.where(_counted(self.seen, len(self.scores)), self.scores,
                           self.scores - (self.scores.max() - self.scores.min()) - 1)

    @property
    def order(self) -> torch.Tensor:
        """Candidate indices, best first."""
        return torch.argsort(self.ranked, descending=True)

    @property
    def best(self) -> int:
        return int(torch.argmax(self.ranked))

    def caption(self, i: int) -> str:
        """Candidate i's similarity and probability, or that the space did not see it."""
        if not _counted(self.seen, len(self.scores))[i]:
            return f"s={self.scores[i]:.3f}  not seen"
        return f"s={self.scores[i]:.3f}  p={self.probs[i]:.2f}"

    @property
    def best_latent(self) -> torch.Tensor:
        return self.latents[self.best : self.best + 1]


def _counted(seen: torch.Tensor | None, n: int) -> torch.Tensor:
    """(n,) bool: the candidates that rank first and share the softmax: those the space sees,
    or all of them when it sees none (then all are guesses alike)."""
    return seen if seen is not None and bool(seen.any()) else torch.ones(n, dtype=torch.bool)


@torch.no_grad()
def read_candidates(generator: Generator, space: EmbeddingSpace, n: int = 16, batch: int = 8, seed: int = 0,
                    progress: bool = True, readings: tuple[torch.Tensor, torch.Tensor] | None = None) -> Candidates:
    """Draw `n` latents with `seed`, render them and read the images in `space`, `batch` at a
    time (memory stays bounded whatever n is). `readings`: the space's (embeddings, confidences)
    of these same candidates from an earlier read; then they are only rendered."""
    if n < 1:
        raise ValueError(f"retrieval needs at least one candidate, got n={n}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if readings is not None and not len(readings[0]) == len(readings[1]) == n:
        raise ValueError(f"readings of {len(readings[0])} candidates given for n={n}")
    # All latents are drawn at once (they are small), so the candidates do not depend on `batch`.
    latents = generator.sample(n, torch.Generator(device="cpu").manual_seed(seed))
    images, embeddings, confidences = [], [], []
    bar = progress_bar(total=n, desc="retrieval", unit="image", disable=not progress)  # images, not batches
    for start in range(0, n, batch):
        x = generator.render(latents[start:start + batch])
        images.append(x.float().cpu())
        if readings is None:
            embedding, confidence = space.read_image(x)
            embeddings.append(embedding)  # kept where it was read: `rank` compares it there
            confidences.append(confidence.float().cpu())
        bar.update(len(x))
    bar.close()
    if readings is None:
        readings = torch.cat(embeddings), torch.cat(confidences)
    return Candidates(latents, torch.cat(images), *readings)


@torch.no_grad()
def rank(candidates: Candidates, space: EmbeddingSpace, audio_embedding: torch.Tensor) -> Retrieval:
    """Rank the candidates by their similarity to `audio_embedding` (1, D), s_i (Eq. 1), and
    their softmax (Eq. 2). A candidate the space does not see (its confidence under
    `space.min_confidence`: a face the face mesh loses) ranks last and has no share of the
    softmax: its reading is a guess."""
    scores = space.similarity(candidates.embeddings, audio_embedding.to(candidates.embeddings.device))[:, 0]
    scores = scores.float().cpu()
    if not torch.isfinite(scores).all():
        raise ValueError("retrieval similarities are not finite; check the audio file and the encoders")
    seen = candidates.confidences >= space.min_confidence
    logits = torch.where(_counted(seen, len(scores)), space.logit_scale * scores, torch.tensor(float("-inf")))
    return Retrieval(candidates.latents, candidates.images, scores, torch.softmax(logits, 0), space.name, seen)


def retrieve(
    generator: Generator,
    space: EmbeddingSpace,
    audio_embedding: torch.Tensor,
    n: int = 16,
    batch: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> Retrieval:
    """Rank `n` generated candidates (`read_candidates`) by their similarity to
    `audio_embedding` (1, D) (`rank`)."""
    return rank(read_candidates(generator, space, n, batch, seed, progress), space, audio_embedding)
