"""Alignment, identity, latent distance and emotion agreement on hand-checkable inputs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emostyle.parts import EmbeddingSpace, IdentityLoss
from emostyle.scoring import metrics
from emostyle.scoring.metrics import (alignment, emotion_agreement, identity_similarity, latent_distance,
                                      valence_shift)


class ScaledCosine(EmbeddingSpace):
    name, dim = "scaled", 3

    def encode_image(self, images):
        return images.flatten(1)[:, :3]

    def encode_audio(self, path):
        raise NotImplementedError

    def encode_text(self, text):
        raise NotImplementedError

    def similarity(self, x, y):
        return 10 * F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T

    def distance(self, image_emb, target):
        return 1 - F.cosine_similarity(image_emb, target)


class FlatCosine(IdentityLoss):
    def features(self, images):
        return images.flatten(1)


def test_alignment():
    x = torch.tensor([[1.0, 0, 0], [0, 2.0, 0]])
    one = torch.tensor([[1.0, 1.0, 0]])
    torch.testing.assert_close(alignment(x, one), torch.tensor([2**-0.5, 2**-0.5]))
    torch.testing.assert_close(alignment(x, x.flip(0)), torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(alignment(x, one, ScaledCosine()), torch.tensor([10 * 2**-0.5] * 2))
    torch.testing.assert_close(alignment(x, torch.tensor([[3.0, 0, 0], [0, 0, 1.0]]), ScaledCosine()),
                               torch.tensor([10.0, 0.0]))  # paired targets: the diagonal
    with pytest.raises(ValueError, match=r"\(B or 1, dim\)"):
        alignment(x, torch.zeros(3, 3))


def test_identity_and_latent_distance():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    torch.testing.assert_close(identity_similarity(images, images, FlatCosine()), torch.ones(2))
    torch.testing.assert_close(identity_similarity(images, -images, FlatCosine()), -torch.ones(2))
    feats = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(identity_similarity(feats, torch.tensor([[0.0, 1.0], [2.0, 2.0]])),
                               torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="features"):
        identity_similarity(images, images)

    w0 = torch.zeros(2, 14, 512)
    w = w0.clone()
    w[0, 3, :4] = 1.0  # |w - w0| = 2
    torch.testing.assert_close(latent_distance(w, w0), torch.tensor([2.0, 0.0]))
    with pytest.raises(ValueError, match="one shape"):
        latent_distance(w, w0[:, :1])


def test_face_distance_reads_the_saved_images():
    """The distance of the recognizer's features of the 8-bit images: a change that rounds away is
    no change, one grey level everywhere is sqrt(pixels) levels of 127.5."""
    recognizer = FlatCosine()  # features: the pixels themselves
    images = torch.randint(0, 255, (2, 3, 4, 4), generator=torch.Generator().manual_seed(1)).float() / 127.5 - 1
    torch.testing.assert_close(metrics.face_distance(images + 0.2 / 127.5, images, recognizer), torch.zeros(2))
    torch.testing.assert_close(metrics.face_distance(images + 1 / 127.5, images, recognizer),
                               torch.full((2,), 48 ** 0.5 / 127.5))
    with pytest.raises(ValueError, match="one shape"):
        metrics.face_distance(images, images[:1], recognizer)


def test_emotion_agreement():
    before, after = torch.tensor([0.1, 0.1, 0.5, 0.5]), torch.tensor([0.4, 0.0, 0.2, 0.5])
    torch.testing.assert_close(valence_shift(before, after, "positive"), after - before)
    torch.testing.assert_close(emotion_agreement(before, after, "positive"), torch.tensor([1.0, 0, 0, 0]))
    labels = ["positive", "negative", "negative", "negative"]
    torch.testing.assert_close(emotion_agreement(before, after, labels), torch.tensor([1.0, 1, 1, 0]))
    with pytest.raises(ValueError, match="valid: positive, negative, neutral"):
        emotion_agreement(before, after, "Positive.")
    # A neutral song (a sound without lyrics) asks for no direction; NaN readings stay NaN.
    assert emotion_agreement(before, after, "neutral").isnan().all()
    unread = torch.tensor([float("nan"), 0.1, 0.5, 0.5])
    torch.testing.assert_close(emotion_agreement(unread, after, "positive"), torch.tensor([float("nan"), 0, 0, 0]),
                               equal_nan=True)
    with pytest.raises(ValueError, match="3 polarity labels for 4"):
        emotion_agreement(before, after, labels[:3])
    # Within the judge's resolution a move is no agreement, whichever way it went (shifts 0.3, 0.1, 0.3, 0).
    torch.testing.assert_close(emotion_agreement(before, after, labels, resolution=0.2), torch.tensor([1.0, 0, 1, 0]))
    with pytest.raises(ValueError, match="non-negative"):
        emotion_agreement(before, after, labels, resolution=float("nan"))


def test_space_valence_reads_happy_above_sad_faces_in_the_affect_space():
    from emostyle import registry
    from emostyle.models.dcgan import load_dcgan
    from emostyle.models.fer import face_input
    from emostyle.scoring.metrics import space_valence
    from emostyle.spaces.affect import AffectSpace

    space = AffectSpace("face")
    dcgan = load_dcgan(registry.path("dcgan-faces"))
    images = dcgan.render(dcgan.sample(16, torch.Generator().manual_seed(0))).detach()
    probs = space.fer(face_input(images)).softmax(1)
    v = space_valence(images, space)
    happiest, saddest = int(probs[:, 3].argmax()), int(probs[:, 4].argmax())
    assert v.shape == (16,) and v[happiest] > v[saddest]


def test_target_valences_say_which_way_each_of_a_songs_targets_pulls():
    """Read as images are (happy minus sad in the guidance space): lyrics of either feeling, a
    target the song lacks (None) stays None, and a target within the neutral radius pulls nowhere."""
    from emostyle.scoring.metrics import target_valences
    from emostyle.spaces.affect import AffectSpace

    space = AffectSpace("scene")  # the text and the PAD targets need no face network
    happy, sad = (space.encode_text(t) for t in ("we laugh and dance in the sun", "I cry alone, my heart is broken"))
    pulls = target_valences({"audio": torch.tensor([[-0.2, -0.1, 0.0]]), "music": None, "text": happy}, space)
    assert pulls["audio"] < 0 < pulls["text"] and pulls["music"] is None
    assert target_valences({"text": sad, "audio": torch.tensor([[0.001, 0.0, 0.0]])}, space)["text"] < 0
    assert abs(target_valences({"audio": torch.tensor([[0.001, 0.0, 0.0]])}, space)["audio"]) < 0.05


class _FirstColumn:
    """A judge whose valence is the mean grey level of the image's first column, over 255."""

    name = "first column"

    def read_tensor(self, images):
        from emostyle.parts import to_uint8

        return {"valence": to_uint8(images)[:, :, 0].mean(axis=(1, 2)) / 255}


