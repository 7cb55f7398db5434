"""The guidance loop (paper Eq. 4-8) on small random networks behind the part interfaces."""

import math

import pytest
import torch

from emostyle.guidance import (METHODS, GuidanceError, emotion_directions, guide, jittered_view, lr_at, method,
                               method_targets)
from emostyle.parts import EmbeddingSpace, Generator, IdentityLoss
from emostyle.retrieval import rank, read_candidates, retrieve


class ConvGenerator(Generator):
    """A random linear-tanh generator: W+ (B, n_layers, 8) -> (B, 3, 16, 16) in [-1, 1]."""

    name = "toy"
    latent_dim, resolution = 8, 16

    def __init__(self, seed=0, n_layers=4):
        g = torch.Generator().manual_seed(seed)
        self.n_layers = n_layers
        self.weight = torch.randn(n_layers, 8, 3 * 16 * 16, generator=g) / 8

    def sample(self, n, generator):
        return torch.randn(n, 1, 8, generator=generator).repeat(1, self.n_layers, 1)

    def render(self, latents):
        x = torch.einsum("bld,ldp->bp", latents, self.weight)
        return torch.tanh(x).view(-1, 3, 16, 16)


class ToySpace(EmbeddingSpace):
    name, dim = "toy", 6

    def __init__(self, seed=1):
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.randn(3 * 16 * 16, 6, generator=g)

    def encode_image(self, images):
        return torch.nn.functional.normalize(images.flatten(1) @ self.proj, dim=-1)

    def encode_audio(self, path):
        raise NotImplementedError

    def encode_text(self, text):
        raise NotImplementedError

    def similarity(self, x, y):
        return x @ y.T

    def distance(self, image_emb, target):
        return 1 - (image_emb * target).sum(-1)


def _targets(seed=2):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.nn.functional.normalize(torch.randn(1, 6, generator=g), dim=-1)
            for k in ("audio", "music", "text")}


def _start(n=1, seed=0, n_layers=4):
    return ConvGenerator(n_layers=n_layers).sample(n, torch.Generator().manual_seed(seed))


def test_lr_schedule_matches_official_ramp():
    assert lr_at(0.0, 0.1) == 0.0
    assert lr_at(0.5, 0.1) == pytest.approx(0.1)
    assert lr_at(0.025, 0.1) == pytest.approx(0.05)
    # 0.5 - 0.5 cos(pi * (1 - 0.9) / 0.25)
    assert lr_at(0.9, 0.1) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(math.pi * 0.4)))


@pytest.mark.parametrize("term", ["audio", "music", "text"])
def test_optimisation_lowers_each_active_term(term):
    result = guide(ConvGenerator(), ToySpace(), _start(2), _targets(), {term: 1.0},
                   steps=40, lr=0.1, l_sim=0.001, progress=False)
    first, last = result.history[term][0], result.history[term][-1]
    assert all(b < a for a, b in zip(first, last))
    assert result.images.shape == (2, 3, 16, 16)
    assert result.latents.shape == (2, 4, 8)


def test_optimisation_lowers_the_total_loss():
    result = guide(ConvGenerator(), ToySpace(), _start(2), _targets(), METHODS["emostyle"].weights(),
                   steps=40, lr=0.1, l_sim=0.001, progress=False)
    first, last = result.history["total"][0], result.history["total"][-1]
    assert all(b < a for a, b in zip(first, last))
    assert result.history["reg"][0] == [0.0, 0.0] and min(result.history["reg"][-1]) > 0


class RecordingGenerator(ConvGenerator):
    """ConvGenerator that keeps every latent it renders: w0, then w at each step, then the final w."""

    def __init__(self, seed=0, n_layers=4):
        super().__init__(seed, n_layers)
        self.seen = []

    def render(self, latents):
        self.seen.append(latents.detach().clone())
        return super().render(latents)


def _layer_distances(gen, steps):
    """d_i = ||w_i - w0_i||^2 (B, L) at each step, from the latents the loop rendered."""
    w0 = gen.seen[0]
    return [((w - w0) ** 2).sum(dim=2) for w in gen.seen[1:steps + 1]]


