"""The whole pipeline on the tiny profile (the paper's networks, small and random) and offline."""

import json

import numpy as np
import pytest
import torch

from emostyle.affective.lyrics import word_errors
from emostyle.config import load_config
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


def test_a_candidate_set_is_read_once_and_its_readings_kept(tiny, tmp_path, monkeypatch):
    """The space's readings of a candidate set are kept in the kit's home: the same set again is
    rendered, not read, and is the same candidates; another seed or N is read anew; a damaged kept
    file is read anew and replaced."""
    import dataclasses

    monkeypatch.setenv("EMOSTYLE_HOME", str(tmp_path))
    first = tiny.read_candidates(n=3, seed=5, progress=False)
    (kept,) = (tmp_path / "cache" / "candidates").rglob("*.pt")
    with monkeypatch.context() as m:
        m.setattr(tiny.retrieval_space, "read_image", lambda x: pytest.fail("read a kept set again"))
        again = tiny.read_candidates(n=3, seed=5, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(dataclasses.astuple(first), dataclasses.astuple(again)))
    other_seed, other_n = tiny.read_candidates(n=3, seed=6, progress=False), tiny.read_candidates(n=4, seed=5, progress=False)
    assert not torch.equal(other_seed.latents, first.latents) and len(other_n.latents) == 4
    assert len(list((tmp_path / "cache" / "candidates").rglob("*.pt"))) == 3
    kept.write_bytes(b"damaged")
    mended = tiny.read_candidates(n=3, seed=5, progress=False)
    assert torch.equal(mended.embeddings, first.embeddings) and kept.stat().st_size > len(b"damaged")
    assert not list(tmp_path.rglob(".*.tmp"))  # nothing half-written left


def test_emostyle_weights_come_from_the_config(tiny):
    # The profile default is the authors' EmoStyle branch, criteria/soundclip_loss.py:89;
    # the other methods' weights are pinned in test_guidance.py.
    assert tiny.weights("emostyle") == {"audio": 0.6, "music": 0.2, "text": 0.2}
    other = Pipeline.from_config(tiny.config.with_overrides({"guidance.l_aud": 0.5, "guidance.l_tex": 0.3}))
    assert other.weights("emostyle") == {"audio": 0.5, "music": 0.2, "text": 0.3}
    # a Config with overrides, as a profile's name takes them: applied, not dropped
    assert Pipeline.from_config(tiny.config, {"guidance.l_aud": 0.5}).weights("emostyle")["audio"] == 0.5


@pytest.fixture(scope="module")
def official():
    return Pipeline.from_config(load_config("tiny", {"guidance.compat": "official", "retrieval.candidates": 2}))


@pytest.mark.parametrize("method, slot", [("wo-music", "audio"), ("wo-audio", "music")])
def test_official_compat_puts_the_scripts_input_in_the_text_slot(official, tiny, repo_root, method, slot):
    """run_optimization_wo_music.py:332 / _wo_audio.py:334 reach soundclip_loss.py:70, which
    compares the image with the audio (the music) again instead of the text."""
    song, music = repo_root / SONG, repo_root / "data/songs/sad_rain.wav"
    start = official.generator.sample(1, torch.Generator().manual_seed(0))
    targets = official.targets([song], [music], ["completely different words"])
    result = official.guide(start, targets, method=method, steps=2, progress=False)
    assert result.history["text"] == result.history[slot]
    paper = tiny.guide(start, tiny.targets([song], [music], ["completely different words"]), method=method,
                       steps=2, progress=False)
    assert paper.history["text"] != paper.history[slot]


def test_official_compat_switches_masking_off_and_crops_long_audio_at_random(official, tiny, tmp_path):
    import soundfile

    # argparse type=bool, default False, never passed by run_*.sh: the code's masking is off.
    start = official.generator.sample(1, torch.Generator().manual_seed(0))
    target = {"audio": torch.nn.functional.normalize(torch.ones(1, official.guidance_space.dim), dim=-1)}
    official_config = official.config.with_overrides({"guidance.l_sim": 0.01})
    assert official_config.guidance.layer_masking  # the profile asks for masking; compat=official overrides it
    assert Pipeline.from_config(official_config).guide(start, target, method="lee", steps=2, progress=False).mask is None
    # run_optimization_comprehensive.py:259-262: a random 864-frame window of audio over ~10 s, here seeded
    song = tmp_path / "long.wav"
    soundfile.write(song, np.random.default_rng(0).normal(0, 0.1, 44100 * 14).astype(np.float32), 44100)
    assert official.guidance_space.crop == "random" and tiny.guidance_space.crop == "start"
    again = Pipeline.from_config(load_config("tiny", {"guidance.compat": "official"}))
    torch.testing.assert_close(official.guidance_space.encode_audio(song), again.guidance_space.encode_audio(song))
    assert not torch.allclose(official.guidance_space.encode_audio(song), tiny.guidance_space.encode_audio(song))


