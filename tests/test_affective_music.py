"""The affective composer (mode, tempo, register, rhythm from syllables) and MIDI rendering."""

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from emostyle.affective.composer import AffectiveComposer, syllables
from emostyle.affective.music import MusicBackend, Polarity
from emostyle.affective.render import RENDERERS, render_midi

HAPPY = "I feel so happy today, the sun is shining and I love you, what a wonderful day!"
SAD = "I am so sad and lonely, my heart is broken, tears fall in the cold dark night."
POS, NEG = Polarity("positive", 0.93, "vader"), Polarity("negative", -0.76, "vader")

# Krumhansl & Kessler (1982) key profiles, tonic first.
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _estimate_key(pm: pretty_midi.PrettyMIDI) -> tuple[int, str]:
    """Krumhansl-Schmuckler: the key whose profile best correlates with the duration-weighted pitch classes."""
    hist = np.zeros(12)
    for inst in pm.instruments:
        for n in inst.notes:
            hist[n.pitch % 12] += n.end - n.start
    scores = {(t, mode): np.corrcoef(hist, np.roll(profile, t))[0, 1]
              for t in range(12) for mode, profile in (("major", _KK_MAJOR), ("minor", _KK_MINOR))}
    return max(scores, key=scores.get)


@pytest.fixture(scope="module")
def pieces():
    composer = AffectiveComposer()
    return {seed: (composer.compose(HAPPY, POS, seed), composer.compose(SAD, NEG, seed)) for seed in (0, 1, 7)}


def test_syllables_set_the_rhythm():
    sung = syllables("Beautiful country, ask not!")
    assert [s for s, _, _ in sung] == ["Beau", "ti", "ful", "coun", "try", "ask", "not"]
    assert [(w, p) for _, w, p in sung] == [(False, False), (False, False), (True, False), (False, False),
                                           (True, True), (True, False), (True, True)]
    pm = AffectiveComposer().compose("Beautiful country, ask not!", POS, 0)
    melody = pm.instruments[0].notes
    assert len(melody) == 7 and [lyric.text for lyric in pm.lyrics][:3] == ["Beau", "ti", "ful"]
    beat = 60 / pm.get_tempo_changes()[1][0]
    onsets = np.diff([n.start for n in melody]) / beat
    # inner syllables half a beat, word end one beat, phrase end two beats + one beat rest
    np.testing.assert_allclose(onsets, [0.5, 0.5, 1.0, 0.5, 3.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_mode_tempo_register_follow_polarity(pieces, seed):
    happy, sad = pieces[seed]
    (happy_bpm,), (sad_bpm,) = happy.get_tempo_changes()[1], sad.get_tempo_changes()[1]
    assert happy_bpm == pytest.approx(100 + 60 * 0.93) and sad_bpm == pytest.approx(80 - 25 * 0.76)
    for pm, mode, third, not_third in ((happy, "major", 4, 3), (sad, "minor", 3, 4)):
        key = pm.key_signature_changes[0].key_number
        tonic = key % 12
        assert (key >= 12) == (mode == "minor")
        scale = (0, 2, 4, 5, 7, 9, 11) if mode == "major" else (0, 2, 3, 5, 7, 8, 11)
        pcs = {(n.pitch - tonic) % 12 for inst in pm.instruments for n in inst.notes}
        assert pcs <= set(scale) and third in pcs and not_third not in pcs
        assert _estimate_key(pm) == (tonic, mode)
    mean_pitch = [np.mean([n.pitch for n in pm.instruments[0].notes]) for pm in (happy, sad)]
    assert mean_pitch[0] > mean_pitch[1] + 7  # higher register when positive
    gate = [np.mean([n.end - n.start for n in pm.instruments[0].notes]) * bpm / 60
            for pm, bpm in ((happy, happy_bpm), (sad, sad_bpm))]
    assert gate[0] < gate[1]  # staccato vs legato, in beats
    velocity = [np.mean([n.velocity for n in pm.instruments[0].notes]) for pm in (happy, sad)]
    assert velocity[0] > velocity[1] + 30  # louder when positive


def test_intensity_scales_tempo():
    composer = AffectiveComposer()
    bpm = [composer.compose(HAPPY, Polarity("positive", s, "x"), 0).get_tempo_changes()[1][0] for s in (0.3, 0.9)]
    assert bpm[1] > bpm[0] > 100
    bpm = [composer.compose(SAD, Polarity("negative", -s, "x"), 0).get_tempo_changes()[1][0] for s in (0.3, 0.9)]
    assert bpm[1] < bpm[0] < 80


def test_seeded_and_deterministic(pieces, tmp_path):
    again = AffectiveComposer().compose(HAPPY, POS, 0)
    first = pieces[0][0]
    assert [(n.pitch, n.start, n.velocity) for n in again.instruments[0].notes] == \
        [(n.pitch, n.start, n.velocity) for n in first.instruments[0].notes]
    other = pieces[1][0]
    assert [n.pitch for n in other.instruments[0].notes] != [n.pitch for n in first.instruments[0].notes]
    first.write(str(tmp_path / "a.mid"))  # the tempo survives a MIDI file round trip
    assert pretty_midi.PrettyMIDI(str(tmp_path / "a.mid")).get_tempo_changes()[1][0] == pytest.approx(
        first.get_tempo_changes()[1][0], rel=1e-3)


def test_composer_is_a_music_backend_and_rejects_empty_lyrics():
    assert isinstance(AffectiveComposer(), MusicBackend)
    with pytest.raises(ValueError, match="no syllables"):
        AffectiveComposer().compose(" ,.! ", POS, 0)


def test_long_lyrics_are_capped():
    pm = AffectiveComposer(max_syllables=20).compose(HAPPY * 10, POS, 0)
    assert len(pm.instruments[0].notes) == 20


@pytest.mark.parametrize("renderer", ["tinysoundfont", "additive", "auto"])
def test_render_non_silent(pieces, tmp_path, renderer):
    pytest.importorskip("tinysoundfont") if renderer == "tinysoundfont" else None
    pm = pieces[0][1]
    used = render_midi(pm, tmp_path / "m.wav", renderer, sr=22050)
    assert used == renderer or renderer == "auto"
    y, sr = sf.read(tmp_path / "m.wav")
    assert sr == 22050 and y.ndim == 1
    assert len(y) / sr == pytest.approx(pm.get_end_time() + 1.0, abs=0.05)
    assert np.abs(y).max() == pytest.approx(0.9, abs=1e-3)
    frames = y[: len(y) // sr * sr].reshape(-1, sr)  # one-second frames
    active = np.sqrt(np.mean(frames ** 2, axis=1)) > 0.01
    assert active[: int(pm.get_end_time())].mean() > 0.8  # sound through the piece, not one click


def test_render_rejects_bad_input(tmp_path):
    pm = AffectiveComposer().compose(HAPPY, POS, 0)
    with pytest.raises(ValueError, match="choose one of"):
        render_midi(pm, tmp_path / "m.wav", "timidity")
    with pytest.raises(ValueError, match="no notes"):
        render_midi(pretty_midi.PrettyMIDI(), tmp_path / "m.wav")
    with pytest.raises(FileNotFoundError, match="soundfont-timgm6mb"):
        render_midi(pm, tmp_path / "m.wav", "tinysoundfont", soundfont=tmp_path / "none.sf2")
    assert RENDERERS[0] == "auto"
    try:
        import fluidsynth  # noqa: F401
    except ImportError:  # named explicitly, a missing renderer says how to get it
        with pytest.raises(ImportError, match="pip install pyfluidsynth"):
            render_midi(pm, tmp_path / "m.wav", "fluidsynth")