class _Blind(_FirstColumn):
    def read_tensor(self, images):
        return {"valence": np.full(len(images), np.nan)}


def test_judge_resolution_is_the_largest_change_a_one_pixel_shift_makes():
    """A ramp of 10 grey levels per column: moving it by one pixel changes the first column by
    10 levels one way, by nothing the other way (edge replicated) or vertically."""
    levels = torch.arange(8, dtype=torch.float32).mul(10).view(1, 1, 1, 8).expand(2, 3, 8, 8)
    images = levels / 127.5 - 1
    assert metrics.judge_resolution(images, _FirstColumn()) == pytest.approx(10 / 255, abs=1e-6)
    assert metrics.judge_resolution(torch.zeros(2, 3, 8, 8), _FirstColumn()) == 0.0
    assert np.isnan(metrics.judge_resolution(images, _Blind()))


def test_pixel_change_counts_grey_levels_of_the_saved_images():
    def level(n):  # the value that is saved as 8-bit level n
        return n / 127.5 - 1

    before = torch.full((2, 3, 4, 4), level(100))
    after = before.clone()
    after[0] = level(101)  # one level up everywhere
    after[1, :, :2] = 1.0  # half the image to white: 155 levels there
    assert torch.allclose(metrics.pixel_change(before, after), torch.tensor([1.0, 77.5]))
    assert metrics.pixel_change(before, before + 0.001).abs().max() == 0  # under half a level: unseen
