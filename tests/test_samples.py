"""The songs a run reads: every audio file of a folder, with its lyrics beside it."""

import shutil

import pytest

from emostyle import samples


def test_a_folder_of_your_songs_in_any_audio_format_with_or_without_lyrics(tmp_path):
    shutil.copy(samples.SONGS_DIR / "sad_rain.wav", tmp_path / "b_rain.wav")
    (tmp_path / "a_song.flac").write_bytes(b"")  # read by name here; decoding is the pipeline's
    (tmp_path / "a_song.txt").write_text("  la la love \n")
    (tmp_path / "cover.jpg").write_bytes(b"")
    found = samples.songs(tmp_path)
    assert [(s.name, s.path.name, s.lyrics) for s in found] == [("a_song", "a_song.flac", "la la love"),
                                                                 ("b_rain", "b_rain.wav", None)]
    assert set(samples.songs_digest(tmp_path)) == {"a_song.flac", "a_song.txt", "b_rain.wav"}


def test_the_kit_songs_are_the_default_with_their_lyrics_and_the_mood_they_were_made_with():
    kit = samples.songs()
    assert [s.path.parent for s in kit] == [samples.SONGS_DIR] * len(kit) and all(s.lyrics for s in kit)
    assert {s.name: s.emotion for s in kit} == {"happy_sunshine": "positive", "joyful_love": "positive",
                                                "lonely_night": "negative", "sad_rain": "negative"}


def test_emotions_csv_states_a_songs_emotion_and_a_bad_row_says_which(tmp_path):
    for name in ("blue", "sunny"):
        (tmp_path / f"{name}.wav").write_bytes(b"")
    (tmp_path / "emotions.csv").write_text("song,emotion\nblue, Negative\n")
    assert [(s.name, s.emotion, s.direction("positive")) for s in samples.songs(tmp_path)] == [
        ("blue", "negative", "negative"), ("sunny", None, "positive")]  # unstated: the lyrics' polarity
    assert "emotions.csv" in samples.songs_digest(tmp_path)
    for text, error in (("song,emotion\ngreen,positive\n", r"emotions.csv:2: no song 'green'"),
                        ("song,emotion\nblue,melancholy\n", r"'melancholy' of blue is not positive or negative"),
                        ("name,mood\nblue,positive\n", "needs the columns song,emotion")):
        (tmp_path / "emotions.csv").write_text(text)
        with pytest.raises(ValueError, match=error):
            samples.songs(tmp_path)


def test_a_folder_without_songs_or_two_songs_of_one_name_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no songs folder at"):
        samples.songs(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="holds no WAV, FLAC, OGG or MP3"):
        samples.songs(tmp_path)
    (tmp_path / "x.wav").write_bytes(b"")
    (tmp_path / "x.MP3").write_bytes(b"")
    with pytest.raises(ValueError, match="share a name: x"):
        samples.songs(tmp_path)


def test_lyrics_beside_a_song_that_are_empty_or_not_text_are_refused_with_the_file_named(tmp_path):
    """An empty .txt read as lyrics of nothing (VADER's neutral 0, counted as a positive song), and
    a Latin-1 one raised a decoding traceback from deep inside pathlib."""
    (tmp_path / "blue.wav").write_bytes(b"")
    assert samples.known_lyrics(tmp_path / "blue.wav") is None
    (tmp_path / "blue.txt").write_bytes("caf\xe9 tears".encode("latin-1"))
    with pytest.raises(ValueError, match=r"blue\.txt, are not UTF-8 text"):
        samples.songs(tmp_path)
    (tmp_path / "blue.txt").write_text(" \n")
    with pytest.raises(ValueError, match=r"blue\.txt, are empty: write the song's lyrics in it, or remove it"):
        samples.songs(tmp_path)
    (tmp_path / "blue.txt").write_text("café tears\n")
    assert samples.known_lyrics(tmp_path / "blue.wav") == "café tears" == samples.songs(tmp_path)[0].lyrics
