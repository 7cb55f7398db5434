"""Sentiment-assisted guidance (paper 3.3, Eq. 4-8): direct latent optimisation.

    L = L_cos + l_ID L_ID + l_sim L_reg
    L_cos = l_Aud d(G(w), a) + l_Mus d(G(w), m) + l_Tex d(G(w), t)          (Eq. 5)
    L_reg = ||w - w0||^2 (Eq. 7), or (1/L) sum_i g_i ||w_i - w0_i||^2 (Eq. 8)

The methods of the paper (EmoStyle, StyleCLIP, Lee et al., the ablations) are weightings
of the same terms on this one loop (`METHODS`, each from the authors' scripts); the space adds
them (`EmbeddingSpace.guidance_loss`: as the cosine does, a face in the affect space too). Target
embeddings are computed once, before the loop; each step renders and encodes the image
once; the identity network runs only when l_ID > 0; a batch of B manipulations runs at
once, each with its own losses.

Adaptive layer masking (Eq. 8). Read literally, Eq. 8 is degenerate: minimising
sum_i g_i d_i (d_i = ||w_i - w0_i||^2) over a free g drives g to 0, and over a simplex puts
all of g on the layer that moved least, leaving every other layer unregularised. The kit
reads g as a gate with a prior: g_i in (0, 1] pays rho (g_i - 1 - log g_i) for releasing
layer i, so

    L_reg = R_i [ g_i d_i + rho (g_i - 1 - log g_i) ],  minimised over g each step:
    g_i = rho / (rho + d_i),   L_reg = R_i rho log(1 + d_i / rho)

(R: sum, or the mean of Eq. 8's 1/L). A layer that has not moved is fully held (g = 1,
plain L2 near the start); a layer the edit moves far is released in proportion (g halves
at d_i = rho), and no layer is ever left unregularised. g is optimised exactly at each step
(its closed form, by the envelope theorem the gradient on w is g_i times that of d_i), so it
follows w without the lag or the initial value of a learnt parameter. rho is
`mask_scale` times the latent width (a per-coordinate squared distance).
Measured (benchmarks/bench_masking.py; l_sim swept, curves of emotion change as the guidance
space reads it against RMS pixel change, compared at equal emotion change): at rho = 0.1 per
coordinate the gate lands within 3 % of plain L2 (photo grader, 8 starts: 1.03x farther toward
happy, 0.97x toward sad; tiny StyleGAN2, 3 starts x 2 targets: 0.98x, 0.99x). It does not keep
the image measurably closer; at rho = 0.01 it was up to 1.23x farther. `layer_masking: false`
gives Eq. 7.
Emotion directions (`directions`, `emotion_directions`; the offline profile's faces). The
guiding network's gradient at one image holds, besides the emotion, changes particular to that
image that the network alone reads as emotion. The edit can be kept to the span of the mean
gradients of the network's emotion terms over many sampled images, where those cancel: the
image is rendered from w0 + P (w - w0), P the projection on that span, and the result is that
latent. Measured on the 64 px DCGAN faces (FINDINGS.md, start study): faces moved against the song,
as an independent judge reads them, 2.7 % of the time freely and never beyond 0.175 within the
directions, which also moved more faces toward it (45 % against 37 %).

The official code's alternative (`layer_masking="heuristic"`: sigmoid gates on the first
14 layers, nudged by -0.1 v (1 - v) after every step; kuai-lab/sound-guided
`optimization/run_optimization.py:103-109`, EmoStyle `run_optimization_comprehensive.py:298-302`)
is never on in the authors' runs: its flag is `type=bool`, default False, and no run
script passes it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .parts import EmbeddingSpace, Generator, IdentityLoss
from .progress import progress_bar

__all__ = ["COARSE_GRID", "Method", "METHODS", "MANIPULATE_METHODS", "GuidanceError", "GuidanceResult", "coarse_change", "emotion_directions",
           "guide", "jittered_view", "lr_at", "method", "method_targets", "MASKINGS", "REDUCTIONS"]

TERMS = ("audio", "music", "text")
MASKINGS = ("gate", "heuristic", "off")
REDUCTIONS = ("sum", "mean")


@dataclass(frozen=True)
class Method:
    """A method of the paper as a weighting of the L_cos terms (l_Aud, l_Mus, l_Tex).

    `official_text` names the target that the authors' script actually compares in its
    "text" slot when that differs from the text (a bug of `criteria/soundclip_loss.py`);
    `method_targets(..., compat="official")` reproduces it.
    """

    name: str
    title: str
    audio: float
    music: float
    text: float
    source: str  # the authors' script and line this weighting comes from
    official_text: str | None = None

    def weights(self) -> dict[str, float]:
        return {"audio": self.audio, "music": self.music, "text": self.text}


# Every script of AndreJJXu/EmoStyle_2 (commit e7f23b6) calls one branch of
# criteria/soundclip_loss.py (identical in AndreJJXu/EmoStyle) or criteria/cliip_loss.py;
# the branch fixes the weights. All other settings (lr 0.1, truncation 0.7, 300 steps,
# l_sim / l_ID, the start latent of the EmoStyle run) are shared by the run_*.sh scripts.
METHODS = {
    m.name: m
    for m in (
        Method("emostyle", "EmoStyle", 0.6, 0.2, 0.2,
               "run_optimization_comprehensive.py:338 -> soundclip_loss.py:85-89"),
        Method("styleclip", "StyleCLIP", 0.0, 0.0, 1.0,  # the lyrics as the text prompt
               "StyleCLIP.py:333 -> cliip_loss.py:87-89"),
        Method("lee", "Lee et al.", 1.0, 0.0, 0.0,  # audio only
               "Lee.py:331 -> soundclip_loss.py:60-62"),
        # The script passes the music where the audio goes; the branch weighs it 0.8 and the
        # text 0.2, but line 70 compares the image with its first input again, not the text.
        Method("wo-audio", "EmoStyle w/o Audio", 0.0, 0.8, 0.2,
               "run_optimization_wo_audio.py:334 -> soundclip_loss.py:69-71", official_text="music"),
        Method("wo-music", "EmoStyle w/o Music", 0.8, 0.0, 0.2,
               "run_optimization_wo_music.py:332 -> soundclip_loss.py:69-71", official_text="audio"),
        Method("wo-text", "EmoStyle w/o Text", 0.9, 0.1, 0.0,
               "run_optimization_wo_text.py:334 -> soundclip_loss.py:76-78"),
    )
}
# What `manipulate --method` (and a sweep's grid) takes: a weighting above, or EmoGen, which
# generates from the song's emotion category instead of guiding (emostyle.emogen).
MANIPULATE_METHODS = (*METHODS, "emogen")


def method(name: str) -> Method:
    """The method called `name`; a clear error lists the valid ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


