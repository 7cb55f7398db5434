"""ImageBind vision and audio branches and the ImageBind space (paper 3.1).

Expected data in tests/data, made with /tmp/ref_imagebind/make_expected.py (not in the repo):
the official facebookresearch/ImageBind code (commit 53680b0; torch 2.14.1, torchvision 0.29.1,
torchaudio 2.11.0, timm; pytorchvideo's clip sampler from its source; `torchaudio.load` replaced
by soundfile, which scales PCM the same way) was run on
- `imagebind_reduced_layout.json`: the state-dict keys and shapes of `ImageBindModel` at reduced
  sizes (vision 160 wide / 2 blocks / 2 heads, audio 128 / 2 / 2, output 64, other branches tiny);
- `imagebind_huge_layout.json`: the keys and shapes of `imagebind_huge()`;
- `imagebind_parity.npz`: `load_and_transform_audio_data` of drill.wav (all of it) and
  thunderstorm.wav (every 4th frame); torchvision's Resize(224, bicubic) + CenterCrop + CLIP
  Normalize of 3 seeded images (every 8th pixel); and the reduced model's audio and vision
  outputs for these inputs, after loading `random_checkpoint(5, **REDUCED)` (missing keys
  only in the text/depth/thermal/IMU branches, no unexpected key).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emostyle.models.imagebind import (HUGE, IGNORED_BRANCHES, TINY, ImageBind, imagebind_available,
                                       load_imagebind, random_checkpoint, tiny_imagebind)
from emostyle.spaces.imagebind_space import ImageBindSpace, audio_features, image_features

DATA = Path(__file__).parent / "data"
SEED = 5
REDUCED = dict(vision_dim=160, vision_blocks=2, audio_dim=128, audio_blocks=2, out_dim=64)
TOL_FEATURES, TOL_EMBEDDINGS = 1e-5, 1e-4


@pytest.fixture(scope="module")
def expected():
    return np.load(DATA / "imagebind_parity.npz")


def _is_ignored(key: str) -> bool:
    return key.split(".")[1] in IGNORED_BRANCHES


def _official_checkpoint(layout: dict, seed: int) -> dict:
    """A full checkpoint in the official layout: our random vision/audio weights, random others."""
    sd = random_checkpoint(seed, **REDUCED)
    g = torch.Generator().manual_seed(seed)
    for key, shape in layout.items():
        if _is_ignored(key):
            sd[key] = torch.randn(shape, generator=g)
    return sd


@pytest.fixture(scope="module")
def reduced_file(tmp_path_factory):
    layout = json.loads((DATA / "imagebind_reduced_layout.json").read_text())
    path = tmp_path_factory.mktemp("imagebind") / "imagebind_reduced.pth"
    torch.save(_official_checkpoint(layout, SEED), path)
    return path


@pytest.fixture(scope="module")
def reduced_space(reduced_file):
    return ImageBindSpace(load_imagebind(reduced_file), batch_size=2)


def _images(seed: int = 7) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(-1, 1, (3, 3, 180, 270)).astype(np.float32))


# --- checkpoint layout -------------------------------------------------------------------

def test_reduced_official_layout_loads_strictly(reduced_file):
    layout = json.loads((DATA / "imagebind_reduced_layout.json").read_text())
    model = load_imagebind(reduced_file)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: v for k, v in layout.items() if not _is_ignored(k)}
    assert ours == theirs
    skipped = {k.split(".")[1] for k in layout if k not in ours}
    assert skipped == set(IGNORED_BRANCHES)
    sd = torch.load(reduced_file, weights_only=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, sd[key], rtol=0, atol=0)


@pytest.mark.skipif(not (DATA / "imagebind_huge_layout.json").is_file(), reason="huge layout not stored")
def test_huge_layout_matches_official():
    layout = json.loads((DATA / "imagebind_huge_layout.json").read_text())
    with torch.device("meta"):
        model = ImageBind(**HUGE)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == {k: v for k, v in layout.items() if not _is_ignored(k)}
    assert sum(v.numel() for v in model.parameters()) > 6e8  # vision + audio of the 1.2 B model


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.update({"modality_heads.vision.3.weight": torch.zeros(1)}), "Unexpected key"),
    (lambda sd: sd.update({"logit_scale": torch.zeros(())}), "Unexpected key"),
    (lambda sd: sd.pop("modality_trunks.audio.blocks.0.attn.bias_k"), "Missing key"),
    (lambda sd: sd.update({"modality_heads.audio.2.weight": torch.zeros(64, 96)}), "size mismatch"),
    (lambda sd: sd.pop("modality_preprocessors.audio.rgbt_stem.proj.weight"), "not an ImageBind checkpoint"),
])
def test_wrong_checkpoint_is_a_clear_error(tmp_path, edit, message):
    sd = random_checkpoint(0, **TINY)
    sd["modality_trunks.text.blocks.0.attn.in_proj_weight"] = torch.zeros(3, 1)  # ignored by name
    edit(sd)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=message):
        load_imagebind(tmp_path / "bad.pth")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "page.pth").write_text("<!doctype html><html>quota exceeded</html>")
    with pytest.raises(ValueError, match="cannot read .* as a PyTorch state dict"):
        load_imagebind(tmp_path / "page.pth")
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch imagebind-huge"):
        load_imagebind(tmp_path / "absent.pth")


def test_missing_weight_gives_the_fallback_notice(tmp_path, monkeypatch):
    from emostyle import registry

    monkeypatch.setenv("EMOSTYLE_HOME", str(tmp_path))
    monkeypatch.delenv("EMOSTYLE_WEIGHT_IMAGEBIND_HUGE", raising=False)
    monkeypatch.delenv("EMOSTYLE_MIRROR", raising=False)
    assert not imagebind_available()
    assert not imagebind_available(tmp_path / "imagebind_huge.pth")
    with pytest.raises(registry.MissingWeightError, match="imagebind-huge"):
        load_imagebind()
    torch.save(random_checkpoint(0, **TINY), tmp_path / "tiny.pth")
    assert imagebind_available(tmp_path / "tiny.pth")


# --- parity with the reference ----------------------------------------------------------

# Two float32 fbank pipelines (the reference's torchaudio, ours) differ by rounding only. Each
# rounds the frame's spectrum with a normwise relative error of at most about
# (log2(512) FFT stages + ~40 resampler taps) ulps; for both, gamma = 100 u (u = 2^-24). A
# normwise error gamma ||X|| in the spectrum X moves a mel band's energy E by at most
# 2 gamma sqrt(F E) + gamma^2 F, F the frame's total band energy (the mel triangles sum to 1
# per bin), so the normalised log energy (log E - mean) / 9.138 moves by at most
# (2 gamma sqrt(F / E) + gamma^2 F / E) / 9.138, plus a few ulps of the value. Loud bands
# get ~1e-6, bands 60 dB under the frame get ~1e-3: that is where the 10 earlier failures
# above a flat 1e-5 were. A one-bin shift of the mel filters, a periodic Hann window or a
# Hamming window exceed this bound on 86-97 % of the values (test below).
FBANK_GAMMA = 100 * 2.0**-24


def _fbank_tolerance(ours_full: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Allowed |ours - ref| per value of the normalised fbank; ours_full has every mel bin (axis 2)."""
    from emostyle.spaces.imagebind_space import AUDIO_MEAN, AUDIO_STD

    frame_energy = np.exp(ours_full.astype(np.float64) * AUDIO_STD + AUDIO_MEAN).sum(axis=2, keepdims=True)
    ratio = frame_energy / np.exp(ref.astype(np.float64) * AUDIO_STD + AUDIO_MEAN)
    g = FBANK_GAMMA
    return (2 * g * np.sqrt(ratio) + g * g * ratio) / AUDIO_STD + 4 * 2.0**-24 * np.abs(ref)


