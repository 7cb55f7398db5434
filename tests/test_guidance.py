"""The guidance loop (paper Eq. 4-8) on small random networks behind the part interfaces."""

import math

import pytest
import torch

from emostyle.guidance import METHODS, GuidanceError, guide, lr_at, method
from emostyle.parts import EmbeddingSpace, Generator
from emostyle.retrieval import retrieve


class ConvGenerator(Generator):
    """A random two-layer-latent generator: W+ (B, 4, 8) -> (B, 3, 16, 16) in [-1, 1]."""

    name = "toy"
    n_layers, latent_dim, resolution = 4, 8, 16

    def __init__(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(4, 8, 3 * 16 * 16, generator=g) / 8

    def sample(self, n, generator):
        return torch.randn(n, 1, 8, generator=generator).repeat(1, 4, 1)

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


def _start(n=1, seed=0):
    return ConvGenerator().sample(n, torch.Generator().manual_seed(seed))


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


def test_layer_masking_weights_receive_gradients_and_change():
    result = guide(ConvGenerator(), ToySpace(), _start(1), _targets(), {"audio": 1.0},
                   steps=30, lr=0.1, l_sim=0.5, layer_masking="paper", progress=False)
    assert result.mask is not None and result.mask.shape == (1, 4)
    assert result.mask.sum().item() == pytest.approx(4.0, rel=1e-5)  # g keeps its total
    assert (result.mask - 1).abs().max() > 1e-3  # and moved away from uniform


def test_official_masking_uses_the_code_heuristic_on_at_most_14_layers():
    result = guide(ConvGenerator(), ToySpace(), _start(1), _targets(), {"audio": 1.0},
                   steps=10, lr=0.1, l_sim=0.5, layer_masking="official", progress=False)
    assert result.mask.shape == (1, 4)
    assert (result.mask < torch.sigmoid(torch.tensor(1.0))).all()  # gates only decrease


def test_batch_gives_the_same_per_item_results_as_single_runs():
    start = _start(3, seed=5)
    kwargs = dict(steps=15, lr=0.1, l_sim=0.01, progress=False)
    together = guide(ConvGenerator(), ToySpace(), start, _targets(), METHODS["emostyle"].weights(), **kwargs)
    for i in range(3):
        alone = guide(ConvGenerator(), ToySpace(), start[i:i + 1], _targets(), METHODS["emostyle"].weights(), **kwargs)
        torch.testing.assert_close(together.latents[i:i + 1], alone.latents, atol=1e-4, rtol=1e-4)  # float summation order only


@pytest.mark.parametrize("name", list(METHODS))
def test_methods_switch_exactly_the_intended_terms(name):
    m = method(name)
    result = guide(ConvGenerator(), ToySpace(), _start(1), _targets(), m.weights(), steps=2, progress=False)
    active = {k for k, v in m.weights().items() if v}
    assert {k for k in result.history if k in ("audio", "music", "text")} == active
    assert "id" not in result.history and "reg" not in result.history


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
