"""Objective metrics of a manipulation beyond the paper's Table 1: per-item values, shape (B,).

- alignment: how close the result is to the audio, music or text target in the guidance space
  (CLIP space, or the offline affect space); higher is closer;
- identity similarity between input and result (ArcFace, or any `IdentityLoss`): 1 - L_ID;
  `face_distance`, the same question put to a face-recognition network that held nothing;
- latent distance ||w - w0|| (how far the optimisation moved, paper Eq. 7's L_reg is its square);
- emotion: the valence of the saved images as a *judge* reads it (`judge_valence`, a model that
  did not guide them), its shift signed by the song's polarity, and emotion agreement (did it
  move the song's way). `space_valence` is the same reading through the guidance space that was
  optimised: kept, labelled "in the guidance space", because it reports success for changes a
  person may not see; the tables show both so a reader sees when they disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from emostyle.parts import EmbeddingSpace, IdentityLoss, Judge, to_uint8

__all__ = ["alignment", "identity_similarity", "face_distance", "latent_distance", "pixel_change", "judge_valence",
           "judge_resolution", "space_valence", "embedding_valence", "target_valences", "valence_shift",
           "emotion_agreement"]

# A neutral song (a sound without lyrics) asks for no direction: its shift and agreement are NaN.
POLARITIES = {"positive": 1.0, "negative": -1.0, "neutral": float("nan")}


def alignment(image_emb: torch.Tensor, target: torch.Tensor, space: EmbeddingSpace | None = None) -> torch.Tensor:
    """Similarity (B,) of result embeddings (B, dim) to their targets (B, dim), or one target (1, dim):
    the space's own `similarity` if given, else cosine similarity."""
    if image_emb.ndim != 2 or target.ndim != 2 or target.shape[1] != image_emb.shape[1] \
            or target.shape[0] not in (1, image_emb.shape[0]):
        raise ValueError(f"expected embeddings (B, dim) and targets (B or 1, dim), got "
                         f"{tuple(image_emb.shape)} and {tuple(target.shape)}")
    with torch.no_grad():
        if space is None:
            return F.cosine_similarity(image_emb, target.expand_as(image_emb), dim=-1)
        sim = space.similarity(image_emb, target)  # (B, B) or (B, 1)
        return sim[:, 0] if target.shape[0] == 1 else sim.diagonal()


def identity_similarity(result: torch.Tensor, reference: torch.Tensor,
                        identity: IdentityLoss | None = None) -> torch.Tensor:
    """Identity similarity (B,) between results and inputs: 1 - L_ID through `identity` on images
    (B, 3, H, W) in [-1, 1], or, without it, the cosine of identity features (B, dim)."""
    if result.shape != reference.shape:
        raise ValueError(f"results and references must have one shape, "
                         f"got {tuple(result.shape)} and {tuple(reference.shape)}")
    with torch.no_grad():
        if identity is not None:
            return 1 - identity(result, reference)
        if result.ndim != 2:
            raise ValueError(f"without an IdentityLoss, pass features (B, dim), not {tuple(result.shape)}")
        return F.cosine_similarity(result, reference, dim=-1)


def face_distance(result: torch.Tensor, reference: torch.Tensor, recognizer: IdentityLoss) -> torch.Tensor:
    """Euclidean distance (B,) between the identity features of results and inputs, images
    (B, 3, H, W) in [-1, 1] read once saved as 8-bit images. With dlib's face-recognition network
    (`DlibFaceIdentity`, in no loss unless guidance.identity says so): two photos of one person lie
    within 0.6, the threshold dlib was trained to."""
    if result.shape != reference.shape:
        raise ValueError(f"results and references must have one shape, "
                         f"got {tuple(result.shape)} and {tuple(reference.shape)}")
    saved = (torch.from_numpy(to_uint8(x)).permute(0, 3, 1, 2).float() / 127.5 - 1 for x in (result, reference))
    with torch.no_grad():
        a, b = (recognizer.features(x.to(result.device)) for x in saved)
    return (a - b).norm(dim=1).cpu()


def latent_distance(w: torch.Tensor, w0: torch.Tensor) -> torch.Tensor:
    """Euclidean distance (B,) between final and starting latents (B, n_layers, dim) (or (B, dim))."""
    if w.shape != w0.shape:
        raise ValueError(f"latents must have one shape, got {tuple(w.shape)} and {tuple(w0.shape)}")
    return (w.detach() - w0.detach()).flatten(1).norm(dim=1)


def _signs(polarity: str | Sequence[str], n: int) -> torch.Tensor:
    labels = [polarity] * n if isinstance(polarity, str) else list(polarity)
    bad = sorted({p for p in labels if p not in POLARITIES})
    if bad:
        raise ValueError(f"unknown polarity {bad}; valid: {', '.join(POLARITIES)}")
    if len(labels) != n:
        raise ValueError(f"{len(labels)} polarity labels for {n} results")
    return torch.tensor([POLARITIES[p] for p in labels])