def _fbank_errors(sound_samples, expected):
    """(excess over the tolerance, fraction of values over it) for drill and thunderstorm."""
    from emostyle.audio import read_audio

    results = []
    for name, key, bins in (("drill", "drill_features", slice(None)),  # 4 s, 48 kHz stereo 24-bit: clips overlap
                            ("thunderstorm", "thunderstorm_features_every4th", slice(None, None, 4))):  # 9.3 s
        full = audio_features(*read_audio(sound_samples[name])).numpy()
        assert full.shape[:3] == (3, 1, 128)
        ref = expected[key]
        error = np.abs(full[:, :, bins].astype(np.float64) - ref)
        tolerance = _fbank_tolerance(full, ref)
        results.append(((error / tolerance).max(), (error > tolerance).mean()))
    return results


def test_audio_features_match_reference(sound_samples, expected):
    for worst, failing in _fbank_errors(sound_samples, expected):
        assert worst <= 1, f"fbank differs from the reference by {worst:.2f} x the float32 bound"


@pytest.mark.parametrize("mistake", ["mel filters one bin off", "periodic Hann window", "Hamming window"])
def test_audio_tolerance_catches_real_mistakes(sound_samples, expected, monkeypatch, mistake):
    import emostyle.spaces.imagebind_space as module

    banks, hann = module._mel_banks, torch.hann_window
    if mistake == "mel filters one bin off":
        monkeypatch.setattr(module, "_mel_banks", lambda *a, **k: torch.roll(banks(*a, **k), 1, dims=1))
    else:
        wrong = (lambda n, periodic=False, dtype=None: hann(n, periodic=True, dtype=dtype)) \
            if mistake == "periodic Hann window" else \
            (lambda n, periodic=False, dtype=None: torch.hamming_window(n, periodic=False, dtype=dtype))
        monkeypatch.setattr(module.torch, "hann_window", wrong)
    for worst, failing in _fbank_errors(sound_samples, expected):
        assert worst > 10 and failing > 0.5, (mistake, worst, failing)


