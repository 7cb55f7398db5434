"""The whole pipeline on the tiny profile (the paper's networks, small and random) and offline."""

import json

import pytest
import torch

from emostyle.config import load_config
from emostyle.guidance import METHODS
from emostyle.pipeline import Pipeline, manipulate

SONG = "data/songs/happy_sunshine.wav"


@pytest.fixture(scope="module")
def tiny():
    return Pipeline.from_config(load_config("tiny", {"guidance.steps": 4, "retrieval.candidates": 3}))


def test_tiny_profile_builds_the_paper_parts(tiny):
    d = tiny.describe()
    assert d["generator"].startswith("stylegan2") and d["guidance space"] == tiny.guidance_space.name
    assert tiny.generator.n_layers == 2 * 5 - 2  # 32 px: 8 W+ layers
    assert Pipeline.from_config(tiny.config).generator is tiny.generator  # parts are cached per process


def test_tiny_retrieval_and_guidance_on_a_real_song(tiny, repo_root):
    song = repo_root / SONG
    found = tiny.retrieve(song, progress=False)
    assert found.latents.shape == (3, 8, 32) and found.best == int(found.scores.argmax())
    targets = tiny.targets([song], [song], ["a happy lovely day"])
    result = tiny.guide(found.best_latent, targets, method="emostyle", steps=6, progress=False)
    assert result.images.shape == (1, 3, 32, 32)
    assert set(result.history) >= {"audio", "music", "text", "reg", "total"}
    assert result.mask is not None and result.mask.shape == (1, 8)


@pytest.mark.parametrize("method", ["lee", "styleclip", "wo-text"])
def test_methods_use_their_weights(tiny, method):
    w = tiny.weights(method)
    assert w == METHODS[method].weights()
    assert tiny.weights("emostyle") == {"audio": 0.6, "music": 0.2, "text": 0.2}


def test_official_compat_wo_music_compares_with_the_audio_twice(repo_root):
    pipe = Pipeline.from_config(load_config("tiny", {"guidance.compat": "official", "retrieval.candidates": 2}))
    song = repo_root / SONG
    start = pipe.retrieve(song, progress=False).best_latent
    targets = pipe.targets([song], [song], ["completely different words"])
    result = pipe.guide(start, targets, method="wo-music", steps=2, progress=False)
    assert result.history["text"] == result.history["audio"]


@pytest.mark.slow
def test_manipulate_writes_every_output_with_a_manifest(tmp_path, repo_root):
    out = tmp_path / "run"
    manifest = manipulate(repo_root / SONG, profile="offline", out=out, seed=3,
                          overrides={"guidance.steps": 5, "retrieval.candidates": 4}, progress=False)
    for name in ("before.png", "after.png", "frames.png", "loss.png", "manifest.json", "latents.pt"):
        assert (out / name).stat().st_size > 1000, name
    saved = json.loads((out / "manifest.json").read_text())
    assert manifest["polarity"] == saved["polarity"]  # what it returns is what it wrote
    assert set(saved["valence"]) == {"judge", "before", "after", "polarity", "in_guidance_space"}
    assert saved["valence"]["polarity"] == "positive" and set(saved["valence"]["in_guidance_space"]) == {"before", "after"}
    assert saved["profile"] == "offline" and saved["config"]["seed"] == 3
    assert saved["polarity"]["label"] == "positive" and "sunshine" in saved["lyrics"]["text"].lower()
    assert len(saved["retrieval"]["scores"]) == 4 and saved["music"]["wav"].endswith(".wav")
    assert set(saved["timings_s"]) == {"build", "affective_music", "retrieval", "guidance"}
    again = manipulate(repo_root / SONG, profile="offline", out=tmp_path / "again", seed=3,
                       overrides={"guidance.steps": 5, "retrieval.candidates": 4}, progress=False)
    assert torch.equal(torch.load(out / "latents.pt")["final"], torch.load(tmp_path / "again" / "latents.pt")["final"])
    assert again["retrieval"]["scores"] == saved["retrieval"]["scores"]


def test_missing_imagebind_falls_back_to_clip_space_with_a_notice(monkeypatch, tmp_path):
    from emostyle import builders
    from emostyle.spaces.clip_space import tiny_clip_space

    monkeypatch.setenv("EMOSTYLE_HOME", str(tmp_path))  # an empty cache: no imagebind-huge
    monkeypatch.setattr(builders, "_clip_space", lambda config, device: tiny_clip_space(seed=config.seed))
    builders.clear_cache()
    config = load_config("tiny", {"random_weights": False, "generator.weights": "unused", "seed": 11})
    notes: list[str] = []
    with pytest.warns(UserWarning, match="ImageBind weights not fetched.*emostyle weights fetch imagebind-huge"):
        space = builders.build_space("imagebind", config, "cpu", notes)
    assert space.name == tiny_clip_space(seed=11).name
    assert notes == ["retrieval in CLIP space (SoundCLIP audio vs CLIP images): ImageBind weights not fetched"]
    builders.clear_cache()


@pytest.mark.slow
def test_a_long_song_is_cut_once_and_the_manifest_says_so(tmp_path, recwarn):
    import numpy as np
    import soundfile as sf

    sr = 8000
    t = np.arange(301 * sr) / sr
    sf.write(tmp_path / "long.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    manifest = manipulate(tmp_path / "long.wav", profile="tiny", out=tmp_path / "run", lyrics="la la la",
                          overrides={"guidance.steps": 2, "retrieval.candidates": 2}, progress=False)
    cut = [w for w in manifest["warnings"] if "only its first 300 s" in w]
    assert len(cut) == 1 and sum("only its first 300 s" in str(w.message) for w in recwarn) == 1
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["warnings"] == manifest["warnings"]
    assert all(len(w["sha256"]) == 64 for w in manifest["weights"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.wav", "run"]  # no staging folder left