def test_gate_is_the_minimiser_of_eq8_with_its_prior():
    """At every step L_reg = min over g in (0, 1] of sum_i g_i d_i + rho (g_i - 1 - log g_i), by brute force."""
    gen, steps, scale = RecordingGenerator(n_layers=6), 12, 0.05
    result = guide(gen, ToySpace(), _start(2, n_layers=6), _targets(), {"audio": 1.0}, steps=steps, lr=0.1,
                   l_sim=0.05, layer_masking="gate", mask_scale=scale, progress=False)
    rho = scale * gen.latent_dim
    grid = torch.linspace(1e-4, 1.0, 200001, dtype=torch.float64)  # step 5e-6
    moved = 0
    for step, d in enumerate(_layer_distances(gen, steps)):
        objective = grid * d.double()[..., None] + rho * (grid - 1 - torch.log(grid))  # (B, L, grid)
        best, where = objective.min(dim=-1)
        # float32 loop vs float64 grid: relative 1e-5 covers the float32 sums of 8 squares and the log
        torch.testing.assert_close(torch.tensor(result.history["reg"][step], dtype=torch.float64), best.sum(1),
                                   rtol=1e-5, atol=1e-9)
        moved += int((d > 0).sum())
    assert moved > 0
    # The last step's gates are the argmin (within the grid step and float32 rounding).
    torch.testing.assert_close(result.mask.double(), grid[where], rtol=0, atol=2e-5)
    assert (result.mask > 0).all() and (result.mask <= 1).all()


@pytest.mark.parametrize("masking", ["gate", "off"])
def test_reg_reduction_sum_is_l_times_mean(masking):
    """Eq. 7 / the code sum over layers, Eq. 8 averages (1/L): same run, L-fold values."""
    runs = {r: guide(ConvGenerator(n_layers=6), ToySpace(), _start(1, n_layers=6), _targets(), {"audio": 1.0},
                     steps=3, l_sim=0.01, layer_masking=masking, reg_reduction=r, progress=False)
            for r in ("sum", "mean")}
    # Step 0 has lr 0 and step 1 starts at d = 0 (no L_reg gradient), so both runs reach the
    # same latents at step 2; only the reduction differs.
    total, mean = runs["sum"].history["reg"][2][0], runs["mean"].history["reg"][2][0]
    assert total > 0 and total == pytest.approx(6 * mean, rel=1e-6)


@pytest.mark.slow
def test_layer_masking_holds_every_layer_over_a_run(repo_root):
    """The tiny profile as users run it (EmoStyle, masking on), from 3 starts: every W+ layer of
    every start moves less than without L_reg. A collapse onto one layer (the literal Eq. 8 over
    a simplex) or g -> 0 (over a free g) would leave the other layers as free as with l_sim = 0."""
    from emostyle.config import load_config
    from emostyle.pipeline import Pipeline

    pipe = Pipeline.from_config(load_config("tiny", {"guidance.l_sim": 0.05, "guidance.steps": 30}))
    song = repo_root / "data/songs/happy_sunshine.wav"
    targets = pipe.targets([song], [song], ["a happy sunny day"])
    start = pipe.generator.sample(3, torch.Generator().manual_seed(3))
    masked = pipe.guide(start, targets, progress=False)
    free = Pipeline.from_config(pipe.config.with_overrides({"guidance.l_sim": 0.0})).guide(start, targets, progress=False)
    d_masked = ((masked.latents - start) ** 2).sum(2)
    d_free = ((free.latents - start) ** 2).sum(2)
    assert masked.mask.shape == (3, pipe.generator.n_layers) and free.mask is None
    assert (d_masked < 0.9 * d_free).all(), d_masked / d_free
    assert (masked.mask < 1).all()  # and every layer's gate did release it somewhat


