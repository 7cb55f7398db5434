"""Sentiment-assisted guidance (paper 3.3, Eq. 4-8): direct latent optimisation.

    L = L_cos + l_ID L_ID + l_sim L_reg
    L_cos = l_Aud d(G(w), a) + l_Mus d(G(w), m) + l_Tex d(G(w), t)          (Eq. 5)
    L_reg = (1/L) sum_i g_i ||w_i - w0_i||^2, g trainable                      (Eq. 8)

The methods of the paper (EmoStyle, StyleCLIP, Lee et al., the ablations) are weightings
of the same terms on this one loop (`METHODS`). Target embeddings are computed once,
before the loop; each step renders and encodes the image once; the identity network runs
only when l_ID > 0; a batch of B manipulations runs at once, each with its own losses.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .parts import EmbeddingSpace, Generator, IdentityLoss

__all__ = ["Method", "METHODS", "GuidanceError", "GuidanceResult", "guide", "lr_at", "method"]

TERMS = ("audio", "music", "text")


@dataclass(frozen=True)
class Method:
    """A method of the paper as a weighting of the L_cos terms (l_Aud, l_Mus, l_Tex)."""

    name: str
    title: str
    audio: float
    music: float
    text: float

    def weights(self) -> dict[str, float]:
        return {"audio": self.audio, "music": self.music, "text": self.text}


# Weights from the official criteria/soundclip_loss.py; "wo-audio" has no branch there, so it
# keeps the paper's music and text weights in their 0.2 : 0.2 ratio.
METHODS = {
    m.name: m
    for m in (
        Method("emostyle", "EmoStyle", 0.6, 0.2, 0.2),
        Method("styleclip", "StyleCLIP", 0.0, 0.0, 1.0),  # lyrics as the text prompt
        Method("lee", "Lee et al.", 1.0, 0.0, 0.0),  # audio only
        Method("wo-audio", "EmoStyle w/o Audio", 0.0, 0.5, 0.5),
        Method("wo-music", "EmoStyle w/o Music", 0.8, 0.0, 0.2),
        Method("wo-text", "EmoStyle w/o Text", 0.9, 0.1, 0.0),
    )
}


def method(name: str) -> Method:
    """The method called `name`; a clear error lists the valid ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


class GuidanceError(RuntimeError):
    """The optimisation cannot go on (a NaN or infinite loss term, bad settings)."""