def method_targets(m: Method, targets: dict, compat: str = "paper") -> dict:
    """The target embeddings that method `m` compares with: the given ones (compat="paper"),
    or with the text slot holding what the authors' script puts there (compat="official")."""
    if compat not in ("paper", "official"):
        raise ValueError(f"compat must be paper or official, got {compat!r}")
    targets = dict(targets)
    if compat == "official" and m.official_text:
        targets["text"] = targets.get(m.official_text)
    return targets


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
    mask: torch.Tensor | None  # g at the last step, (B, n_layers); None without masking
    seconds: float
    settings: dict = field(default_factory=dict)

    @property
    def term_weights(self) -> dict[str, float]:
        """Each loss term's weight in the total: the song's terms, then id, reg and coarse."""
        s = self.settings
        return {**s["weights"], "id": s["l_id"], "reg": s["l_sim"], "coarse": s["l_coarse"]}


class _Regulariser:
    """L_reg per item (B,) of latents w against w0, with or without layer masking."""

    def __init__(self, masking: str, reduction: str, n_layers: int, latent_dim: int, mask_scale: float):
        self.masking, self.reduction = masking, reduction
        self.rho = mask_scale * latent_dim  # the gate's prior, a per-layer squared distance
        self.heuristic = None  # the code's g, (B, min(14, L)), from ones at the first step
        self.n_heuristic = min(14, n_layers)  # its torch.ones(14) only reaches the first 14 layers
        self.gates: torch.Tensor | None = None

    def __call__(self, w: torch.Tensor, w0: torch.Tensor) -> torch.Tensor:
        d = ((w - w0) ** 2).sum(dim=2)  # (B, L): d_i = ||w_i - w0_i||^2
        if self.masking == "gate":
            per_layer = self.rho * torch.log1p(d / self.rho)  # min over g of g d + rho (g - 1 - log g)
            self.gates = (self.rho / (self.rho + d)).detach()
        elif self.masking == "heuristic":
            # The official code's loop (run_optimization_comprehensive.py:299-302): gate the first
            # 14 layers by sigmoid(g_i), then g_i -= 0.1 v (1 - v) with v that layer's value.
            if self.heuristic is None:
                self.heuristic = torch.ones(d.shape[0], self.n_heuristic, device=d.device)
            gate = torch.sigmoid(self.heuristic)
            per_layer = gate * d[:, : self.n_heuristic]
            value = per_layer.detach()
            self.heuristic = self.heuristic - 0.1 * value * (1 - value)
            self.gates = gate
        else:
            per_layer = d
        return per_layer.sum(dim=1) if self.reduction == "sum" else per_layer.mean(dim=1)


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
    l_coarse: float = 0.0,
    identity: IdentityLoss | None = None,
    identity_gradient: bool = True,
    layer_masking: str = "gate",
    mask_scale: float = 0.1,
    reg_reduction: str = "sum",
    frame_every: int = 25,
    directions: torch.Tensor | None = None,
    jitter: float = 0.0,
    progress: bool = True,
) -> GuidanceResult:
    """Optimise the latents `start` (B, n_layers, dim) toward the target embeddings.

    `targets` maps "audio", "music", "text" to embeddings (1 or B, D) computed once by the
    caller; `weights` gives l_Aud, l_Mus, l_Tex. `layer_masking` is "gate" (Eq. 8 as the
    module docstring reads it), "heuristic" (the official code's) or "off" (Eq. 7);
    `reg_reduction` sums L_reg over layers (Eq. 7 and the official code) or averages it
    (Eq. 8's 1/L). `identity_gradient=False` computes L_ID without a gradient, as the
    official code does (its IDLoss detaches the generated image). `directions`: an orthonormal
    basis (k, n_layers * dim) that the edit keeps to (`emotion_directions`): the image is
    rendered from the start plus the projection of the latents' offset on it, and that is the
    result; None: the latents move freely, as in the paper. `jitter` > 0: the space reads, at
    each step, a view of each image mirrored at random and shifted and scaled by up to that
    fraction of its side (`jittered_view`); 0 reads the image itself, as the paper does.
    `l_coarse` > 0 weighs `coarse_change`, which holds the image's light and layout and leaves
    its fine detail (an expression) free; 0, as the paper.
    """
    if steps < 1:
        raise GuidanceError(f"steps must be >= 1, got {steps}")
    if not (lr > 0 and math.isfinite(lr)):
        raise GuidanceError(f"learning rate must be a positive number, got {lr}")
    active = {k: float(v) for k, v in weights.items() if v}
    unknown = set(weights) - set(TERMS)
    if unknown:
        raise GuidanceError(f"unknown loss terms {sorted(unknown)}; valid: {', '.join(TERMS)}")
    if any(v < 0 or not math.isfinite(v) for v in list(active.values()) + [l_id, l_sim, l_coarse]):
        raise GuidanceError("loss weights must be finite and non-negative")
    if not active:
        raise GuidanceError("all of l_Aud, l_Mus, l_Tex are zero: nothing guides the image")
    missing = [k for k in active if k not in targets or targets[k] is None]
    if missing:
        raise GuidanceError(f"weights given for {missing} but no target embedding for them")
    if l_id > 0 and identity is None:
        raise GuidanceError("l_ID > 0 but no identity network was given")
    if layer_masking not in MASKINGS:
        raise GuidanceError(f"layer_masking must be one of {', '.join(MASKINGS)}; got {layer_masking!r}")
    if reg_reduction not in REDUCTIONS:
        raise GuidanceError(f"reg_reduction must be one of {', '.join(REDUCTIONS)}; got {reg_reduction!r}")
    if not (mask_scale > 0 and math.isfinite(mask_scale)):
        raise GuidanceError(f"mask_scale must be a positive number, got {mask_scale}")
    if not (0 <= jitter < 0.5):
        raise GuidanceError(f"jitter is a fraction of the image side in [0, 0.5), got {jitter}")
    if start.dim() != 3:
        raise GuidanceError(f"start latents must be (B, n_layers, dim), got shape {tuple(start.shape)}")
    if directions is not None and (directions.dim() != 2 or directions.shape[1] != start[0].numel()):
        raise GuidanceError(f"directions must be (k, {start[0].numel()}) for latents of shape "
                            f"{tuple(start.shape[1:])}, got {tuple(directions.shape)}")

    begun = time.perf_counter()
    w0 = start.detach()
    free = w0.clone().requires_grad_(True)  # what Adam moves
    basis = None if directions is None else directions.to(w0)

    def edited(latents):  # the latents the image is rendered from: the start plus the kept offset
        if basis is None:
            return latents
        return w0 + ((latents - w0).flatten(1) @ basis.T @ basis).view_as(w0)

    batch, n_layers, latent_dim = w0.shape
    regulariser = _Regulariser(layer_masking, reg_reduction, n_layers, latent_dim, mask_scale) if l_sim > 0 else None
    optimizer = torch.optim.Adam([free], lr=lr)
    targets = {k: targets[k].detach() for k in active}

    with torch.no_grad():
        start_images = generator.render(w0)
    reference = start_images if l_id > 0 else None
    history: dict[str, list[list[float]]] = {k: [] for k in [*active, "id", "reg", "coarse", "total"]}
    frames = []

    bar = progress_bar(range(steps), desc="guidance", disable=not progress)
    for step in bar:
        optimizer.param_groups[0]["lr"] = lr_at(step / steps, lr)
        w = edited(free)
        images = generator.render(w)
        reading = space.guidance_reading(jittered_view(images, jitter) if jitter > 0 else images)
        total = space.guidance_loss(reading, [(active[k], targets[k]) for k in active])
        with torch.no_grad():  # each term's own loss, for the record; the total above is what guides
            terms = {k: space.distance(reading, targets[k]) for k in active}
        if l_id > 0:
            terms["id"] = identity(images if identity_gradient else images.detach(), reference)
            total = total + l_id * terms["id"]
        if regulariser is not None:
            terms["reg"] = regulariser(w, w0)
            total = total + l_sim * terms["reg"]
        if l_coarse > 0:
            terms["coarse"] = coarse_change(images, start_images)
            total = total + l_coarse * terms["coarse"]
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
        bar.set_postfix(loss=f"{total.mean().item():.4f}", refresh=False)  # shown at the bar's next redraw

    with torch.no_grad():
        w = edited(free)
        final = generator.render(w)
    frames.append((steps, final.detach().cpu()))
    history = {k: v for k, v in history.items() if v}
    mask = regulariser.gates.cpu() if regulariser is not None and regulariser.gates is not None else None
    return GuidanceResult(
        latents=w.detach(), start_latents=w0, images=final.detach(), start_images=start_images.detach(),
        history=history, frames=frames, mask=mask, seconds=time.perf_counter() - begun,
        settings=dict(steps=steps, lr=lr, l_id=l_id, l_sim=l_sim, l_coarse=l_coarse, weights=active,
                      layer_masking=layer_masking, mask_scale=mask_scale, reg_reduction=reg_reduction,
                      identity_gradient=identity_gradient, directions=0 if basis is None else len(basis), jitter=jitter),
    )