@pytest.mark.slow
def test_coarse_hold_keeps_light_and_layout_and_the_guidance_still_pulls(repo_root):
    """guidance.l_coarse as users set it, on the tiny profile (EmoStyle, identity and L_reg as
    the profile has them), from 6 starts: every image's coarse layout (its block means) changes
    less than without the hold, its loss toward the song still falls, and the term starts at 0."""
    from emostyle.guidance import coarse_change
    from emostyle.pipeline import Pipeline

    base = Pipeline.from_config("tiny", {"guidance.steps": 30})
    held_pipe = Pipeline.from_config(base.config.with_overrides({"guidance.l_coarse": 1.0}))
    song = repo_root / "data/songs/happy_sunshine.wav"
    targets = base.targets([song], [song], ["a happy sunny day"])
    start = base.generator.sample(6, torch.Generator().manual_seed(11))
    free, held = base.guide(start, targets, progress=False), held_pipe.guide(start, targets, progress=False)
    free_change, held_change = coarse_change(free.images, free.start_images), coarse_change(held.images, held.start_images)
    assert (held_change < 0.5 * free_change).all(), held_change / free_change
    assert held.history["coarse"][0] == [0.0] * 6 and "coarse" not in free.history
    assert all(a < b for a, b in zip(held.history["audio"][-1], held.history["audio"][0]))
    assert held.settings["l_coarse"] == 1.0 and free.settings["l_coarse"] == 0.0
    with pytest.raises(GuidanceError, match="non-negative"):
        guide(ConvGenerator(), ToySpace(), _start(), _targets(), {"audio": 1.0}, l_coarse=-1.0, steps=1, progress=False)


def test_heuristic_masking_follows_the_official_loop_on_the_first_14_layers():
    """layer_masking="heuristic" against the code's loop, transcribed from EmoStyle
    run_optimization_comprehensive.py:298-302, on 18 layers (the code's torch.ones(14) covers 14)."""
    gen, steps = RecordingGenerator(n_layers=18), 8
    result = guide(gen, ToySpace(), _start(1, n_layers=18), _targets(), {"audio": 1.0}, steps=steps, lr=0.1,
                   l_sim=0.5, layer_masking="heuristic", progress=False)
    g = torch.ones(14)
    for step, d in enumerate(_layer_distances(gen, steps)):
        similarity_loss = 0.0
        last = torch.sigmoid(g)
        for idx in range(14):
            layer_per_loss = torch.sigmoid(g[idx]) * d[0, idx]
            similarity_loss += layer_per_loss
            g[idx] = g[idx] - 0.1 * layer_per_loss.item() * (1 - layer_per_loss.item())
        assert result.history["reg"][step][0] == pytest.approx(float(similarity_loss), rel=1e-5, abs=1e-7)
    assert result.mask.shape == (1, 14)
    torch.testing.assert_close(result.mask[0], last)


class PixelIdentity(IdentityLoss):
    def features(self, images):
        return images.flatten(1)


def test_identity_reads_its_reference_once_and_again_when_it_changes():
    """The guidance compares every step with the same start images: their features are read once,
    without a gradient, and read again for another reference or one changed in place."""
    seen = []

    class Counting(PixelIdentity):
        def features(self, images):
            seen.append(images.shape[0])
            return super().features(images)

    loss, images = Counting(), torch.randn(3, 3, 8, 8, requires_grad=True)
    reference = torch.randn(3, 3, 8, 8)
    first = loss(images, reference)
    torch.testing.assert_close(loss(images, reference), first)
    assert len(seen) == 3  # the reference once, the images twice
    reference.add_(1.0)  # in place: the cached features are stale
    assert not torch.allclose(loss(images, reference), first)
    other = torch.randn(1, 3, 8, 8)  # one reference for every image
    torch.testing.assert_close(loss(images, other), PixelIdentity()(images, other.expand(3, -1, -1, -1)))
    assert len(seen) == 3 + 2 + 2  # each new reference once more, with the images
    first.sum().backward()
    assert images.grad is not None
    with pytest.raises(ValueError, match="reference batch 2"):
        loss(images, torch.randn(2, 3, 8, 8))


def test_identity_without_gradient_is_recorded_but_does_not_steer():
    """The official IDLoss detaches the generated image (criteria/id_loss.py:31): L_ID is computed, not followed."""
    kwargs = dict(steps=6, lr=0.1, progress=False)
    plain = guide(ConvGenerator(), ToySpace(), _start(), _targets(), {"audio": 1.0}, **kwargs)
    detached = guide(ConvGenerator(), ToySpace(), _start(), _targets(), {"audio": 1.0}, l_id=5.0,
                     identity=PixelIdentity(), identity_gradient=False, **kwargs)
    followed = guide(ConvGenerator(), ToySpace(), _start(), _targets(), {"audio": 1.0}, l_id=5.0,
                     identity=PixelIdentity(), **kwargs)
    assert torch.equal(detached.latents, plain.latents)
    assert max(detached.history["id"][-1]) > 0
    assert not torch.equal(followed.latents, plain.latents)