def lr_at(t: float, lr0: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The official learning-rate schedule: cosine ramp-down over the last 25%, ramp-up over 5%."""
    r = min(1.0, (1.0 - t) / rampdown)
    r = 0.5 - 0.5 * math.cos(math.pi * r)
    return lr0 * r * min(1.0, t / rampup)


@dataclass
class GuidanceResult:
    """What one guidance run produced, per item of the batch."""

    latents: torch.Tensor  # (B, n_layers, dim), final
    start_latents: torch.Tensor  # (B, n_layers, dim), w0
    images: torch.Tensor  # (B, 3, H, W) in [-1, 1], final
    start_images: torch.Tensor  # (B, 3, H, W), G(w0)
    history: dict[str, list[list[float]]]  # term -> per step -> per item
    frames: list[tuple[int, torch.Tensor]]  # (step, images) every frame_every steps
    mask: torch.Tensor | None  # g at the end, (B, n_layers)
    seconds: float
    settings: dict = field(default_factory=dict)


def _layer_gates(masking: str, batch: int, n_layers: int, device) -> torch.Tensor | None:
    if masking == "paper":
        # g = L * softmax(m): trainable, its total fixed at L, so the optimisation can only
        # move regularisation between layers (free the layers the edit needs), never drop it.
        return torch.zeros(batch, n_layers, device=device, requires_grad=True)
    if masking == "official":
        return torch.ones(batch, min(14, n_layers), device=device)  # the code's fixed-size plain tensor
    return None


def _regulariser(w: torch.Tensor, w0: torch.Tensor, masking: str, gates: torch.Tensor | None) -> torch.Tensor:
    per_layer = ((w - w0) ** 2).sum(dim=2)  # (B, L)
    if masking == "paper":
        n_layers = per_layer.shape[1]
        g = n_layers * torch.softmax(gates, dim=1)
        return (g * per_layer).mean(dim=1)
    if masking == "official":
        k = gates.shape[1]
        terms = torch.sigmoid(gates) * per_layer[:, :k]
        with torch.no_grad():  # its heuristic update, no gradient (run_optimization_comprehensive.py)
            value = terms.detach()
            gates -= 0.1 * value * (1 - value)
        return terms.sum(dim=1)
    return per_layer.sum(dim=1)  # the official L_reg = sum((w0 - w)^2)


def guide(
    generator: Generator,
    space: EmbeddingSpace,
    start: torch.Tensor,
    targets: dict[str, torch.Tensor],
    weights: dict[str, float],
    *,
    steps: int = 300,
    lr: float = 0.1,
    l_id: float = 0.0,
    l_sim: float = 0.0,
    identity: IdentityLoss | None = None,
    layer_masking: str = "paper",
    frame_every: int = 25,
    progress: bool = True,
) -> GuidanceResult:
    """Optimise the latents `start` (B, n_layers, dim) toward the target embeddings.

    `targets` maps "audio", "music", "text" to embeddings (1 or B, D) computed once by the
    caller; `weights` gives l_Aud, l_Mus, l_Tex. `layer_masking` is "paper" (Eq. 8, g
    trainable over all layers), "official" (the code's heuristic) or "off".
    """
    if steps < 1:
        raise GuidanceError(f"steps must be >= 1, got {steps}")
    if not (lr > 0 and math.isfinite(lr)):
        raise GuidanceError(f"learning rate must be a positive number, got {lr}")
    active = {k: float(v) for k, v in weights.items() if v}
    unknown = set(weights) - set(TERMS)
    if unknown:
        raise GuidanceError(f"unknown loss terms {sorted(unknown)}; valid: {', '.join(TERMS)}")
    if any(v < 0 or not math.isfinite(v) for v in list(active.values()) + [l_id, l_sim]):
        raise GuidanceError("loss weights must be finite and non-negative")
    if not active:
        raise GuidanceError("all of l_Aud, l_Mus, l_Tex are zero: nothing guides the image")
    missing = [k for k in active if k not in targets or targets[k] is None]
    if missing:
        raise GuidanceError(f"weights given for {missing} but no target embedding for them")
    if l_id > 0 and identity is None:
        raise GuidanceError("l_ID > 0 but no identity network was given")
    if layer_masking not in ("paper", "official", "off"):
        raise GuidanceError(f"layer_masking must be paper, official or off; got {layer_masking!r}")
    if start.dim() != 3:
        raise GuidanceError(f"start latents must be (B, n_layers, dim), got shape {tuple(start.shape)}")

    begun = time.perf_counter()
    w0 = start.detach()
    w = w0.clone().requires_grad_(True)
    batch, n_layers = w.shape[:2]
    gates = _layer_gates(layer_masking, batch, n_layers, w.device) if l_sim > 0 else None
    params = [w] + ([gates] if gates is not None and gates.requires_grad else [])
    optimizer = torch.optim.Adam(params, lr=lr)
    targets = {k: targets[k].detach() for k in active}

    with torch.no_grad():
        start_images = generator.render(w0)
    reference = start_images if l_id > 0 else None
    history: dict[str, list[list[float]]] = {k: [] for k in [*active, "id", "reg", "total"]}
    frames = []

    bar = tqdm(range(steps), desc="guidance", disable=not progress, leave=False)
    for step in bar:
        optimizer.param_groups[0]["lr"] = lr_at(step / steps, lr)
        images = generator.render(w)
        embedding = space.encode_image(images)
        terms = {k: space.distance(embedding, targets[k]) for k in active}
        total = sum(active[k] * terms[k] for k in active)
        if l_id > 0:
            terms["id"] = identity(images, reference)
            total = total + l_id * terms["id"]
        if l_sim > 0:
            terms["reg"] = _regulariser(w, w0, layer_masking, gates)
            total = total + l_sim * terms["reg"]
        terms["total"] = total
        for name, value in terms.items():
            if not torch.isfinite(value).all():
                raise GuidanceError(f"loss term {name!r} became {value.detach().tolist()} at step {step}; "
                                    "lower the learning rate or check the inputs")
            history[name].append(value.detach().cpu().tolist())
        optimizer.zero_grad(set_to_none=True)
        total.sum().backward()  # a sum keeps each item's gradient equal to its single run
        optimizer.step()
        if step % frame_every == 0:
            frames.append((step, images.detach().cpu()))
        bar.set_postfix(loss=f"{total.mean().item():.4f}")

    with torch.no_grad():
        final = generator.render(w)
    frames.append((steps, final.detach().cpu()))
    history = {k: v for k, v in history.items() if v}
    mask = None
    if gates is not None:
        mask = (n_layers * torch.softmax(gates, 1)) if layer_masking == "paper" else torch.sigmoid(gates)
        mask = mask.detach().cpu()
    return GuidanceResult(
        latents=w.detach(), start_latents=w0, images=final.detach(), start_images=start_images.detach(),
        history=history, frames=frames, mask=mask, seconds=time.perf_counter() - begun,
        settings=dict(steps=steps, lr=lr, l_id=l_id, l_sim=l_sim, weights=active, layer_masking=layer_masking),
    )
