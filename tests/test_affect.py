"""The offline affect (PAD) space on real inputs: faces, colours, sounds, text."""


import numpy as np
import pytest
import torch

from emostyle.models.fer import EMOTIONS, face_input, load_fer
from emostyle.scoring import metrics
from emostyle.spaces.affect import EMOTION_PAD, FACE_LOSSES, AffectSpace, direction, music_cues, music_pad, scene_pad
from emostyle import registry




@pytest.fixture(scope="module")
def fer():
    return load_fer(registry.path("fer-mini-xception"))


def test_scene_pad_is_valdez_mehrabian():
    grey = torch.zeros(1, 3, 8, 8)  # mid-grey, saturation 0
    white = torch.ones(1, 3, 8, 8)
    red = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    b, s = 0.0, -1.0  # grey: brightness at the midpoint, no saturation
    expected = [[0.69 * b + 0.22 * s, -0.31 * b + 0.60 * s, -0.76 * b + 0.32 * s]]
    assert torch.allclose(scene_pad(grey), torch.tensor(expected), atol=1e-5)
    assert torch.allclose(scene_pad(white), torch.tensor([[0.69 - 0.22, -0.31 - 0.60, -0.76 - 0.32]]), atol=1e-5)
    pad = scene_pad(red)  # saturated, darker than white: more arousing, more dominant
    assert pad[0, 1] > scene_pad(white)[0, 1] and pad[0, 2] > scene_pad(white)[0, 2]
    space = AffectSpace("scene")
    images = torch.zeros(2, 3, 16, 16, requires_grad=True)
    space.distance(space.encode_image(images), torch.tensor([[0.5, 0.0, 0.0]])).sum().backward()
    assert images.grad.abs().sum() > 0


def test_a_scene_darkens_and_greys_for_any_unpleasant_target_whatever_its_arousal():
    """In Valdez & Mehrabian's equations brightness lowers arousal: compared in the
    pleasure-arousal plane, a target with more calm than displeasure (|A| > 2.2 |P|) brightened
    scenes, which a colour judge reads as happier. Guided along pleasure, images from many starts
    lose brightness and saturation for every target of negative pleasure and gain both for every
    positive one, at any arousal and dominance (mid-range starts: on a dark, saturated image HSV
    saturation can rise as light falls, so pixels do not always follow)."""
    space = AffectSpace("scene")
    rng = torch.Generator().manual_seed(3)
    starts = torch.rand(8, 3, 16, 16, generator=rng) * 1.6 - 0.8

    def luma_and_saturation(images):
        rgb = (images.clamp(-1, 1) + 1) / 2
        high, low = rgb.max(1).values, rgb.min(1).values
        return (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1).mean((1, 2)), \
            ((high - low) / (high + 1e-3)).mean((1, 2))

    l0, s0 = luma_and_saturation(starts)
    for degrees in range(0, 360, 15):
        theta = np.radians(degrees)
        if abs(np.cos(theta)) < 0.2:  # pleasure within about VADER's neutral band: no way to go
            continue
        target = torch.tensor([[0.3 * np.cos(theta), 0.3 * np.sin(theta), 0.3 * np.cos(3 * theta)]], dtype=torch.float32)
        x = starts.clone().requires_grad_(True)
        adam = torch.optim.Adam([x], lr=0.01)
        for _ in range(20):
            adam.zero_grad()
            space.distance(space.encode_image(x), target).sum().backward()
            adam.step()
        l1, s1 = luma_and_saturation(x.detach())
        sign = 1 if np.cos(theta) > 0 else -1
        assert (sign * (l1 - l0) > 0).all() and (sign * (s1 - s0) > 0).all(), \
            f"target at {degrees} degrees: luma {(l1 - l0).tolist()}, saturation {(s1 - s0).tolist()}"
        # and the report of which way it pulls (the CLI's, the notes', the start study's) says so
        assert np.sign(metrics.target_valences({"audio": target}, space, "landscape")["audio"]) == sign, degrees