def test_batch_gives_the_same_per_item_results_as_single_runs():
    start = _start(3, seed=5)
    kwargs = dict(steps=15, lr=0.1, l_sim=0.01, progress=False)
    together = guide(ConvGenerator(), ToySpace(), start, _targets(), METHODS["emostyle"].weights(), **kwargs)
    for i in range(3):
        alone = guide(ConvGenerator(), ToySpace(), start[i:i + 1], _targets(), METHODS["emostyle"].weights(), **kwargs)
        torch.testing.assert_close(together.latents[i:i + 1], alone.latents, atol=1e-4, rtol=1e-4)  # float summation order only


# The authors' L_cos for each script, transcribed from AndreJJXu/EmoStyle_2 (commit e7f23b6),
# sim(x) = (image . x) * exp(0.07) with unit embeddings; "text" is the lyrics/description.
OFFICIAL_LOSS = {
    # run_optimization_comprehensive.py:338 soundclip_loss(img, audio, music, text) -> criteria/soundclip_loss.py:85-89
    "emostyle": lambda s: 1 - s["audio"] * 0.6 - s["music"] * 0.2 - s["text"] * 0.2,
    # StyleCLIP.py:333 clip_loss(img, description) -> criteria/cliip_loss.py:87-89
    "styleclip": lambda s: 1 - s["text"],
    # Lee.py:331 soundclip_loss(img, audio) -> criteria/soundclip_loss.py:60-62
    "lee": lambda s: 1 - s["audio"],
    # run_optimization_wo_audio.py:334 soundclip_loss(img, music, None, text) -> soundclip_loss.py:69-71;
    # line 70 compares the image with the first input again: the music, not the text
    "wo-audio": lambda s: 1 - s["music"] * 0.8 - s["music"] * 0.2,
    # run_optimization_wo_music.py:332 soundclip_loss(img, audio, None, text) -> soundclip_loss.py:69-71
    "wo-music": lambda s: 1 - s["audio"] * 0.8 - s["audio"] * 0.2,
    # run_optimization_wo_text.py:334 soundclip_loss(img, audio, music, None) -> soundclip_loss.py:76-78
    "wo-text": lambda s: 1 - (s["audio"] * 0.9 + s["music"] * 0.1),
}

# The same branches as the authors meant them (compat="paper"): the text slot holds the text.
PAPER_WEIGHTS = {
    "emostyle": {"audio": 0.6, "music": 0.2, "text": 0.2},  # soundclip_loss.py:89
    "styleclip": {"audio": 0.0, "music": 0.0, "text": 1.0},  # cliip_loss.py:89
    "lee": {"audio": 1.0, "music": 0.0, "text": 0.0},  # soundclip_loss.py:62
    "wo-audio": {"audio": 0.0, "music": 0.8, "text": 0.2},  # soundclip_loss.py:71, music in the audio slot
    "wo-music": {"audio": 0.8, "music": 0.0, "text": 0.2},  # soundclip_loss.py:71
    "wo-text": {"audio": 0.9, "music": 0.1, "text": 0.0},  # soundclip_loss.py:78
}


def test_every_method_of_the_paper_is_there():
    assert set(METHODS) == set(OFFICIAL_LOSS) == set(PAPER_WEIGHTS)


@pytest.mark.parametrize("name", sorted(PAPER_WEIGHTS))
def test_method_weights_are_the_authors(name):
    assert method(name).weights() == PAPER_WEIGHTS[name]


@pytest.mark.parametrize("name", sorted(OFFICIAL_LOSS))
def test_official_compat_reproduces_each_script_loss(name):
    """sum_k l_k d(e, target_k) in the official CLIP space equals the script's loss, bugs included."""
    from emostyle.spaces.clip_space import tiny_clip_space

    space = tiny_clip_space(compat="official")
    g = torch.Generator().manual_seed(7)
    unit = lambda: torch.nn.functional.normalize(torch.randn(5, space.dim, generator=g), dim=-1)  # noqa: E731
    image, given = unit(), {k: unit() for k in ("audio", "music", "text")}
    sims = {k: (image * v).sum(-1) * math.exp(0.07) for k, v in given.items()}
    m = method(name)
    targets = method_targets(m, given, compat="official")
    ours = sum(w * space.distance(image, targets[k]) for k, w in m.weights().items() if w)
    # float32 dot products of unit vectors: a few ulps of 1
    torch.testing.assert_close(ours, OFFICIAL_LOSS[name](sims), rtol=0, atol=1e-6)
    assert method_targets(m, given, compat="paper") == given  # the paper's reading keeps each target


