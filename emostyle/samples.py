"""The inputs of the paper's figures: songs with emotional lyrics, and semantically rich sounds.

The paper's songs are not public: the kit ships its own small set in `data/songs/` (made
by `data/make_songs.py`; lyrics beside each WAV). The eight sounds of Figure 3 are the
sound-guided paper's samples, fetched through the registry (`audio-<name>`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from . import registry

__all__ = ["Sample", "SOUNDS", "songs", "songs_digest", "sounds", "SONGS_DIR", "AUDIO_SUFFIXES"]

SOUNDS = ("drill", "explosion", "fire", "giggling", "raining", "sobbing", "thunderstorm", "wind")
SONGS_DIR = Path(__file__).resolve().parents[1] / "data" / "songs"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")  # what `emostyle.audio.load_audio` decodes


@dataclass(frozen=True)
class Sample:
    """An input audio file, its name, and what stands in for lyrics when it has none."""

    name: str
    path: Path
    lyrics: str | None = None  # the known lyrics (kit songs); None: transcribe
    label: str | None = None  # a text label for sounds without lyrics (paper 4.3.2)


def songs(folder: str | Path | None = None) -> list[Sample]:
    """The songs with emotional lyrics: every audio file (WAV, FLAC, OGG, MP3) in `folder`
    (default data/songs), with the lyrics of the .txt beside it when there is one (without
    one, the pipeline transcribes the song)."""
    folder = Path(folder).expanduser() if folder else SONGS_DIR
    if not folder.is_dir():
        raise FileNotFoundError(f"no songs folder at {folder}: give a folder of songs (WAV, FLAC, OGG or MP3)")
    found = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES):
        text = path.with_suffix(".txt")
        found.append(Sample(path.stem, path, lyrics=text.read_text().strip() if text.exists() else None))
    if not found:
        raise FileNotFoundError(f"no songs in {folder}: it holds no WAV, FLAC, OGG or MP3 file")
    names = [s.name for s in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # a song's name keys its figures' rows and its cached music
        raise ValueError(f"songs in {folder} share a name: {', '.join(twice)} (e.g. a.wav and a.mp3); keep one of each")
    return found


def songs_digest(folder: str | Path | None = None) -> dict[str, str]:
    """{file name: sha256} of every song of `folder` (see `songs`) and its lyrics: what a run
    on those songs depends on."""
    files = []
    for s in songs(folder):
        files += [s.path] + [p for p in [s.path.with_suffix(".txt")] if p.exists()]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def sounds(names: tuple[str, ...] = SOUNDS) -> list[Sample]:
    """The sound-guided samples (Figure 3) from the registry; their label is their name."""
    return [Sample(n, registry.path(f"audio-{n}"), label=n) for n in names]
