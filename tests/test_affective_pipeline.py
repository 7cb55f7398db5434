"""affective_music(): the four steps end to end, backends by name or instance, and the cache."""

import json

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from emostyle.affective import MUSIC_BACKENDS, AffectiveResult, affective_music
from emostyle.affective.lyrics import LyricsBackend, Transcript
from emostyle.affective.music import MusicBackend, Polarity


class FakeLyrics(LyricsBackend):
    name = "fake"

    def __init__(self, text, language="en"):
        self.text, self.language, self.calls = text, language, 0

    def recognise(self, audio):
        self.calls += 1
        return Transcript(self.text, [(0.0, 1.0, self.text)], [], self.language, self.name)


@pytest.fixture
def song(tmp_path):
    sr = 16000
    t = np.arange(2 * sr) / sr
    sf.write(tmp_path / "song.wav", (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), sr)
    return tmp_path / "song.wav"


def test_happy_and_sad_songs_end_to_end(song, tmp_path):
    out = {}
    for mood, text in (("happy", "I love this sunny wonderful day, so happy!"),
                       ("sad", "I am so sad and lonely, my heart is broken.")):
        r = affective_music(song, lyrics_backend=FakeLyrics(text), renderer="additive", out_dir=tmp_path / mood)
        out[mood] = r
        assert r.midi_path.is_file() and r.wav_path.is_file() and r.renderer == "additive"
        assert set(r.timings) == {"load", "lyrics", "polarity", "categories", "music", "render", "total"}
        y, _ = sf.read(r.wav_path)
        assert np.abs(y).max() > 0.5
    assert (out["happy"].polarity.label, out["sad"].polarity.label) == ("positive", "negative")
    assert (out["happy"].categories.polarity, out["sad"].categories.top) == ("positive", "sadness")
    happy, sad = (pretty_midi.PrettyMIDI(str(out[m].midi_path)) for m in ("happy", "sad"))
    assert happy.get_tempo_changes()[1][0] > 100 > 80 > sad.get_tempo_changes()[1][0]
    assert happy.key_signature_changes[0].key_number < 12 <= sad.key_signature_changes[0].key_number


def test_the_category_lies_on_the_side_of_the_songs_polarity(song, tmp_path):
    """A sad lyric whose words the lexicon reads half content ("garden", "grows"): the category
    EmoGen would be given is a sad one, on the side of the polarity that guides EmoStyle."""
    text = "Winter came too early, the garden froze and died, nothing grows here now, only grief remains"
    r = affective_music(song, lyrics_backend=FakeLyrics(text), renderer="additive", out_dir=tmp_path)
    assert r.polarity.emotion == "negative"
    assert r.categories.polarity == "negative" and r.categories.top in ("fear", "sadness") and not r.categories.fallback


def test_lyrics_in_any_script_reach_the_midi_file(song, tmp_path):
    """The MIDI file keeps the sung syllables of lyrics that Latin-1 cannot hold, in UTF-8."""
    from emostyle.affective.composer import syllables
    from emostyle.affective.music import MIDI_CHARSET

    text = "今日はいい天気 ça va très bien"
    with pytest.warns(UserWarning, match="English only"):  # VADER reads English: the polarity is unsure
        r = affective_music(song, lyrics_backend=FakeLyrics(text, language="ja"), renderer="additive", out_dir=tmp_path)
    sung = [lyric.text for lyric in pretty_midi.PrettyMIDI(str(r.midi_path), charset=MIDI_CHARSET).lyrics]
    assert sung == [s for s, _, _ in syllables(text)] and "今" in sung and "très" in sung


def test_cache_hit_on_second_call(song, tmp_path):
    lyrics = FakeLyrics("I love this sunny day")
    kwargs = dict(lyrics_backend=lyrics, renderer="additive", out_dir=tmp_path / "out", cache_dir=tmp_path / "cache")
    first = affective_music(song, **kwargs)
    second = affective_music(song, **kwargs)
    assert lyrics.calls == 1 and not first.cached and second.cached
    assert (second.transcript, second.polarity, second.renderer) == (first.transcript, first.polarity, first.renderer)
    assert second.midi_path.read_bytes() == first.midi_path.read_bytes()
    (record,) = (tmp_path / "cache").glob("*/result.json")
    assert AffectiveResult.from_json(json.loads(record.read_text())).polarity == first.polarity
    affective_music(song, **{**kwargs, "seed": 1})  # other settings: a miss
    assert lyrics.calls == 2
    (record.parent / "music.wav").unlink()  # an incomplete record is a miss, not an error
    assert not affective_music(song, **kwargs).cached and lyrics.calls == 3