def test_short_audio_gives_three_padded_clips():
    t = np.arange(12000, dtype=np.float32) / 16000  # 0.75 s: every clip starts at 0 and is padded
    clips = audio_features(np.sin(2 * np.pi * 440 * t)[None], 16000)
    assert clips.shape == (3, 1, 128, 204)
    # 73 frames of 25 ms at a 10 ms shift fit in 0.75 s; the rest is a zero fbank, normalised
    torch.testing.assert_close(clips[..., 73:], torch.full_like(clips[..., 73:], 4.268 / 9.138))
    assert (clips[..., :73] != clips[..., 73:74]).any()
    assert torch.isfinite(clips).all()


def test_image_features_match_reference(expected):
    x = image_features(_images())
    assert x.shape == (3, 3, 224, 224)
    np.testing.assert_allclose(x[..., ::8, ::8].numpy(), expected["vision_features_every8th"],
                               rtol=0, atol=TOL_FEATURES)


def test_embeddings_match_reference(reduced_space, sound_samples, expected):
    vision = reduced_space.encode_image(_images())
    np.testing.assert_allclose(vision.numpy(), expected["vision_embeddings"], rtol=0, atol=TOL_EMBEDDINGS)
    for i, name in enumerate(["drill", "thunderstorm"]):
        audio = reduced_space.encode_audio(sound_samples[name])
        np.testing.assert_allclose(audio[0].numpy(), expected["audio_embeddings"][i],
                                   rtol=0, atol=TOL_EMBEDDINGS)


# --- the space -----------------------------------------------------------------------------

def test_ranking_is_the_argmax_of_similarities(reduced_space, sound_samples, expected):
    from emostyle.parts import Generator
    from emostyle.retrieval import retrieve

    images = torch.cat([_images(7), _images(8), _images(9)])[:, :, :, :180]  # 9 square candidates

    class Fixed(Generator):
        name, n_layers, latent_dim, resolution = "fixed", 1, 1, 180

        def sample(self, n, generator):
            return torch.arange(n, dtype=torch.float32).view(n, 1, 1)

        def render(self, latents):
            return images[latents.view(-1).long()]

    audio = reduced_space.encode_audio(sound_samples["raining"])
    result = retrieve(Fixed(), reduced_space, audio, n=9, batch=4, progress=False)
    # Independently: the reference scores images by E_img . E_a (unit-norm images, audio x 20).
    model = reduced_space.model
    with torch.no_grad():
        ref = model.embed_vision(image_features(images)) @ audio[0]
    assert result.best == int(torch.argmax(ref)) == int(result.order[0])
    np.testing.assert_allclose(result.scores.numpy(), (ref / audio.norm()).numpy(), atol=1e-5)
    assert len(set(result.order.tolist())) == 9


def test_batching_and_audio_cache(reduced_space, sound_samples, tmp_path, monkeypatch):
    images = _images()
    one_batch = ImageBindSpace(reduced_space.model, batch_size=16).encode_image(images)
    torch.testing.assert_close(reduced_space.encode_image(images), one_batch, rtol=0, atol=1e-6)

    copy = tmp_path / "same-song.wav"
    copy.write_bytes(sound_samples["drill"].read_bytes())
    first = reduced_space.encode_audio(sound_samples["drill"])
    import emostyle.spaces.imagebind_space as module

    monkeypatch.setattr(module, "read_audio", lambda *a, **k: pytest.fail("audio decoded again"))
    torch.testing.assert_close(reduced_space.encode_audio(copy), first, rtol=0, atol=0)


def test_space_interface(reduced_space):
    with pytest.raises(NotImplementedError, match="text branch is not loaded"):
        reduced_space.encode_text("a happy song")
    x = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    y = torch.tensor([[0.0, 2.0]])
    torch.testing.assert_close(reduced_space.similarity(x, y), torch.tensor([[0.8], [0.0]]))
    torch.testing.assert_close(reduced_space.distance(x, y), torch.tensor([0.2, 1.0]))
    assert reduced_space.dim == 64 and reduced_space.name == "imagebind"


def test_tiny_profile_is_seeded():
    a, b, c = tiny_imagebind(0), tiny_imagebind(0), tiny_imagebind(1)
    x = image_features(_images()[:1])
    with torch.no_grad():
        ea, eb, ec = (m.embed_vision(x) for m in (a, b, c))
    assert ea.shape == (1, TINY["out_dim"])
    assert torch.equal(ea, eb) and not torch.allclose(ea, ec)