def test_same_seed_same_result():
    a = guide(ConvGenerator(), ToySpace(), _start(1), _targets(), {"audio": 1}, steps=5, progress=False)
    b = guide(ConvGenerator(), ToySpace(), _start(1), _targets(), {"audio": 1}, steps=5, progress=False)
    assert torch.equal(a.latents, b.latents)


def test_bad_settings_are_clear_errors():
    g, s, t = ConvGenerator(), ToySpace(), _targets()
    with pytest.raises(GuidanceError, match="all of l_Aud, l_Mus, l_Tex are zero"):
        guide(g, s, _start(), t, {"audio": 0, "music": 0, "text": 0}, steps=2, progress=False)
    with pytest.raises(GuidanceError, match="learning rate"):
        guide(g, s, _start(), t, {"audio": 1}, lr=-1, progress=False)
    with pytest.raises(GuidanceError, match="no identity network"):
        guide(g, s, _start(), t, {"audio": 1}, l_id=0.1, progress=False)
    with pytest.raises(GuidanceError, match="no target embedding"):
        guide(g, s, _start(), {"audio": t["audio"]}, {"music": 1}, progress=False)
    with pytest.raises(ValueError, match="valid methods"):
        method("stylegan")


def test_jittered_view_is_the_image_or_its_mirror_moved_a_little():
    torch.manual_seed(0)
    images = torch.rand(64, 3, 16, 16) * 2 - 1
    still = jittered_view(images, 1e-6)
    same = (still - images).abs().flatten(1).max(1).values < 1e-4
    mirrored = (still - images.flip(3)).abs().flatten(1).max(1).values < 1e-4
    assert (same ^ mirrored).all() and 10 < int(mirrored.sum()) < 54  # each a coin flip
    # a shift of up to jitter * side moves a vertical edge by at most that many pixels
    edge = torch.where(torch.arange(16) < 8, -1.0, 1.0).expand(64, 3, 16, 16)
    moved = jittered_view(edge, 0.125)
    columns = (moved[:, 0, 8] > 0).sum(1)  # pixels right of the edge (mirrored: left of it)
    assert ((columns - 8).abs() <= 0.125 * 16 * 1.125 + 1).all() and columns.unique().numel() > 2
    flat = jittered_view(torch.full((4, 3, 16, 16), 0.3), 0.2)
    assert torch.allclose(flat, torch.full_like(flat, 0.3))  # edges repeated, nothing comes in
    x = images[:2].clone().requires_grad_(True)
    jittered_view(x, 0.05).sum().backward()
    assert x.grad.abs().sum() > 0


def test_guidance_reading_jittered_views_still_lowers_the_loss_and_repeats_with_the_seed():
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(guide(ConvGenerator(), ToySpace(), _start(6), _targets(), METHODS["emostyle"].weights(),
                          steps=40, lr=0.1, l_sim=0.001, jitter=0.05, progress=False))
    space, targets = ToySpace(), _targets()

    def loss(images):  # of the images themselves, not of a view
        return sum(w * space.distance(space.encode_image(images), targets[k])
                   for k, w in METHODS["emostyle"].weights().items())

    assert (loss(runs[0].images) < loss(runs[0].start_images)).all()
    assert torch.equal(runs[0].latents, runs[1].latents) and runs[0].settings["jitter"] == 0.05
    with pytest.raises(GuidanceError, match="jitter"):
        guide(ConvGenerator(), ToySpace(), _start(), _targets(), {"audio": 1}, jitter=0.5, progress=False)


def test_nan_loss_names_step_and_term():
    t = _targets()
    t["music"] = torch.full((1, 6), float("nan"))
    with pytest.raises(GuidanceError, match=r"'music'.*step 0"):
        guide(ConvGenerator(), ToySpace(), _start(), t, {"audio": 0.5, "music": 0.5}, steps=3, progress=False)


