"""The small interfaces behind which profiles swap the pipeline's parts.

A stage (retrieval, guidance) calls only these methods and never asks which concrete
part it holds: StyleGAN2 or the DCGAN is a `Generator`; CLIP space, ImageBind space
or the offline affect space is an `EmbeddingSpace`; ArcFace or the FER features is an
`IdentityLoss`.
"""

from __future__ import annotations

import abc
from pathlib import Path

import numpy as np
import torch

__all__ = ["Generator", "EmbeddingSpace", "IdentityLoss", "Judge", "check_images", "check_margins", "face_views",
           "to_uint8"]


class Generator(abc.ABC):
    """Latents in, images in [-1, 1] out.

    The latent that the guidance optimises has shape (B, n_layers, latent_dim):
    W+ for StyleGAN2 (n_layers = 2 log2(size) - 2), z for the DCGAN (n_layers = 1).
    """

    name: str
    n_layers: int
    latent_dim: int
    resolution: int

    @abc.abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Starting latents (n, n_layers, latent_dim), drawn only from `generator`."""

    @abc.abstractmethod
    def render(self, latents: torch.Tensor) -> torch.Tensor:
        """Differentiable images (B, 3, H, W) in [-1, 1] from latents (B, n_layers, latent_dim)."""

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    # -- inversion of a user's photo (emostyle.inversion) ------------------------------------
    def inversion_start(self) -> tuple[torch.Tensor, float]:
        """(latent (1, n_layers, latent_dim) where projection starts, spread of the latents:
        sqrt(E ||latent - start||^2), the scale of the noise that projection adds early on)."""
        raise NotImplementedError(f"the {self.name} generator cannot invert a photo")

    def constrain(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents moved back where the generator was trained (after each projection step);
        unchanged by default."""
        return latents

    def noise_maps(self) -> list[torch.Tensor]:
        """Copies of the per-layer noise inputs the renderer uses, for projection to optimise
        with the latent (StyleGAN2); none for generators without noise inputs."""
        return []

    def with_noise(self, noise: list[torch.Tensor]) -> "Generator":
        """A generator that renders with these noise inputs (from `noise_maps`) instead of its own."""
        return self

    def for_photo(self, image: torch.Tensor) -> "Generator":
        """The generator that inverts `image` (1, 3, R, R) in [-1, 1]: itself for a GAN; a grader
        of real photos grades the user's photo itself."""
        return self


class EmbeddingSpace(abc.ABC):
    """A joint space for images, audio and text; guidance and retrieval compare in it."""

    name: str
    dim: int
    # Softmax temperature of retrieval (Eq. 2): the space's own logit scale (ImageBind: 20).
    logit_scale: float = 1.0
    # The confidence (`read_image`) under which the space does not see the image's subject:
    # retrieval ranks such candidates last.
    min_confidence: float = 0.0
    # What of a target the guidance compares, where it is not the whole (`guided`), for the notes
    # of figures and manifests: "pleasure alone" for the affect space's scenes.
    compares: str = ""

    @abc.abstractmethod
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Differentiable embeddings (B, dim) of images (B, 3, H, W) in [-1, 1]."""

    def read_image(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`encode_image`'s embeddings and, from the same pass, how surely the space sees each
        image's subject (B,) in [0, 1], held constant; 1 for a space that reads every image."""
        embedding = self.encode_image(images)
        return embedding, torch.ones(len(embedding), device=embedding.device)

    def guidance_reading(self, images: torch.Tensor) -> torch.Tensor:
        """What the guidance loss (`distance`) compares with each target, differentiable: the
        images' embeddings; a space may keep more of what it reads (the affect space keeps a
        face's emotion terms, so that its loss can credit each term by where it lies from the target)."""
        return self.encode_image(images)

    @abc.abstractmethod
    def encode_audio(self, path: str | Path) -> torch.Tensor:
        """Embedding (1, dim) of an audio file."""

    @abc.abstractmethod
    def encode_text(self, text: str) -> torch.Tensor:
        """Embedding (1, dim) of a text."""

    @abc.abstractmethod
    def similarity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Similarity matrix (B, M) of embeddings x (B, dim) and y (M, dim); higher is closer."""

    def guided(self, targets: torch.Tensor) -> torch.Tensor:
        """The part of targets (M, dim) that the guidance compares (`distance`), as embeddings of
        the space, so that a report of which way a target pulls reads what pulls: the targets
        themselves; the affect space compares a scene with a target's pleasure alone."""
        return targets

    @abc.abstractmethod
    def distance(self, image_emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-item guidance loss (B,) between images' `guidance_reading` (B, ...; by default
        their embeddings) and targets (B or 1, dim)."""

    def guidance_loss(self, reading: torch.Tensor, weighted: list[tuple[float, torch.Tensor]]) -> torch.Tensor:
        """The emotion part of the guidance loss (B,): sum_k l_k `distance`(reading, t_k) over
        (l_k, target t_k) pairs, the paper's weighted L_cos terms. A space whose distance is not
        linear in the target's direction may add them as the cosine does (`AffectSpace`)."""
        return sum(weight * self.distance(reading, target) for weight, target in weighted)

    def emotion_readings(self, images: torch.Tensor) -> torch.Tensor:
        """Differentiable readings (B, terms) of the space's emotion terms in images, for edits
        kept to emotion directions (`emostyle.guidance.emotion_directions`); a space without
        emotion terms has none."""
        raise NotImplementedError(f"the {self.name} space reads no emotion terms")