@pytest.mark.parametrize("profile, l_sim, l_id", [
    ("paper-ffhq", 0.008, 0.004),  # run_Lee.sh:74, run_wo_text.sh:75: --lambda_similarity 0.008 --lambda_identity 0.004
    ("paper-lhq", 0.002, 0.0),  # run.sh:2: --lambda_similarity 0.002 --lambda_identity 0.0
])
def test_official_compat_takes_the_run_scripts_lambdas(profile, l_sim, l_id):
    official = load_config(profile, {"guidance.compat": "official"}).guidance
    assert (official.l_sim, official.l_id) == (l_sim, l_id)
    paper = load_config(profile).guidance
    assert (paper.l_id, paper.l_sim) == (l_sim, l_id)  # the paper (4.2) gives the same two values, swapped
    explicit = load_config(profile, {"guidance.compat": "official", "guidance.l_sim": 0.5}).guidance
    assert explicit.l_sim == 0.5 and explicit.l_id == l_id  # what the user sets wins
    assert paper.reg_reduction == "sum"  # the code's ((latent_code_init - latent) ** 2).sum(), :296


@pytest.mark.slow
def test_manipulate_writes_every_output_with_a_manifest(tmp_path, repo_root, shared_data, monkeypatch):
    from emostyle import registry

    monkeypatch.setenv("EMOSTYLE_MIRROR", str(shared_data))
    registry.path("audio-jfk")  # read in this process before the run, by no part of it
    out = tmp_path / "run"
    manifest = manipulate(repo_root / SONG, profile="offline", out=out, seed=3,
                          overrides={"guidance.steps": 5, "retrieval.candidates": 4}, progress=False)
    for name in ("before.png", "after.png", "frames.png", "loss.png", "manifest.json", "latents.pt"):
        assert (out / name).stat().st_size > 1000, name
    saved = json.loads((out / "manifest.json").read_text())
    assert manifest["polarity"] == saved["polarity"]  # what it returns is what it wrote
    assert set(saved["valence"]) == {"judge", "before", "after", "resolution", "polarity", "in_guidance_space", "notes"}
    from emostyle.notes import manipulation_notes
    assert saved["valence"]["notes"] == manipulation_notes(saved)  # what the command prints, kept with the run
    space = saved["valence"]["in_guidance_space"]
    assert saved["valence"]["polarity"] == "positive"
    assert set(space) == {"before", "after", "confidence", "min_confidence", "targets"}
    # The kit's happy song: its audio, its composed music and its lyrics each pull toward happy.
    assert set(space["targets"]) == {"audio", "music", "text"} and min(space["targets"].values()) > 0, space
    # retrieval chooses a face the guiding face mesh sees (its presence over MediaPipe's threshold)
    assert space["min_confidence"] == 0.5 and space["min_confidence"] <= space["confidence"] <= 1
    assert saved["profile"] == "offline" and saved["config"]["seed"] == 3
    # The transcript is the song's (its exact slips depend on the decoder's rounding, e.g. the CPU's
    # instruction set: "Sunshine" or "Some shine"): most of its words, and the polarity of its lyrics.
    known = (repo_root / SONG).with_suffix(".txt").read_text()
    assert saved["polarity"]["label"] == saved["polarity"]["emotion"] == "positive"
    assert word_errors(known, saved["lyrics"]["text"])[0] < 0.3
    assert len(saved["retrieval"]["scores"]) == 4 and saved["music"]["wav"].endswith(".wav")
    assert set(saved["timings_s"]) == {"build", "affective_music", "retrieval", "guidance"}
    again = manipulate(repo_root / SONG, profile="offline", out=tmp_path / "again", seed=3,
                       overrides={"guidance.steps": 5, "retrieval.candidates": 4}, progress=False)
    assert torch.equal(torch.load(out / "latents.pt")["final"], torch.load(tmp_path / "again" / "latents.pt")["final"])
    assert again["retrieval"]["scores"] == saved["retrieval"]["scores"]
    # Each manifest lists its own run's files: the second run's parts come from the process's cache.
    files = {w["name"] for w in saved["weights"]}
    assert "audio-jfk" not in files and {"dcgan-faces", "mediapipe-face-landmarker", "fer-mini-xception"} <= files
    assert {w["name"] for w in again["weights"]} == files


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