def test_retrieval_returns_the_argmax_of_its_similarities():
    gen, space = ConvGenerator(), ToySpace()
    audio = _targets()["audio"]
    r = retrieve(gen, space, audio, n=7, batch=3, seed=4, progress=False)
    expected = space.similarity(space.encode_image(gen.render(r.latents)), audio)[:, 0]
    torch.testing.assert_close(r.scores, expected)
    assert r.best == int(expected.argmax())
    assert r.order[0].item() == r.best
    torch.testing.assert_close(r.probs.sum(), torch.tensor(1.0))
    again = retrieve(gen, space, audio, n=7, batch=7, seed=4, progress=False)
    torch.testing.assert_close(again.latents, r.latents)  # batching does not change the candidates


def test_candidates_read_once_rank_for_each_song_as_retrieval_draws_them():
    """`rank` over candidates read once (as the retrieved study reads each seed's for every song)
    gives each song the retrieval that drawing the candidates for it gives."""
    gen, space = ConvGenerator(), ToySpace()
    candidates = read_candidates(gen, space, n=7, batch=3, seed=4, progress=False)
    bests = set()
    for audio in (_targets()["audio"], _targets()["text"], -_targets()["audio"]):
        drawn, ranked = retrieve(gen, space, audio, n=7, batch=7, seed=4, progress=False), rank(candidates, space, audio)
        torch.testing.assert_close(ranked.scores, drawn.scores)
        torch.testing.assert_close(ranked.probs, drawn.probs)
        torch.testing.assert_close(ranked.best_latent, drawn.best_latent)
        bests.add(ranked.best)
    assert len(bests) > 1  # the songs chose different candidates: the ranking read each song


def test_directions_keep_the_edit_in_their_span_and_still_lower_the_loss():
    """`directions`: every latent the loop renders, and the result, is the start plus an offset
    in the basis' span (residual within float rounding of the offset); the loss still falls;
    with a basis of the whole latent the run is the free one."""
    basis = torch.linalg.qr(torch.randn(32, 3, generator=torch.Generator().manual_seed(3)))[0].T  # (3, 4 x 8)
    start, weights = _start(2), METHODS["emostyle"].weights()
    gen = RecordingGenerator()
    kept = guide(gen, ToySpace(), start, _targets(), weights, steps=40, lr=0.1, l_sim=0.001, directions=basis,
                 progress=False)
    for w in gen.seen + [kept.latents]:
        offset = (w - start).flatten(1)
        assert (offset - offset @ basis.T @ basis).norm() <= 1e-5 * max(1.0, float(offset.norm()))
    assert float((kept.latents - start).abs().max()) > 0.01 and kept.settings["directions"] == 3
    assert all(b < a for a, b in zip(kept.history["total"][0], kept.history["total"][-1]))
    free = guide(ConvGenerator(), ToySpace(), start, _targets(), weights, steps=40, lr=0.1, l_sim=0.001,
                 progress=False)
    whole = guide(ConvGenerator(), ToySpace(), start, _targets(), weights, steps=40, lr=0.1, l_sim=0.001,
                  directions=torch.eye(32), progress=False)
    torch.testing.assert_close(whole.latents, free.latents, atol=1e-4, rtol=0)
    with pytest.raises(GuidanceError, match=r"directions must be \(k, 32\)"):
        guide(ConvGenerator(), ToySpace(), start, _targets(), weights, steps=1, directions=torch.eye(8),
              progress=False)


def test_emotion_directions_hold_each_terms_rise_on_faces_they_were_not_drawn_from():
    """The offline DCGAN and FER: an orthonormal basis of seven directions from 128 sampled faces.
    On 128 other faces each emotion term's mean gradient lies mostly in its span (more than half
    its norm; a random 7-dimensional subspace of z's 100 holds sqrt(7/100) = 0.26 on average),
    and a step along the part of "happy" in the span raises P(happy) on most of them."""
    from emostyle.builders import build_generator
    from emostyle.config import load_config
    from emostyle.spaces.affect import AffectSpace

    generator, space = build_generator(load_config("offline"), "cpu"), AffectSpace()
    basis = emotion_directions(generator, space, n=128, seed=1)
    assert basis.shape == (7, 100)
    torch.testing.assert_close(basis @ basis.T, torch.eye(7), atol=1e-5, rtol=0)
    z = generator.sample(128, torch.Generator().manual_seed(2)).requires_grad_(True)
    readings = space.emotion_readings(generator.render(z))
    for k in range(7):
        mean = torch.autograd.grad(readings[:, k].sum(), z, retain_graph=True)[0].flatten(1).mean(0)
        assert float((mean @ basis.T @ basis).norm() / mean.norm()) > 0.5, k
    happy = torch.autograd.grad(readings[:, 3].sum(), z)[0].flatten(1).mean(0) @ basis.T @ basis
    with torch.no_grad():
        rise = space.emotion_readings(generator.render(z + 0.5 * happy / happy.norm()))[:, 3] - readings[:, 3]
    assert float(rise.mean()) > 0 and float((rise > 0).float().mean()) > 0.5, rise


