"""LAION aesthetic predictor: one linear layer on L2-normalised CLIP image embeddings.

`sa_0_4_vit_b_32_linear.pth` (LAION-AI/aesthetic-predictor, MIT) maps a CLIP ViT-B/32 image
embedding (512) to an aesthetic score on the AVA scale, about 1 to 10. It was fitted on unit-norm
embeddings: unnormalised ones give scores above 10 (aesthetic-predictor issue #5), so `score`
always normalises. The ViT-B/16 (512) and ViT-L/14 (768) heads load the same way; the input size
is read from the checkpoint.

Embed with CLIP's own preprocessing (`emostyle.models.clip.clip_input(..., compat="paper")`), the
one the head was fitted with.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AestheticHead", "load_aesthetic_head"]


class AestheticHead(nn.Module):
    """score = w . (e / |e|) + b for CLIP image embeddings e (B, dim); scores (B,)."""

    name = "laion-aesthetic"
    higher_is_better = True

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 1)

    @property
    def dim(self) -> int:
        return self.linear.in_features

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"expected CLIP image embeddings (B, {self.dim}), got {tuple(embeddings.shape)}")
        e = F.normalize(embeddings.to(self.linear.weight), dim=-1)
        return self.linear(e).squeeze(-1)

    @torch.no_grad()
    def score(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Aesthetic scores (B,) of CLIP image embeddings (B, dim), about 1 (poor) to 10 (great)."""
        return self(embeddings)

    @torch.no_grad()
    def score_images(self, images: torch.Tensor, encode_image: Callable[[torch.Tensor], torch.Tensor],
                     batch_size: int = 16) -> torch.Tensor:
        """Scores (B,) of images (B, 3, H, W) through `encode_image` (images -> (b, dim) CLIP embeddings)."""
        return torch.cat([self(encode_image(chunk)) for chunk in images.split(batch_size)])


def load_aesthetic_head(path: str | Path | None = None, device: str | torch.device = "cpu") -> AestheticHead:
    """Load a LAION head (`sa_0_4_vit_*_linear.pth`; default: registry `laion-aesthetic-vit-b-32`) strictly."""
    if path is None:
        from emostyle import registry

        path = registry.path("laion-aesthetic-vit-b-32")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"aesthetic head {path} not found; "
                                "run `emostyle weights fetch laion-aesthetic-vit-b-32`")
    expected = "a LAION aesthetic head: a torch state dict {'weight': (1, dim), 'bias': (1,)}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise ValueError(f"{path} is not {expected} ({type(err).__name__}: {str(err)[:120]})") from None
    if not isinstance(state, dict) or set(state) != {"weight", "bias"} or state["weight"].ndim != 2 \
            or state["weight"].shape[0] != 1 or tuple(state["bias"].shape) != (1,):
        found = {k: tuple(v.shape) for k, v in state.items()} if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not {expected}; found {found}")
    head = AestheticHead(state["weight"].shape[1])
    head.linear.load_state_dict(state, strict=True)
    return head.eval().to(device)