def test_a_reading_made_by_other_code_is_not_reused(song, tmp_path, monkeypatch):
    lyrics = FakeLyrics("I love this sunny day")
    kwargs = dict(lyrics_backend=lyrics, renderer="additive", out_dir=tmp_path / "out", cache_dir=tmp_path / "cache")
    affective_music(song, **kwargs)
    monkeypatch.setattr("emostyle.manifest.code_version", lambda: "0" * 64)  # an older (or newer) kit
    assert not affective_music(song, **kwargs).cached and lyrics.calls == 2


def test_non_english_lyrics_warn_with_vader(song, tmp_path):
    with pytest.warns(UserWarning, match="English only"):
        r = affective_music(song, lyrics_backend=FakeLyrics("Ich bin so traurig", language="de"),
                            renderer="additive", out_dir=tmp_path)
    assert r.transcript.language == "de"


def test_backends_by_name_and_bad_names(song, tmp_path):
    assert set(MUSIC_BACKENDS) == {"composer", "gru-ebs"}
    with pytest.raises(ValueError, match=r"unknown music backend 'mozart'; choose one of \['composer', 'gru-ebs'\]"):
        affective_music(song, lyrics_backend=FakeLyrics("hi there"), music_backend="mozart", out_dir=tmp_path)
    with pytest.raises(ValueError, match="choose one of"):
        affective_music(song, renderer="midi", out_dir=tmp_path)
    with pytest.raises(ValueError, match="must be a name or a MusicBackend"):
        affective_music(song, lyrics_backend=FakeLyrics("hi there"), music_backend=object(), out_dir=tmp_path)


def test_music_backend_instance_is_used(song, tmp_path):
    class OneNote(MusicBackend):
        name = "one-note"

        def compose(self, lyrics, polarity: Polarity, seed):
            pm = pretty_midi.PrettyMIDI(initial_tempo=90)
            inst = pretty_midi.Instrument(0)
            inst.notes.append(pretty_midi.Note(100, 60 + seed, 0.0, 1.0))
            pm.instruments.append(inst)
            return pm

    r = affective_music(song, lyrics_backend=FakeLyrics("hello"), music_backend=OneNote(), seed=3,
                        renderer="additive", out_dir=tmp_path)
    assert [n.pitch for n in pretty_midi.PrettyMIDI(str(r.midi_path)).instruments[0].notes] == [63]


@pytest.mark.slow
def test_jfk_offline_defaults(shared_data, tmp_path):
    pytest.importorskip("faster_whisper")
    r = affective_music(shared_data / "audio/speech/jfk.flac", out_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert "ask not what your country can do for you" in r.transcript.text.lower().replace(",", "")
    assert r.polarity.backend == "vader" and r.renderer in ("fluidsynth", "tinysoundfont", "additive")
    again = affective_music(shared_data / "audio/speech/jfk.flac", out_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert again.cached and again.transcript == r.transcript


def test_given_lyrics_replace_the_transcription(tmp_path, repo_root):
    from emostyle.affective import affective_music

    result = affective_music(repo_root / "data/songs/sad_rain.wav", out_dir=tmp_path, lyrics="what a happy lovely day")
    assert result.transcript.source == "given" and result.transcript.text == "what a happy lovely day"
    assert result.polarity.label == "positive"  # judged on the given words, not on the song
    with pytest.raises(ValueError, match="empty"):
        affective_music(repo_root / "data/songs/sad_rain.wav", out_dir=tmp_path, lyrics="   ")


def test_one_call_with_a_profile(tmp_path, monkeypatch, repo_root):
    from emostyle import registry
    from emostyle.affective import affective_music

    for name in ("whisper-ct2-base", "soundfont-timgm6mb"):  # the fetched files, from a fresh home
        monkeypatch.setenv(f"EMOSTYLE_WEIGHT_{name.upper().replace('-', '_')}", str(registry.path(name)))
    monkeypatch.setenv("EMOSTYLE_HOME", str(tmp_path / "home"))
    song = repo_root / "data/songs/happy_sunshine.wav"
    first = affective_music(song, "offline")
    assert first.polarity.label == "positive" and first.polarity.backend == "vader"
    assert first.midi_path.parent == tmp_path / "home" / "music" and first.wav_path.is_file()
    assert set(first.timings) >= {"lyrics", "polarity", "music", "render"}
    assert affective_music(song, "offline").cached  # cached by input hash under the kit's home