def test_face_pad_is_expected_term_pad(fer):
    space = AffectSpace("face", fer=fer)
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    probs = fer(face_input(images)).softmax(1)
    table = torch.tensor([EMOTION_PAD[e] for e in EMOTIONS])
    assert torch.allclose(space.encode_image(images), probs @ table, atol=1e-6)


def test_text_pleasure():
    space = AffectSpace("scene")
    happy = space.encode_text("I love this wonderful sunny day, I am so happy and grateful!")
    sad = space.encode_text("I am so sad and lonely, my heart is broken and I cry every night.")
    assert happy.shape == sad.shape == (1, 3)
    assert happy[0, 0] > 0.5 and sad[0, 0] < -0.5
    assert torch.allclose(happy / happy.norm(), torch.tensor([EMOTION_PAD["happy"]]) / np.linalg.norm(EMOTION_PAD["happy"]))


def _tune(path, freqs, notes_per_s, harmonics, amplitude, sr=22050, seconds=6.0):
    import soundfile as sf

    t = np.arange(int(sr / notes_per_s)) / sr
    note = lambda f: sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, harmonics + 1)) * np.exp(-3 * t)
    y = np.concatenate([note(freqs[i % len(freqs)]) for i in range(int(seconds * notes_per_s))])
    sf.write(path, amplitude * y / np.abs(y).max(), sr)
    return path


def test_music_cues_on_synthetic_tunes(tmp_path):
    """A fast, loud, bright C-major arpeggio against a slow, soft, dull A-minor one."""
    c_major = [261.63, 329.63, 392.00, 523.25]
    a_minor = [220.00, 261.63, 329.63, 440.00]
    happy = music_cues(_tune(tmp_path / "happy.wav", c_major, 5.0, 12, 0.9))
    sad = music_cues(_tune(tmp_path / "sad.wav", a_minor, 1.5, 1, 0.05))
    assert happy["mode"] > 0 > sad["mode"]
    assert happy["tempo_bpm"] > sad["tempo_bpm"]
    assert happy["loudness_dbfs"] > sad["loudness_dbfs"] + 20
    assert happy["centroid_hz"] > sad["centroid_hz"]
    p_happy, p_sad = music_pad(happy), music_pad(sad)
    assert p_happy[0] > p_sad[0] and p_happy[1] > p_sad[1]


def test_giggling_and_sobbing(sound_samples):
    """The published relations do NOT put giggling above sobbing in pleasure on these files.

    Measured here (librosa 0.11): giggling P, A, D = 0.144, 0.146, 0.266 (mode cue -0.12,
    tempo 112 bpm, -22.2 dBFS, centroid 2438 Hz); sobbing 0.186, 0.297, 0.493 (mode -0.02,
    112 bpm, -13.7 dBFS, 2541 Hz). Neither is music: the key-profile correlation finds no key
    in sobbing's chroma (the plain chroma read it more major, +0.12, and sobbing 0.232 in
    pleasure), and its recording is louder and brighter. Kept as measured, not tuned (see the
    kit's notes); this test pins the numbers so that a change shows.
    """
    space = AffectSpace("scene", audio="cues")
    giggling = space.encode_audio(sound_samples["giggling"])
    sobbing = space.encode_audio(sound_samples["sobbing"])
    assert giggling.shape == (1, 3)
    np.testing.assert_allclose(giggling[0].numpy(), [0.144, 0.146, 0.266], atol=0.03)
    np.testing.assert_allclose(sobbing[0].numpy(), [0.186, 0.297, 0.493], atol=0.03)