class IdentityLoss(abc.ABC):
    """L_ID (paper Eq. 6): 1 - cosine of identity features of two image batches.

    The reference's features are computed once per reference (the guidance compares every
    step with the same start images), without a gradient, and again if it changes in place."""

    name = "identity features"  # the network whose features it compares, for figures and manifests
    _reference: tuple | None = None  # (reference tensor, its version, its features)

    @abc.abstractmethod
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Identity features (B, dim) of images (B, 3, H, W) in [-1, 1]."""

    def __call__(self, images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Per-item loss (B,) between images and reference images, both (B, 3, H, W) in [-1, 1]
        (a reference batch of 1 is compared with every image)."""
        if reference.shape[0] not in (1, images.shape[0]):
            raise ValueError(f"reference batch {reference.shape[0]} must be 1 or match images ({images.shape[0]})")
        cached = self._reference
        if cached is None or cached[0] is not reference or cached[1] != reference._version:
            with torch.no_grad():
                cached = self._reference = (reference, reference._version, self.features(reference))
        return 1 - torch.nn.functional.cosine_similarity(self.features(images), cached[2], dim=1)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images (B, 3, H, W) in [-1, 1] as the 8-bit RGB arrays (B, H, W, 3) that are saved as PNG."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def check_images(images: np.ndarray) -> None:
    """Refuse, in one line, what a judge cannot read: it reads 8-bit RGB images (B, H, W, 3)."""
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3 \
            or images.dtype != np.uint8 or 0 in images.shape:
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise ValueError(f"a judge reads 8-bit RGB images, uint8 (B, H, W, 3); got {got} "
                         "(emostyle.parts.to_uint8 turns images in [-1, 1] into that)")


def check_margins(margins) -> tuple[float, ...]:
    """`margins` of `face_views` as a tuple; refuses, in one line, any outside [0, 0.5) or none."""
    margins = tuple(margins)
    if not margins or not all(0 <= m < 0.5 for m in margins):
        raise ValueError(f"margins are fractions of the side in [0, 0.5), at least one; got {margins}")
    return margins


def face_views(images: np.ndarray, margins: tuple[float, ...], mirror: bool = True) -> list[np.ndarray]:
    """Views of 8-bit face images (B, H, W, 3) that a judge averages its reading over: centred
    crops cutting each fraction in `margins` of the side off each edge, and (`mirror`) their
    mirror images (an expression reads the same mirrored). A classifier of small faces reads
    a face moved by one pixel differently; the mean over views a pixel or two apart is steadier."""
    height, width = images.shape[1:3]
    views = []
    for margin in check_margins(margins):
        dy, dx = round(margin * height), round(margin * width)
        view = images[:, dy:height - dy, dx:width - dx]
        views += [np.ascontiguousarray(v) for v in (view, view[:, :, ::-1])[: 2 if mirror else 1]]
    return views


class Judge(abc.ABC):
    """An emotion reader that did not guide the image: it reads the saved 8-bit images.

    Metrics of emotion (valence shift, emotion agreement) go through a judge, never through
    the guidance space that was optimised, so they measure what a viewer of the PNG sees.
    """

    name: str  # shown in tables and captions, e.g. "dlib 68 landmarks (mouth geometry)"
    # The readings that say what the judge sees (a blendshape, an emotion's probability), which
    # the start study lists when they move; empty: every numeric reading but "valence".
    components: tuple[str, ...] = ()

    @abc.abstractmethod
    def read(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Readings of 8-bit RGB images (B, H, W, 3): at least "valence" (B,), higher is more
        positive; NaN where the judge cannot read an image (no face found)."""

    def read_tensor(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        """`read` of images (B, 3, H, W) in [-1, 1], quantised exactly as they are saved."""
        return self.read(to_uint8(images))