# The coarse layout of an image: its means over a COARSE_GRID x COARSE_GRID grid of blocks (an
# 8 px block of the offline 64 px faces, about the width of an eye).
COARSE_GRID = 8


def coarse_change(images: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """(B,) mean squared change of each image's coarse layout (`COARSE_GRID` block means per
    channel, images in [-1, 1]) from its start's. Light and pose move the block means of the
    whole face; an expression moves a few pixels of the mouth and brows, which a block's mean
    barely sees. Where the guiding mesh read an offline face the song's way and the judge read it
    against the song, the face had often darkened or turned (FINDINGS.md, "Not right yet")."""
    def coarse(x):
        return F.adaptive_avg_pool2d(x, COARSE_GRID)
    return (coarse(images) - coarse(start)).square().mean(dim=(1, 2, 3))


def jittered_view(images: torch.Tensor, jitter: float) -> torch.Tensor:
    """Each image (B, 3, H, W) mirrored with chance 1/2, shifted by up to `jitter` of its side
    and scaled by up to 1 +- `jitter` (torch's random state), edges repeated; differentiable.
    A change that one network reads as emotion in one exact image can be particular to its
    pixels (an adversarial pattern) and invisible to people and other networks; a change that
    reads the same from views a pixel or two apart, and mirrored, as an expression does, is
    less likely to be one (expectation over transformation, Athalye et al. 2018)."""
    b = images.shape[0]
    u = torch.rand(b, 4, device=images.device) * 2 - 1
    scale = 1 + jitter * u[:, 0]
    mirror = torch.where(u[:, 1] > 0, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = scale * mirror, scale
    theta[:, 0, 2], theta[:, 1, 2] = 2 * jitter * u[:, 2], 2 * jitter * u[:, 3]  # grid units span 2 per side
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def emotion_directions(generator: Generator, space: EmbeddingSpace, n: int = 1024, seed: int = 0,
                       batch: int = 128, progress: bool = True) -> torch.Tensor:
    """An orthonormal basis (k, n_layers * dim) of the latent directions along which the guiding
    space's reading of each of its emotion terms (`EmbeddingSpace.emotion_readings`) rises on
    average: each term's gradient with respect to the latent, averaged over `n` latents drawn
    with `seed`. InterFaceGAN (Shen et al. 2020) edits a face along a latent direction that
    separates an attribute over many sampled faces; here the guiding network's mean gradient
    gives one direction per emotion term. A gradient at one face also holds changes particular
    to that face, which the guiding network reads as emotion and a person may not; averaged
    over many faces those cancel and the shared ones stay. `progress`: a bar counting the latents
    (minutes on a CPU)."""
    rng = torch.Generator().manual_seed(seed)
    total = None
    bar = progress_bar(total=n, desc="emotion directions", unit="latent", disable=not progress)
    for first in range(0, n, batch):
        latents = generator.sample(min(batch, n - first), rng).detach().requires_grad_(True)
        readings = space.emotion_readings(generator.render(latents))  # (b, terms)
        grads = [torch.autograd.grad(readings[:, k].sum(), latents, retain_graph=k + 1 < readings.shape[1])[0]
                 for k in range(readings.shape[1])]
        summed = torch.stack([g.flatten(1).sum(0) for g in grads])  # (terms, n_layers * dim)
        total = summed if total is None else total + summed
        bar.update(len(latents))
    bar.close()
    basis, _ = torch.linalg.qr((total / n).T.double())  # orthonormal columns spanning the mean gradients
    return basis.T.float().detach()