def _triads(n, root, minor, sr=22050):
    """n samples of block chords, one every 2 s, with a bass an octave below: I-IV-V-I of the
    major key on MIDI note `root`, or i-iv-VI-v of its minor (minor keys' sixth chord is major)."""
    steps = [(0, 3), (5, 3), (8, 4), (7, 3)] if minor else [(0, 4), (5, 4), (7, 4), (0, 4)]
    t, y, length = np.arange(n) / sr, np.zeros(n), 2 * sr
    for start in range(0, n, length):
        step, third = steps[(start // length) % 4]
        tt = t[: min(length, n - start)]
        for note in (root + step - 12, root + step, root + step + third, root + step + 7):
            f = 440 * 2 ** ((note - 69) / 12)
            y[start:start + len(tt)] += np.exp(-tt) * (np.sin(2 * np.pi * f * tt) + 0.3 * np.sin(4 * np.pi * f * tt))
    return y / np.abs(y).max()


def test_tuned_chroma_keeps_the_notes_and_drops_the_speaking_voice(cached_weight):
    """A voice's pitch is not on the equal-tempered grid: its partials fall anywhere across the
    semitone, so the centre bin beats both side bins for at most a third of them (those within a
    sixth of a semitone of the centre), and then by less than a tuned note does. At the same
    loudness a spoken recording (JFK's, the kit's test data) must so keep under a third of the
    on-grid energy of chords; measured 0.08. The plain chroma keeps 0.60 of it: there the voice
    competes with the chords."""
    import librosa

    from emostyle.audio import load_audio
    from emostyle.spaces.affect import tuned_chroma

    speech = load_audio(cached_weight("audio-jfk"), sr=22050)
    chords = _triads(len(speech), 52, minor=False)
    chords *= np.sqrt(np.mean(speech ** 2) / np.mean(chords ** 2))
    assert tuned_chroma(speech).sum() < tuned_chroma(chords).sum() / 3
    plain = [librosa.feature.chroma_cqt(y=y, sr=22050, norm=None).sum() for y in (speech, chords)]
    assert plain[0] > plain[1] / 3  # what the tuned chroma is for


@pytest.mark.parametrize("seconds", [0.5, 1.0, 3.0])
def test_a_short_clip_reads_its_notes_without_a_warning(seconds):
    """The piece composed for a one-word label lasts about a second, shorter than the constant-Q
    analysis' lowest octave's window; that window is zero-padded, and the notes still read: a
    tone on A (pitch class 9 from C) holds most of the chroma."""
    import warnings

    from emostyle.spaces.affect import _SAMPLE_RATE, tuned_chroma

    t = np.arange(int(seconds * _SAMPLE_RATE)) / _SAMPLE_RATE
    tone = np.sin(2 * np.pi * 220 * t).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chroma = tuned_chroma(tone)
    assert chroma.argmax() == 9 and chroma[9] > chroma.sum() / 2


def test_spoken_lyrics_over_quiet_chords_pull_toward_the_chords_mode(tmp_path):
    """The default audio reader (musicnn+mode) on lyrics spoken by espeak-ng (three voices) over
    chords a quarter as loud as the voice, in four major and four minor keys: every song's audio
    pulls toward "a happy face" if its chords are major, toward "a sad face" if minor, read as
    the pipeline reads a target (`embedding_valence`). musicnn alone hears such songs calm and a
    little unpleasant whatever the chords (the voice dominates); the mode cue decides. Measured:
    smallest pull 0.86 of the valence's range of 4; with the plain chroma one minor song pulled
    toward happy (+0.16: its voice's chroma read major)."""
    import shutil
    import subprocess

    import soundfile as sf

    from emostyle.audio import load_audio
    from emostyle.scoring.metrics import embedding_valence

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    space = AffectSpace("scene")
    pulls = {}
    for voice in ("en-us", "en-gb+f2", "en-us+m5"):
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(tmp_path / "voice.wav"),
                        "We walk along the river in the evening light and talk about the years"], check=True)
        speech = load_audio(tmp_path / "voice.wav", sr=22050)
        speech /= np.abs(speech).max()
        for root in (48, 51, 54, 57):
            for minor in (False, True):
                song = 0.8 * speech + 0.25 * _triads(len(speech), root, minor)
                path = tmp_path / f"{voice}-{root}-{minor}.wav"
                sf.write(path, 0.9 * song / np.abs(song).max(), 22050)
                pull = float(embedding_valence(space.encode_audio(path), space, "face")[0])
                pulls[path.stem] = -pull if minor else pull
    assert min(pulls.values()) > 0, {k: round(v, 2) for k, v in pulls.items() if v <= 0}


