"""The inputs of the paper's figures: songs with emotional lyrics, and semantically rich sounds.

The paper's songs are not public: the kit ships its own small set in `data/songs/` (made
by `data/make_songs.py`; lyrics beside each WAV). The eight sounds of Figure 3 are the
sound-guided paper's samples, fetched through the registry (`audio-<name>`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import registry

__all__ = ["Sample", "SOUNDS", "songs", "sounds", "SONGS_DIR"]

SOUNDS = ("drill", "explosion", "fire", "giggling", "raining", "sobbing", "thunderstorm", "wind")
SONGS_DIR = Path(__file__).resolve().parents[1] / "data" / "songs"


@dataclass(frozen=True)
class Sample:
    """An input audio file, its name, and what stands in for lyrics when it has none."""

    name: str
    path: Path
    lyrics: str | None = None  # the known lyrics (kit songs); None: transcribe
    label: str | None = None  # a text label for sounds without lyrics (paper 4.3.2)


def songs(folder: str | Path | None = None) -> list[Sample]:
    """The songs with emotional lyrics: every WAV in `folder` (default data/songs), with the
    lyrics of the .txt beside it when there is one."""
    folder = Path(folder) if folder else SONGS_DIR
    found = []
    for wav in sorted(folder.glob("*.wav")):
        text = wav.with_suffix(".txt")
        found.append(Sample(wav.stem, wav, lyrics=text.read_text().strip() if text.exists() else None))
    if not found:
        raise FileNotFoundError(f"no songs (*.wav) in {folder}")
    return found


def sounds(names: tuple[str, ...] = SOUNDS) -> list[Sample]:
    """The sound-guided samples (Figure 3) from the registry; their label is their name."""
    return [Sample(n, registry.path(f"audio-{n}"), label=n) for n in names]