def test_the_emotion_directions_bar_follows_progress(monkeypatch, tmp_path, capsys):
    """Building a pipeline with guidance.directions=emotions computes the directions the first
    time (minutes on the face mesh) under a bar; with progress off (`manipulate(progress=False)`)
    the bar stays hidden, as every other bar of the run does."""
    import shutil

    from emostyle import builders, registry
    from emostyle.pipeline import Pipeline

    free = {"guidance.face_reader": "fer", "guidance.directions": "free", "scoring.judge": "blendshapes"}
    Pipeline.from_config("offline", free)  # the parts, built from the kit's home before it is swapped below
    monkeypatch.setattr(registry, "home", lambda: tmp_path)  # no kept basis: computed here
    monkeypatch.setattr(builders, "DIRECTION_SAMPLES", 8)
    emotions = {**free, "guidance.directions": "emotions"}
    assert Pipeline.from_config("offline", emotions, progress=False).directions.shape == (7, 100)
    assert "emotion directions" not in capsys.readouterr().err
    for name in [k for k in builders._CACHE if k.startswith("directions")]:
        monkeypatch.delitem(builders._CACHE, name)
    shutil.rmtree(tmp_path / "cache" / "directions")
    Pipeline.from_config("offline", emotions)
    assert "emotion directions" in capsys.readouterr().err


def test_emotion_directions_need_a_space_with_emotion_terms():
    """guidance.directions=emotions on scenes (colour has no emotion terms): a one-line error
    that names the setting to change, raised while the pipeline is built."""
    from emostyle.pipeline import Pipeline

    scenes = {"domain": "scene", "generator.kind": "grader", "generator.weights": "photo-china",
              "generator.size": 128, "guidance.identity": "none", "guidance.l_id": 0.0,
              "guidance.directions": "emotions", "scoring.judge": "colour"}
    with pytest.raises(ValueError, match="set guidance.directions: free"):
        Pipeline.from_config("offline", scenes)
    assert Pipeline.from_config("offline", {**scenes, "guidance.directions": "free"}).directions is None


def test_retrieval_ranks_what_the_space_does_not_see_last():
    gen, space, audio = ConvGenerator(), ToySpace(), _targets()["audio"]
    free = retrieve(gen, space, audio, n=7, seed=4, progress=False)
    best_two = free.order[:2]
    sighted = ToySpace()
    sighted.min_confidence = 0.5  # as the face mesh's; it sees every candidate but the most similar one
    sighted.read_image = lambda x: (sighted.encode_image(x), torch.tensor(  # noqa: E731
        [0.2 if i == int(best_two[0]) else 0.9 for i in range(len(x))]))
    r = retrieve(gen, sighted, audio, n=7, batch=7, seed=4, progress=False)
    assert r.best == int(best_two[1]) and int(r.order[-1]) == int(best_two[0])
    assert r.probs[best_two[0]] == 0 and torch.isclose(r.probs.sum(), torch.tensor(1.0))
    assert "not seen" in r.caption(int(best_two[0])) and "p=" in r.caption(r.best)
    torch.testing.assert_close(r.scores, free.scores)  # the similarities themselves are not changed
    sighted.read_image = lambda x: (sighted.encode_image(x), torch.zeros(len(x)))  # noqa: E731
    blind = retrieve(gen, sighted, audio, n=7, batch=7, seed=4, progress=False)
    assert blind.best == free.best and torch.allclose(blind.probs, free.probs)  # none seen: all rank alike
