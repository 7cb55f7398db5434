"""The inputs of the paper's figures: songs with emotional lyrics, and semantically rich sounds.

The paper's songs are not public: the kit ships its own small set in `data/songs/` (made
by `data/make_songs.py`; lyrics beside each WAV). The eight sounds of Figure 3 are the
sound-guided paper's samples, fetched through the registry (`audio-<name>`).

A folder of songs may state each song's emotion in `emotions.csv` (columns `song`, `emotion`:
positive or negative), as the person who chose or made the songs knows it. The studies then
count a song's results toward that emotion, not toward the polarity the pipeline reads from its
lyrics: a misread lyric is then seen as what it is, not counted as the song's way.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from . import registry

__all__ = ["Sample", "SOUNDS", "songs", "known_lyrics", "lyrics_file", "read_lyrics", "songs_digest", "sounds",
           "SONGS_DIR", "AUDIO_SUFFIXES", "EMOTIONS_FILE"]

SOUNDS = ("drill", "explosion", "fire", "giggling", "raining", "sobbing", "thunderstorm", "wind")
SONGS_DIR = Path(__file__).resolve().parents[1] / "data" / "songs"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")  # what `emostyle.audio.load_audio` decodes
EMOTIONS_FILE = "emotions.csv"
STATED = ("positive", "negative")


@dataclass(frozen=True)
class Sample:
    """An input audio file, its name, and what stands in for lyrics when it has none."""

    name: str
    path: Path
    lyrics: str | None = None  # the known lyrics (kit songs); None: transcribe
    label: str | None = None  # a text label for sounds without lyrics (paper 4.3.2)
    emotion: str | None = None  # positive or negative as a person states it (emotions.csv); None: not stated

    @property
    def stand_in(self) -> str | None:
        """What stands in for the transcript where no speech is heard: a sound's label, else a song's
        known lyrics (its .txt). The figures transcribe a song, as the paper does; an instrumental
        with a .txt is read by its .txt."""
        return self.label or self.lyrics

    def direction(self, polarity: str) -> str:
        """The emotion the song's results are counted toward: the stated one, else `polarity`
        (the one the pipeline read from the lyrics)."""
        return self.emotion or polarity


def songs(folder: str | Path | None = None) -> list[Sample]:
    """The songs with emotional lyrics: every audio file (WAV, FLAC, OGG, MP3) in `folder`
    (default data/songs), with the lyrics of the .txt beside it when there is one (without
    one, the pipeline transcribes the song) and its emotion where `emotions.csv` states it."""
    folder = Path(folder).expanduser() if folder else SONGS_DIR
    if folder.is_file():
        raise ValueError(f"{folder} is a file, not a folder of songs: give the folder that holds it "
                         "(`manipulate` takes one song)")
    if not folder.is_dir():
        raise FileNotFoundError(f"no songs folder at {folder}: give a folder of songs (WAV, FLAC, OGG or MP3)")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no songs in {folder}: it holds no WAV, FLAC, OGG or MP3 file")
    names = [p.stem for p in paths]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # a song's name keys its figures' rows and its cached music
        raise ValueError(f"songs in {folder} share a name: {', '.join(twice)} (e.g. a.wav and a.mp3); keep one of each")
    stated = _stated_emotions(folder / EMOTIONS_FILE, names)
    return [Sample(p.stem, p, known_lyrics(p), emotion=stated.get(p.stem)) for p in paths]


def lyrics_file(song: str | Path) -> Path:
    """Where a song's known lyrics are kept: the .txt of its name beside it."""
    return Path(song).expanduser().with_suffix(".txt")


def read_lyrics(path: str | Path, which: str = "the lyrics in {path}", otherwise: str = "") -> str:
    """The lyrics in a text file, stripped. One that is empty or not UTF-8 text is a one-line
    error naming it (`which`) that says so, not lyrics of nothing or of mojibake; `otherwise`:
    what else the user may do, appended to the empty file's error."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{which.format(path=path)} are not UTF-8 text; save them as UTF-8") from None
    if not text:
        raise ValueError(f"{which.format(path=path)} are empty: write the song's lyrics in it{otherwise}")
    return text


def known_lyrics(song: str | Path) -> str | None:
    """The lyrics in the song's `lyrics_file` (None: no such file; see `read_lyrics`)."""
    path = lyrics_file(song)
    if not path.is_file():
        return None
    return read_lyrics(path, "the lyrics beside the song, {path},", ", or remove it to have the song transcribed")


def _stated_emotions(path: Path, names: list[str]) -> dict[str, str]:
    """{song: emotion} of an `emotions.csv` (none: {}); a row that names no song of the folder,
    or an emotion other than positive or negative, is an error that says which."""
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"song", "emotion"} <= set(reader.fieldnames):
            raise ValueError(f"{path} needs the columns song,emotion (found {reader.fieldnames})")
        stated = {}
        for line, row in enumerate(reader, start=2):
            song, emotion = (row["song"] or "").strip(), (row["emotion"] or "").strip().lower()
            if song not in names:
                raise ValueError(f"{path}:{line}: no song {song!r} in the folder (songs: {', '.join(names)})")
            if emotion not in STATED:
                raise ValueError(f"{path}:{line}: emotion {row['emotion']!r} of {song} is not positive or negative")
            stated[song] = emotion
    return stated


def songs_digest(folder: str | Path | None = None) -> dict[str, str]:
    """{file name: sha256} of every song of `folder` (see `songs`), its lyrics and the stated
    emotions: what a run on those songs depends on."""
    found = songs(folder)
    files = [p for p in [found[0].path.parent / EMOTIONS_FILE] if p.exists()]
    for s in found:
        files += [s.path] + [p for p in [lyrics_file(s.path)] if p.exists()]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def sounds(names: tuple[str, ...] = SOUNDS) -> list[Sample]:
    """The sound-guided samples (Figure 3) from the registry; their label is their name."""
    return [Sample(n, registry.path(f"audio-{n}"), label=n) for n in names]
