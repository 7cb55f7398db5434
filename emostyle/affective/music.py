"""The interface between sentiment polarity and emotional music (paper 3.2, Eq. 3).

M = Music(L, P): a music backend turns the lyrics L and their polarity P into a MIDI
piece. The offline composer (`composer.AffectiveComposer`) and the paper's GRU-EBS
(`gru_ebs`) both sit behind `MusicBackend`, so a profile picks one by name.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pretty_midi

__all__ = ["Polarity", "MusicBackend", "MIDI_CHARSET"]


NEUTRAL_SCORE = 0.05  # VADER's neutral band on the compound score
# The text encoding of a piece's lyric events (`pretty_midi.PrettyMIDI(charset=...)`). mido's
# default, Latin-1, cannot hold most of the world's lyrics (a Japanese lyric failed to save);
# Standard MIDI Files leave the encoding open, and UTF-8 is what current readers expect.
MIDI_CHARSET = "utf-8"


@dataclass(frozen=True)
class Polarity:
    """The sentiment polarity of the lyrics, and how it was obtained."""

    label: str  # "positive" | "negative"
    score: float  # signed strength in [-1, 1] (VADER compound, or +-1 for an LLM reply)
    backend: str  # "vader", "chatglm", ...
    raw: str | None = None  # the backend's raw reply/score text
    fallback: bool = False  # True when the reply was unusable and a fallback decided

    @property
    def emotion(self) -> str:
        """"positive", "negative", or "neutral" inside VADER's neutral band (|score| < 0.05,
        Hutto & Gilbert 2014): a sound whose label carries no sentiment has no polarity, even
        though the music stage needs one of the two labels to compose."""
        return "neutral" if abs(self.score) < NEUTRAL_SCORE else self.label

    def caption(self) -> str:
        """e.g. "negative (-0.62)" or "neutral (+0.00)", for figures and tables."""
        return f"{self.emotion} ({self.score:+.2f})"

    def to_json(self) -> dict:
        """For a run's manifest: the emotion read, and the label the music was composed with."""
        return {"label": self.label, "emotion": self.emotion, "score": self.score, "backend": self.backend,
                "fallback": self.fallback}

    def __post_init__(self):
        if self.label not in ("positive", "negative"):
            raise ValueError(f"polarity label {self.label!r}; expected 'positive' or 'negative'")
        if not -1.0 <= float(self.score) <= 1.0:
            raise ValueError(f"polarity score {self.score} outside [-1, 1]")


class MusicBackend(abc.ABC):
    """Lyrics and polarity in, a MIDI piece out (deterministic for a given seed)."""

    name: str

    @abc.abstractmethod
    def compose(self, lyrics: str, polarity: Polarity, seed: int) -> "pretty_midi.PrettyMIDI":
        """A piece for `lyrics` whose emotion follows `polarity`, drawn only from `seed`; made
        with `charset=MIDI_CHARSET`, so that it saves lyrics in any script."""
