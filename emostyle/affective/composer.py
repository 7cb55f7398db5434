"""The offline music backend: an affective composer driven by music-emotion research.

The cues and their directions follow the reviews of Gabrielsson & Lindström (2010, "The role
of structure in the musical expression of emotions", Handbook of Music and Emotion) and
Juslin & Laukka (2004, "Expression, perception, and induction of musical emotions",
J. New Music Research 33(3)):

| cue          | positive (happy)               | negative (sad)               |
|--------------|--------------------------------|------------------------------|
| mode         | major                          | minor (harmonic)             |
| tempo        | fast, 100 + 60 i bpm           | slow, 80 - 25 i bpm          |
| register     | high (tonic near C5/G4), wide  | low (tonic near C4/G3), narrow |
| articulation | staccato (notes 60-40 % long)  | legato (notes 98 % long)     |
| dynamics     | loud, velocity 85 + 30 i       | soft, velocity 60 - 20 i     |
| timbre       | piano (bright attack)          | strings (soft attack)        |

i is the intensity |score| in [MIN_INTENSITY, 1]. The lyric's syllables set the rhythm
(one note per syllable, as a sung melody): a word's inner syllables take half a beat, its
last syllable a beat, and a phrase's last syllable two beats and a rest. A chord per bar
(I-V-vi-IV in major, i-VI-iv-V in minor) accompanies the melody.
"""

from __future__ import annotations

import re

import numpy as np
import pretty_midi

from emostyle.affective.music import MIDI_CHARSET, MusicBackend, Polarity

__all__ = ["AffectiveComposer", "syllables"]

MIN_INTENSITY = 0.25  # a neutral-sounding score (VADER 0.0) still gets a recognisable mood
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)  # the raised 7th gives minor keys their leading tone
_PROGRESSION = {"positive": (0, 4, 5, 3), "negative": (0, 5, 3, 4)}  # chord roots, scale degrees
_PROGRAM = {"positive": 0, "negative": 48}  # GM Acoustic Grand Piano / String Ensemble 1
_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+|[.,!?;:\u3002\uff0c\uff01\uff1f]")


def _vowel_groups(word: str) -> list[str]:
    """Split at vowel groups (fallback without pyphen): 'country' -> ['coun', 'try']."""
    parts = re.findall(r"[^aeiouy]*[aeiouy]+(?:[^aeiouy]*$|[^aeiouy](?=[^aeiouy]))?", word.lower())
    return parts or [word]


def syllables(lyrics: str) -> list[tuple[str, bool, bool]]:
    """(syllable, ends a word, ends a phrase) for each sung syllable of `lyrics`.

    Hyphenation by pyphen (en_US) when installed, else vowel groups; a CJK character is a
    syllable; punctuation ends a phrase.
    """
    try:
        import pyphen

        split = pyphen.Pyphen(lang="en_US").inserted
    except ImportError:
        split = None
    out: list[tuple[str, bool, bool]] = []
    for token in _TOKEN.findall(lyrics):
        if not token[0].isalnum():
            if out:
                out[-1] = (out[-1][0], True, True)
            continue
        if any("\u4e00" <= ch <= "\u9fff" for ch in token):
            parts = list(token)
        else:
            parts = split(token).split("-") if split else _vowel_groups(token)
        out += [(p, i == len(parts) - 1, False) for i, p in enumerate(parts) if p]
    if out:
        out[-1] = (out[-1][0], True, True)
    return out


class AffectiveComposer(MusicBackend):
    """Melody + chords whose mode, tempo, register, articulation and dynamics follow P.

    Deterministic: the same lyrics, polarity and seed give the same MIDI. The seed picks
    the key's tonic and the melody's steps. At most `max_syllables` syllables are set.
    """

    name = "composer"

    def __init__(self, max_syllables: int = 64):
        self.max_syllables = max_syllables

    def compose(self, lyrics: str, polarity: Polarity, seed: int) -> pretty_midi.PrettyMIDI:
        sung = syllables(lyrics)[: self.max_syllables]
        if not sung:
            raise ValueError(f"no syllables to set in lyrics {lyrics!r}; pass some text")
        sung[-1] = (sung[-1][0], True, True)
        rng = np.random.default_rng(seed)
        positive = polarity.label == "positive"
        i = float(np.clip(abs(polarity.score), MIN_INTENSITY, 1.0))

        tempo = 100 + 60 * i if positive else 80 - 25 * i
        scale = _MAJOR if positive else _HARMONIC_MINOR
        tonic = int(rng.integers(12))
        # Register: the tonic nearest C5 (G4 when mild) for positive, C4 (G3 when intense) for negative.
        anchor = (72 if i >= 0.5 else 67) if positive else (55 if i >= 0.5 else 60)
        base = anchor + ((tonic - anchor) % 12 + 6) % 12 - 6
        low, high = (0, 9) if positive else (-3, 5)  # walk range in scale degrees
        steps, weights = ((-2, -1, 1, 2, 3, 4), (1, 3, 4, 2, 1, 1)) if positive else ((-2, -1, 0, 1), (2, 4, 2, 2))
        p_steps = np.asarray(weights, float) / sum(weights)
        gate = (0.6 - 0.2 * i) if positive else 0.98
        velocity = (85 + 30 * i) if positive else (60 - 20 * i)
        beat = 60.0 / tempo

        pm = pretty_midi.PrettyMIDI(initial_tempo=tempo, charset=MIDI_CHARSET)
        pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
        pm.key_signature_changes.append(pretty_midi.KeySignature(tonic + (0 if positive else 12), 0.0))
        melody = pretty_midi.Instrument(_PROGRAM[polarity.label], name="melody")
        chords = pretty_midi.Instrument(_PROGRAM[polarity.label], name="chords")

        def pitch(degree: int) -> int:
            return base + scale[degree % 7] + 12 * (degree // 7)

        t, degree = 0.0, int(rng.integers(0, 3)) * 2  # start on the tonic triad
        for text, word_end, phrase_end in sung:
            length = 2.0 if phrase_end else (1.0 if word_end else 0.5)
            if phrase_end:  # cadence: land on the nearest tonic
                degree = 7 * round(degree / 7)
            vel = int(np.clip(velocity + rng.integers(-4, 5), 1, 127))
            melody.notes.append(pretty_midi.Note(vel, pitch(degree), t, t + length * beat * gate))
            pm.lyrics.append(pretty_midi.Lyric(text, t))
            t += (length + (1.0 if phrase_end else 0.0)) * beat
            degree = int(np.clip(degree + rng.choice(steps, p=p_steps), low, high))

        bars = int(np.ceil(t / (4 * beat)))
        progression = _PROGRESSION[polarity.label]
        for bar in range(bars):
            root = 0 if bar == bars - 1 else progression[bar % 4]
            triad = [pitch(root + k) - 12 for k in (0, 2, 4)]
            vel = int(np.clip(velocity - 20, 1, 127))
            hits = [(b, 0.5) for b in range(4)] if positive else [(0, 4 * gate)]  # staccato beats / held bar
            for start, length in hits:
                onset = (4 * bar + start) * beat
                chords.notes += [pretty_midi.Note(vel, p, onset, onset + length * beat) for p in triad]
        pm.instruments += [melody, chords]
        return pm