def test_audio_reading_is_computed_once_per_file_content(tmp_path, monkeypatch, shared_data):
    import shutil

    from emostyle import registry
    from emostyle.spaces import affect, music_emotion

    monkeypatch.setenv("EMOSTYLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EMOSTYLE_MIRROR", str(shared_data))
    calls = []

    def read(path):  # a reader that reads a registry file, as musicnn does its checkpoint
        calls.append(path)
        registry.path("audio-jfk")
        return np.array([0.1, -0.2, 0.3])

    monkeypatch.setattr(music_emotion, "music_emotion_pad", read)
    song = _tune(tmp_path / "a.wav", [261.63, 329.63, 392.00, 523.25], 2.0, 3, 0.5)
    first = affect.audio_pad(song, "musicnn")
    copy = shutil.copy(song, tmp_path / "b.wav")  # same content, other name: the same reading
    with registry.recording() as files:
        np.testing.assert_array_equal(affect.audio_pad(copy, "musicnn"), first)
    assert len(calls) == 1 and list(first) == [0.1, -0.2, 0.3]
    assert [f["name"] for f in files] == ["audio-jfk"]  # served from the cache, still in the run's manifest
    # musicnn+mode averages musicnn's pleasure with the mode cue (a major arpeggio: > 0).
    mixed = affect.audio_pad(song, "musicnn+mode")
    assert len(calls) == 2 and mixed[0] == pytest.approx((0.1 + affect.mode_cue(song)) / 2)
    assert affect.mode_cue(song) > 0 and list(mixed[1:]) == [-0.2, 0.3]
    assert affect.audio_pad(song, "cues").shape == (3,) and len(calls) == 2  # a reader of its own
    # The default: YAMNet hears music (read by musicnn+mode) or a sound (read by its classes).
    from emostyle.models import yamnet
    from emostyle.spaces import sound_emotion

    names = ("Speech", "Speech synthesizer", "Singing", "Humming", "Music", "Scary music", "Giggle", "Silence")
    heard = {"scores": np.array([0.9, 0.0, 0.0, 0.0, 0.6, 0.0, 0.1, 0.0])}
    monkeypatch.setattr(sound_emotion, "class_names", lambda: names)
    monkeypatch.setattr(yamnet, "class_scores", lambda path: heard["scores"])
    monkeypatch.setattr(sound_emotion, "sound_pad", lambda scores: np.array([0.5, 0.1, 0.0]))
    music = affect.audio_reading(song)
    assert music["heard_as"] == "music" and music["pad"] == list(mixed) and len(calls) == 3
    assert music["classes"][0] == ["Speech", 0.9]
    moved = tmp_path / "My Songs" / "a copy.wav"  # served by content: it names the file asked about
    moved.parent.mkdir()
    shutil.copy(song, moved)
    assert affect.audio_reading(moved) == music | {"audio": str(moved)} and len(calls) == 3
    heard["scores"] = np.array([0.9, 0.0, 0.0, 0.0, 0.1, 0.0, 0.6, 0.0])
    copy2 = tmp_path / "c.wav"
    copy2.write_bytes(song.read_bytes() + b"\0\0")  # other content: read afresh
    sound = affect.audio_reading(copy2)
    assert sound["heard_as"] == "sound" and sound["pad"] == [0.5, 0.1, 0.0] and len(calls) == 3
    # A reading made by other code (an older kit) is not reused.
    monkeypatch.setattr("emostyle.manifest.code_version", lambda: "0" * 64)
    affect.audio_pad(song, "musicnn")
    assert len(calls) == 4
    with pytest.raises(ValueError, match="musicnn, cues"):
        AffectSpace("scene", audio="tags")
    with pytest.raises(ValueError, match="unknown audio reader"):
        affect.audio_pad(song, "tags")
    with pytest.raises(FileNotFoundError, match="not found"):
        affect.audio_pad(tmp_path / "missing.wav")