def valence_shift(before, after, polarity: str | Sequence[str]) -> torch.Tensor:
    """Valence change (B,) signed by the polarity: > 0 when the result moved the song's way;
    NaN for a neutral song or an image the judge could not read."""
    before, after = torch.as_tensor(before, dtype=torch.float32), torch.as_tensor(after, dtype=torch.float32)
    if before.shape != after.shape or before.ndim != 1:
        raise ValueError(f"valences must be two (B,) vectors, got {tuple(before.shape)} and {tuple(after.shape)}")
    return (after - before) * _signs(polarity, len(before))


def pixel_change(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Mean absolute change (B,) of images (B, 3, H, W) in [-1, 1] once saved as 8-bit images,
    in grey levels of 255: what a viewer can see changed, whatever moved the latent."""
    before, after = (torch.from_numpy(to_uint8(x)).double() for x in (before, after))
    return (after - before).abs().mean(dim=(1, 2, 3)).float()


def judge_valence(images: torch.Tensor, judge: Judge) -> torch.Tensor:
    """Valence (B,) of images (B, 3, H, W) in [-1, 1] as `judge` reads them once saved as 8-bit
    PNGs (NaN where it cannot read one)."""
    return judge_readings(images, judge)["valence"]


def judge_readings(images: torch.Tensor, judge: Judge) -> dict[str, torch.Tensor]:
    """"valence" and the judge's components (`Judge.components`), each (B,) float, of images
    (B, 3, H, W) in [-1, 1] as `judge` reads them once saved as 8-bit PNGs (NaN: unread)."""
    readings = judge.read_tensor(images)
    names = getattr(judge, "components", ()) or [
        k for k, v in readings.items() if k != "valence" and np.issubdtype(np.asarray(v).dtype, np.floating)]
    return {k: torch.as_tensor(np.asarray(readings[k], dtype=np.float32)) for k in ("valence", *names)}


def judge_resolution(images: torch.Tensor, judge: Judge, base: torch.Tensor | None = None) -> float:
    """The largest change of valence `judge` reads when `images` (B, 3, H, W) move by one pixel,
    each of four ways (edge replicated): a change smaller than this, the judge cannot tell from
    such a shift (NaN where it reads none of them). Models reading small faces are not exact.
    `base`: the judge's valence of `images` where the caller has read it already."""
    base = judge_valence(images, judge) if base is None else torch.as_tensor(base, dtype=torch.float32)
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    height, width = images.shape[2:]
    changes = [judge_valence(padded[:, :, 1 + dy:1 + dy + height, 1 + dx:1 + dx + width], judge) - base
               for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))]
    changes = torch.stack(changes).abs()
    changes = changes[~changes.isnan()]
    return float(changes.max()) if len(changes) else float("nan")


def space_valence(images: torch.Tensor, space: EmbeddingSpace, subject: str = "face") -> torch.Tensor:
    """Valence (B,) of images *in the guidance space*: similarity to "a happy <subject>" minus
    similarity to "a sad <subject>" (CLIP, the affect space and any space with a text encoder).
    Not an independent measure when `space` guided the images: see `judge_valence`."""
    with torch.no_grad():
        return embedding_valence(space.encode_image(images), space, subject)


def embedding_valence(emb: torch.Tensor, space: EmbeddingSpace, subject: str = "face") -> torch.Tensor:
    """`space_valence` of embeddings (B, D) of `space`: an image's, or a target's (a song's audio,
    its music, its lyrics), so that a reader sees which way each target pulls."""
    with torch.no_grad():
        happy, sad = (space.encode_text(f"a {mood} {subject}").to(emb.device) for mood in ("happy", "sad"))
        return (space.similarity(emb, happy) - space.similarity(emb, sad))[:, 0].float().cpu()


def target_valences(targets: Mapping[str, torch.Tensor | None], space: EmbeddingSpace,
                    subject: str = "face") -> dict[str, float | None]:
    """{target: the `embedding_valence` of what the guidance compares of it (`space.guided`)} of
    one song's targets (`Pipeline.targets`, each (1, D) or None where the song has none, e.g. no
    lyrics): > 0 pulls toward "a happy <subject>"."""
    return {k: None if t is None else float(embedding_valence(space.guided(t.float()), space, subject)[0])
            for k, t in targets.items()}


def emotion_agreement(before, after, polarity: str | Sequence[str], resolution: float = 0.0) -> torch.Tensor:
    """1.0 where the valence moved the way the polarity says (up for positive, down for negative)
    by more than `resolution`, 0.0 where it did not (a move the judge cannot tell from a one-pixel
    shift, `judge_resolution`, is no agreement: it may be the judge's own noise), NaN for a neutral
    song or an unreadable image; shape (B,). Its mean over the non-NaN items is the agreement rate."""
    if not resolution >= 0:
        raise ValueError(f"resolution must be a non-negative number, got {resolution}")
    shift = valence_shift(before, after, polarity)
    return torch.where(shift.isnan(), shift, (shift > resolution).float())
