"""CLIP space: EmoStyle's guidance space (paper 3.3, Eq. 5).

Images and text are embedded by CLIP ViT-B/32; audio and the generated music by the SoundCLIP
audio encoder, trained into the same 512-d space. All embeddings are L2-normalised.

compat="paper" (default): images enter CLIP with its own preprocessing (antialiased resize,
mean/std), and d(x, y) = 1 - cos(x, y), the paper's cosine distance.
compat="official": as the reference code (sound-guided `criteria/soundclip_loss.py`, reused by
EmoStyle): images go through Upsample(x7) + AvgPool2d(H // 32) in [-1, 1] without normalisation,
and sim = cos * exp(0.07) (~1.0725; a temperature of 0.07 misapplied as a factor), d = 1 - sim.
The paper's figures were made this way.

Audio embeddings are cached per (file content sha256, crop, seed): re-encoding a clip every
step, as the reference does, gives the same numbers.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from emostyle.models.clip import (
    CLIP,
    COMPAT,
    Tokenizer,
    clip_input,
    load_clip,
    load_tokenizer,
    tiny_clip,
)
from emostyle.models.soundclip import (
    CROPS,
    AudioEncoder,
    audio_features,
    load_soundclip,
    tiny_soundclip,
)
from emostyle.parts import EmbeddingSpace
from emostyle.registry import file_sha256

__all__ = ["ClipSpace", "load_clip_space", "tiny_clip_space", "OFFICIAL_SIM_SCALE"]

OFFICIAL_SIM_SCALE = math.exp(0.07)


class ClipSpace(EmbeddingSpace):
    """CLIP image/text encoders with the SoundCLIP audio encoder; embeddings (B, 512), unit length."""

    name = "clip"

    def __init__(self, clip: CLIP, tokenizer: Tokenizer, audio_encoder: AudioEncoder, compat: str = "paper",
                 crop: str = "start", seed: int | None = None):
        if compat not in COMPAT:
            raise ValueError(f"compat must be one of {COMPAT}, got {compat!r}")
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if audio_encoder.embed_dim != clip.embed_dim:
            raise ValueError(f"SoundCLIP embeds in {audio_encoder.embed_dim} dimensions, CLIP in {clip.embed_dim}; "
                             f"they must share one space")
        self.clip, self.tokenizer, self.audio_encoder = clip, tokenizer, audio_encoder
        self.compat, self.crop, self.seed = compat, crop, seed
        self.dim = clip.embed_dim
        self.sim_scale = OFFICIAL_SIM_SCALE if compat == "official" else 1.0
        self._audio_cache: dict[tuple, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return self.clip.text_projection.device

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Differentiable unit embeddings (B, dim) of images (B, 3, H, W) in [-1, 1]."""
        x = clip_input(images.to(self.device), self.compat, self.clip.resolution)
        return F.normalize(self.clip.encode_image(x), dim=-1)

    def encode_text(self, text: str) -> torch.Tensor:
        """Unit embedding (1, dim) of a text; texts over CLIP's 77 tokens are cut, with a warning."""
        if len(self.tokenizer.encode(text)) + 2 > self.tokenizer.context_length:
            warnings.warn(f"text longer than CLIP's {self.tokenizer.context_length} tokens is truncated: "
                          f"{text[:40]!r}...", stacklevel=2)
        tokens = self.tokenizer(text, truncate=True).to(self.device)
        with torch.no_grad():
            return F.normalize(self.clip.encode_text(tokens), dim=-1)

    def encode_audio(self, path: str | Path) -> torch.Tensor:
        """Unit SoundCLIP embedding (1, dim) of an audio file (audio or rendered music).

        crop="mean" averages the embeddings of all 864-frame windows before normalising.
        """
        key = (file_sha256(Path(path)), self.crop, self.seed if self.crop == "random" else None)
        if key not in self._audio_cache:
            mel = audio_features(path, self.crop, self.seed).to(self.device)
            with torch.no_grad():
                emb = self.audio_encoder(mel).mean(dim=0, keepdim=True)
            self._audio_cache[key] = F.normalize(emb, dim=-1)
        return self._audio_cache[key]

    def similarity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, M) cosine similarities of x (B, dim) and y (M, dim), times exp(0.07) in compat="official"."""
        return F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T * self.sim_scale

    def distance(self, image_emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-item guidance loss (B,): 1 - similarity of image i and target i (or the one target)."""
        if target.shape[0] not in (1, image_emb.shape[0]):
            raise ValueError(f"target batch {target.shape[0]} must be 1 or match the images ({image_emb.shape[0]})")
        cos = (F.normalize(image_emb, dim=-1) * F.normalize(target, dim=-1)).sum(dim=-1)
        return 1 - cos * self.sim_scale



def load_clip_space(clip_path: str | Path | None = None, soundclip_path: str | Path | None = None,
                    bpe_path: str | Path | None = None, device: str | torch.device = "cpu",
                    compat: str = "paper", crop: str = "start", seed: int | None = None) -> ClipSpace:
    """The paper's CLIP space from weight files (None: the registry's clip-vit-b-32,
    soundclip-resnet18 and clip-bpe-vocab). Each network loads once per process and device."""
    return ClipSpace(load_clip(clip_path, device), load_tokenizer(bpe_path), load_soundclip(soundclip_path, device),
                     compat=compat, crop=crop, seed=seed)


def tiny_clip_space(seed: int = 0, device: str | torch.device = "cpu", compat: str = "paper",
                    crop: str = "start") -> ClipSpace:
    """A random, narrow CLIP space (32-d; byte-level tokenizer) for the tiny profile and tests."""
    tokenizer = Tokenizer.from_merges([])
    clip = tiny_clip(seed, vocab_size=len(tokenizer), embed_dim=32).to(device)
    return ClipSpace(clip, tokenizer, tiny_soundclip(seed + 1, embed_dim=32).to(device), compat=compat, crop=crop,
                     seed=seed)