@pytest.mark.slow
def test_an_audio_reading_is_the_same_whatever_the_processes_blas_threads(tmp_path, repo_root, cached_weight):
    """A 13 s song composed for happy_sunshine read 1e-8 apart in reproduce's kernels (one BLAS
    thread) and in a test or a shell (two), the kit kept whichever process read it first, and the
    guidance amplified the difference into Figure 4's faces. The kit's four songs end to end (36 s,
    long enough for numpy's BLAS to split its sums), read afresh in processes of one and two threads."""
    import json
    import os
    import subprocess
    import sys

    import soundfile as sf

    from emostyle import registry

    for name in ("yamnet-onnx", "yamnet-class-map", "musicnn-msd", "warriner-vad-norms"):  # else skip, naming the fetch
        cached_weight(name)
    for n in ("1", "2"):  # a home each, so that each reads afresh, with the weights already here
        (tmp_path / f"home{n}").mkdir()
        (tmp_path / f"home{n}" / "weights").symlink_to(registry.home() / "weights")
    song = tmp_path / "four_songs.wav"
    parts = [sf.read(p) for p in sorted((repo_root / "data/songs").glob("*.wav"))]
    sf.write(song, np.concatenate([y for y, _ in parts]), parts[0][1])
    code = ("import json, sys; from emostyle.spaces.affect import audio_reading\n"
            "print(json.dumps(audio_reading(sys.argv[1])['pad']))")
    read = {n: subprocess.run([sys.executable, "-c", code, str(song)], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "EMOSTYLE_HOME": str(tmp_path / f"home{n}"),
                                   "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n})
            for n in ("1", "2")}
    assert all(r.returncode == 0 for r in read.values()), {n: r.stderr[-500:] for n, r in read.items()}
    assert json.loads(read["1"].stdout) == json.loads(read["2"].stdout), {n: r.stdout for n, r in read.items()}


def test_similarity_and_distance():
    space = AffectSpace("scene")
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    # Projections on the targets' unit directions in the pleasure-arousal plane; a neutral
    # target (0) has no direction, and dominance is not compared.
    assert torch.allclose(space.similarity(x, y), torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    # Cosines of directions: intensity does not count, dominance is not compared.
    assert torch.allclose(space.similarity(torch.tensor([[0.0, 0.5, 0.9]]), y[1:2]), torch.tensor([[1.0]]))
    assert torch.allclose(space.similarity(torch.tensor([[0.3, 0.3, 0.0]]), torch.tensor([[0.0, 2.0, 0.0]])),
                          torch.tensor([[0.5 ** 0.5]]))
    assert torch.allclose(space.distance(x, y[1:2]), torch.tensor([1.0, 1.0]))
    assert torch.allclose(space.distance(x, y[:1]), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="face, scene"):
        AffectSpace("landscape")


def test_distance_has_no_fixed_point_and_weights_mix_directions():
    """The squared distance stopped at the weighted mean of the targets; the directional loss
    pulls with the same gradient -sum_k l_k t_k/|t_k| wherever the image is, the targets included."""
    space = AffectSpace("scene")
    rng = torch.Generator().manual_seed(0)
    targets = {"audio": torch.tensor([[0.3, 0.2, 0.1]]), "music": torch.tensor([[-0.1, 0.4, 0.0]]),
               "text": torch.tensor([[0.8, 0.5, 0.45]])}
    weights = {"audio": 0.6, "music": 0.2, "text": 0.2}
    # a scene's colour is compared along pleasure alone (music's -0.1 then pulls against the others)
    plane = {k: t[0] * torch.tensor([1.0, 0.0, 0.0]) for k, t in targets.items()}
    pull = sum(w * plane[k] / plane[k].norm() for k, w in weights.items())
    points = torch.cat([torch.rand(6, 3, generator=rng) * 2 - 1, *targets.values()])  # the targets too
    e = points.clone().requires_grad_(True)
    sum(w * space.distance(e, targets[k]) for k, w in weights.items()).sum().backward()
    torch.testing.assert_close(-e.grad, pull.expand_as(e), rtol=1e-6, atol=1e-7)
    # A target's strength does not buy it more pull: only l_k does (0.6 / 0.2 / 0.2 stay meaningful).
    louder = space.distance(points, 5 * targets["text"]) - space.distance(points, targets["text"])
    torch.testing.assert_close(louder, torch.zeros(len(points)))
    # Inside VADER's neutral band the pull fades continuously to zero.
    faint = torch.tensor([[0.01, 0.0, 0.0]])
    torch.testing.assert_close(1 - space.distance(torch.tensor([[1.0, 0.0, 0.0]]), faint), torch.tensor([0.2]))


def test_face_terms_are_credited_by_the_terms_that_enclose_the_target():
    """A face's guidance loss reads its emotion terms: showing the target's term lowers it,
    ceasing to show a term on the far side buys nothing, and so does showing another term of
    the same side that does not enclose the target (disgust for a sad target); between two
    neighbouring terms both count, continuously in the angle; the loss stays linear in the
    terms, so it pulls the same way wherever the face is."""
    space = AffectSpace("scene")  # distance needs no face reader
    happy, sad, surprise = (torch.tensor([EMOTION_PAD[e]]) for e in ("happy", "sad", "surprise"))
    idx = {e: EMOTIONS.index(e) for e in EMOTIONS}

    def face(**shares):  # shares of the terms, the rest neutral
        p = torch.zeros(1, len(EMOTIONS))
        for e, v in shares.items():
            p[0, idx[e]] = v
        p[0, idx["neutral"]] = 1 - p.sum()
        return p

    frowning, blank, smiling = face(sad=0.4, angry=0.2), face(), face(happy=0.4)
    torch.testing.assert_close(space.distance(frowning, happy), space.distance(blank, happy))
    assert space.distance(smiling, happy) < space.distance(blank, happy) - 0.3
    assert space.distance(frowning, sad) < space.distance(blank, sad) - 0.2
    torch.testing.assert_close(space.distance(face(disgust=0.4, fear=0.3), sad), space.distance(blank, sad))
    # a face showing only the target's own term: the loss of its expected PAD
    pure = face(sad=0.7)
    torch.testing.assert_close(space.distance(pure, sad), 1 - (pure @ space.emotion_pad() * direction(sad)).sum(1))
    # halfway (in angle) between happy and surprise both terms count, each less than alone
    halfway = direction(happy) + direction(surprise)
    for term in ("happy", "surprise"):
        alone = space.distance(face(**{term: 0.5}), torch.tensor([EMOTION_PAD[term]]))
        assert space.distance(blank, halfway) - 0.05 > space.distance(face(**{term: 0.5}), halfway) > alone
    # the credit turns continuously with the target: between two steps of the sweep it changes by
    # at most |PAD|max (1 / narrowest angle between neighbours + 1) times the step
    pad = space.emotion_pad()
    angles = torch.atan2(pad[:6, 1], pad[:6, 0]).sort().values
    narrowest = float(torch.diff(torch.cat([angles, angles[:1] + 2 * torch.pi])).min())
    step = 2 * torch.pi / 7200
    theta = torch.arange(7200) * step
    credit = space.term_credit(torch.stack([theta.cos(), theta.sin(), torch.zeros_like(theta)], 1))
    jumps = (credit - credit.roll(1, dims=1)).abs().max()
    assert jumps <= float(pad[:, :2].norm(dim=1).max()) * (1 / narrowest + 1) * step * 1.01
    # linear in the terms: the same gradient (pull) from any face, so no fixed point
    weighted = [(0.6, torch.tensor([[0.3, 0.2, 0.1]])), (0.2, torch.tensor([[0.3, 0.6, 0.0]])),
                (0.2, torch.tensor([[0.8, 0.5, 0.45]]))]
    p = torch.rand(5, len(EMOTIONS), generator=torch.Generator().manual_seed(0)).softmax(1).requires_grad_(True)
    space.guidance_loss(p, weighted).sum().backward()
    torch.testing.assert_close(p.grad, p.grad[:1].expand_as(p.grad))
    assert p.grad[0, idx["happy"]] < 0 and p.grad[0, idx["surprise"]] < 0  # the weights mix both directions


def test_a_songs_readings_pull_a_face_as_the_papers_cosine_terms_add():
    """sum_k l_k (1 - cos(e, t_k)) is one pull along R = sum_k l_k t_hat_k: readings of a song in
    opposite directions cancel, and the weightier one sets the way. A face is guided so too: a
    sad song (audio, 0.6) whose lyrics and composed music read happy (0.2 + 0.2) pulls toward
    sad, by |R| (about 0.2), and credits no happy term; the terms added one by one credited the
    smile as well (the guidance drew whichever the face showed most readily). Readings that
    agree pull as their sum did; a PAD point's loss is the sum, already linear in t_hat."""
    space = AffectSpace("scene")
    happy, sad = torch.tensor([EMOTION_PAD["happy"]]), torch.tensor([EMOTION_PAD["sad"]])
    idx = {e: EMOTIONS.index(e) for e in EMOTIONS}
    p = torch.rand(6, len(EMOTIONS), generator=torch.Generator().manual_seed(1)).softmax(1)

    def pull(weighted, reading=p):
        x = reading.clone().requires_grad_(True)
        space.guidance_loss(x, weighted).sum().backward()
        return -x.grad

    def summed(weighted, reading=p):
        x = reading.clone().requires_grad_(True)
        sum(w * space.distance(x, t) for w, t in weighted).sum().backward()
        return -x.grad

    misread = [(0.6, sad), (0.2, happy), (0.2, 0.5 * happy)]
    assert (pull(misread)[:, idx["sad"]] > 0).all() and (pull(misread)[:, idx["happy"]] <= 0).all()
    assert (summed(misread)[:, idx["happy"]] > 0).all()  # what the guidance did before
    # ... by |R| (0.21: happy and sad lie 171 degrees apart) at most, of a lone sad reading's pull
    ratio = pull(misread)[:, idx["sad"]] / pull([(1.0, sad)])[:, idx["sad"]]
    assert (ratio <= (0.6 * direction(sad) + 0.4 * direction(happy)).norm() * (1 + 1e-6)).all() and (ratio > 0.1).all()
    # exactly opposite readings of equal weight: no pull at all
    torch.testing.assert_close(pull([(0.5, happy), (0.5, -happy)]), torch.zeros_like(p))
    # readings that agree pull as their sum, a PAD point's loss is the sum
    agree = [(0.6, sad), (0.2, 2 * sad), (0.2, 0.7 * sad)]
    torch.testing.assert_close(pull(agree), summed(agree))
    torch.testing.assert_close(space.guidance_loss(p, agree), sum(w * space.distance(p, t) for w, t in agree))
    points = torch.rand(6, 3, generator=torch.Generator().manual_seed(2)) * 2 - 1
    torch.testing.assert_close(space.guidance_loss(points, misread), sum(w * space.distance(points, t) for w, t in misread))


def test_the_log_face_loss_keeps_pulling_where_the_linear_one_lets_go():
    """A face's P(happy) as a logistic output sigma(x) (the rest neutral), guided toward happy,
    c the target's credit of happy: the linear loss pulls x by c sigma (1 - sigma), next to
    nothing deep in the tail; the log loss by (c / 4)(1 - sigma): never harder than the linear
    loss at its steepest (c / 4, at x = 0), and about that hard where the face shows none of it."""
    happy = torch.tensor([EMOTION_PAD["happy"]])
    c = float(AffectSpace("scene").term_credit(direction(happy)).max())

    def face(x):
        p = torch.zeros(len(x), len(EMOTIONS))
        p[:, EMOTIONS.index("happy")] = x.sigmoid()
        return p + torch.nn.functional.one_hot(torch.tensor(EMOTIONS.index("neutral")), len(EMOTIONS)) * (1 - x.sigmoid())[:, None]

    x = torch.linspace(-14, 6, 201, requires_grad=True)  # x = 0 on the grid
    pull = {loss: -torch.autograd.grad(AffectSpace("scene", face_loss=loss).distance(face(x), happy).sum(), x)[0]
            for loss in FACE_LOSSES}
    assert all((p > 0).all() for p in pull.values())  # both pull toward the smile, everywhere
    assert pull["linear"].max() == pytest.approx(c / 4, rel=1e-5) and pull["log"].max() <= c / 4 * (1 + 1e-5)
    deep = x.detach() < -10  # sigma < 4.6e-5
    assert (pull["linear"][deep] < 1e-4 * c).all() and (pull["log"][deep] > 0.99 * c / 4).all()
    # no loss left once the face shows the term fully; a scene's PAD loss is the same either way
    torch.testing.assert_close(AffectSpace("scene", face_loss="log").distance(face(torch.tensor([30.0])), happy),
                               torch.zeros(1))
    point = torch.tensor([[0.2, -0.4, 0.1]])
    assert AffectSpace("scene", face_loss="log").distance(point, happy) == AffectSpace("scene").distance(point, happy)
    with pytest.raises(ValueError, match="unknown face loss 'square'; choose one of linear, log"):
        AffectSpace("scene", face_loss="square")


def test_a_face_the_mesh_barely_sees_is_pulled_as_weakly_as_its_presence_under_either_face_loss():
    """The mesh's face presence scales a face's emotion terms (`prototype_probabilities`): the
    linear loss's pull scales with them, and the log loss, a ratio that a common scale leaves as it
    is, is weighed by the presence. Read as the guidance reads a face (`guidance_reading`, then
    `guidance_loss` with EmoStyle's weights), for happy, sad and a mixed song."""
    g = torch.Generator().manual_seed(0)
    faces = torch.randn(4, 52, generator=g) * 3 - 4  # blendshape logits, from deep in the tail to shown
    logits = faces.repeat(3, 1)  # each face seen surely, half and a tenth
    presence = torch.tensor([1.0, 0.5, 0.1]).repeat_interleave(4)
    images = torch.zeros(12, 3, 8, 8)  # what the mesh is given; its reading comes from `logits`
    songs = {"happy": ("happy", "happy", "happy"), "sad": ("sad", "sad", "sad"), "mixed": ("sad", "happy", "sad")}
    for loss in FACE_LOSSES:
        for name, (audio, music, text) in songs.items():
            x = logits.clone().requires_grad_(True)
            space = AffectSpace("face", face_reader="blendshapes", face_loss=loss,
                                mesh=lambda images: (x.sigmoid(), None, presence))
            weighted = [(w, torch.tensor([EMOTION_PAD[term]])) for w, term in ((0.6, audio), (0.2, music), (0.2, text))]
            (grad,) = torch.autograd.grad(space.guidance_loss(space.guidance_reading(images), weighted).sum(), x)
            assert grad[:4].abs().sum() > 0, (loss, name)
            torch.testing.assert_close(grad[4:8], 0.5 * grad[:4], msg=f"{loss}, {name}")
            torch.testing.assert_close(grad[8:], 0.1 * grad[:4], msg=f"{loss}, {name}")


@pytest.mark.slow  # about 5 s on 2 idle cores; much longer on a loaded machine
def test_guidance_makes_faces_smile_or_frown(fer):
    """60 Adam steps (lr 0.02) on z of 4 DCGAN faces toward the PAD of 'happy' / of 'sad'.

    Measured on 8 faces (seed 0): mean FER happy 0.41 -> 0.99 toward happy, sad 0.09 -> 0.86
    toward sad; the faces stay recognisable (strip in the kit's notes).
    """
    from emostyle.models.dcgan import load_dcgan

    dcgan = load_dcgan(registry.path("dcgan-faces"))
    space = AffectSpace("face", fer=fer)
    z0 = dcgan.sample(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = fer(face_input(dcgan.render(z0))).softmax(1)
    for term in ("happy", "sad"):
        z = z0.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=0.02)
        target = torch.tensor([EMOTION_PAD[term]])
        for _ in range(60):
            loss = space.distance(space.encode_image(dcgan.render(z)), target).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            after = fer(face_input(dcgan.render(z))).softmax(1)
        k = EMOTIONS.index(term)
        assert after[:, k].mean() > before[:, k].mean() + 0.3
        assert (after[:, k] > before[:, k]).all()
