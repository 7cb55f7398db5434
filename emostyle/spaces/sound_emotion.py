"""The emotion of a sound in PAD, read by YAMNet's AudioSet classes, and whether a clip is music.

musicnn (`music_emotion`) was trained on songs' Last.fm tags: it hears a giggle or a sob as a
song and reads them against their sense (giggling pleasure -0.03, sobbing +0.02). YAMNet
(`emostyle.models.yamnet`) names what sounds in a clip among AudioSet's 521 classes (Gemmeke et
al. 2017), among them Giggle, "Crying, sobbing", Explosion and Rain.

A class's PAD point is the norm of its name in Warriner, Kuperman & Brysbaert (2013) (the
relation `music_emotion` uses for mood tags): the head word of each of its names (the parts
between commas, "and" and "or"); an English compound is named by its last word (a "Baby cry" is
a cry, a "Power tool" a tool), a phrase by what precedes its preposition ("Music for children"
is music, "Rain on surface" rain); parenthesised glosses are left out, and an inflected word is
reduced to its lemma by the regular English suffixes (`lemma`). A class with several names takes
the mean of their points; a class none of whose heads is in the norms (e.g. "Snicker", "Bleat")
carries no affect here.

A clip's PAD is the score-weighted mean of its classes' points centred on their plain mean
(`music_emotion.evidence_pad`): YAMNet's scores are read as each class's evidence as they are,
because AudioSet's label frequencies (the priors that musicnn's tags are divided by) do not ship
with the model. Three kinds of class are left out of a sound's reading: music and singing (a
clip's music is the music reader's; "music" itself is a pleasant word, and "Sad music" would
read as music), and silence (no sound, no affect). No constant is fitted to any sound.

Routing (`is_music`): a clip is music when the class YAMNet scores highest over it, speech and
silence aside, is music or singing (a song's words are the lyrics branch's to read, and a song
may end in silence). Lyrics spoken over quiet chords are music by this rule though YAMNet scores
Music at 0.05-0.25 there, less than it scores Speech: a threshold on the music score would send
them to the sound reader, which does not hear their mode. Speech alone is decided by what else
YAMNet hears, at noise level: mostly a room or a radio (a sound, read about as the word "speech",
+0.09), sometimes a trace of music (read by the music model).
"""

from __future__ import annotations

import csv
import functools
import re
from pathlib import Path

import numpy as np

from emostyle.spaces.music_emotion import evidence_pad, norms_table

__all__ = ["class_names", "lemma", "class_pad", "sound_pad", "is_music", "top_classes"]

# Subtrees of the AudioSet ontology, as spans of YAMNet's class map (which lists the ontology
# depth first): first and last class name of each.
_SPEECH = (("Speech", "Speech synthesizer"),)
_MUSIC = (("Singing", "Humming"), ("Music", "Scary music"))
_SILENCE = (("Silence", "Silence"),)
_SUFFIXES = (("ies", "y"), ("es", ""), ("s", ""), ("ing", ""), ("ed", ""))
_PREPOSITIONS = r" (?:of|for|on|in|with|by|from|to|at) "
_SHORT_STEM = re.compile(r"(?:^|[^aeiou])[aeiou][^aeiouwxy]$")  # "bit", "writ": bite, write


@functools.lru_cache(maxsize=2)
def _class_map(path: str) -> tuple[str, ...]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "display_name" not in reader.fieldnames:
            raise ValueError(f"{path} is not YAMNet's class map (columns index, mid, display_name); "
                             "run `emostyle weights fetch yamnet-class-map`")
        return tuple(row["display_name"] for row in reader)


def class_names(path: str | Path | None = None) -> tuple[str, ...]:
    """YAMNet's class names in output order (None: the registry's `yamnet-class-map`)."""
    if path is None:
        from emostyle import registry

        path = registry.path("yamnet-class-map")
    return _class_map(str(path))


def lemma(word: str, table) -> str | None:
    """`word` (lower case) or its lemma by a regular English suffix, if `table` has it; else None.
    Before -ing or -ed, a short stem ending consonant-vowel-consonant is tried with its silent e
    first ("biting" -> bite, "writing" -> write), and a doubled final consonant is undone
    ("sobbing" -> sob)."""
    if word in table:
        return word
    for suffix, ending in _SUFFIXES:
        if word.endswith(suffix) and len(word) > len(suffix) + 1:
            stem = word[:-len(suffix)] + ending
            candidates = [stem]
            if suffix in ("ing", "ed"):
                candidates.insert(0 if _SHORT_STEM.search(stem) else 1, stem + "e")
                if stem[-1] == stem[-2]:
                    candidates.append(stem[:-1])
            for candidate in candidates:
                if candidate in table:
                    return candidate
    return None


def class_pad(names: tuple[str, ...] | None = None, norms: str | Path | None = None) -> np.ndarray:
    """PAD points (classes, 3) of the class names (NaN rows: no head word in the norms)."""
    names = class_names() if names is None else names
    table = norms_table(norms)
    points = np.full((len(names), 3), np.nan)
    for i, name in enumerate(names):
        heads = []
        for part in re.split(r",| and | or ", re.sub(r"\(.*?\)", "", name).lower()):
            words = re.findall(r"[a-z]+", re.split(_PREPOSITIONS, f" {part.strip()} ")[0])
            head = lemma(words[-1], table) if words else None
            if head:
                heads.append(table[head])
        if heads:
            points[i] = np.mean(heads, axis=0)
    return points


def sound_pad(scores: np.ndarray, names: tuple[str, ...] | None = None, norms: str | Path | None = None) -> np.ndarray:
    """PAD (3,) of a clip from YAMNet's class scores (classes,) in [0, 1] (see the module docstring)."""
    names = class_names() if names is None else names
    scores = _checked(scores, names)
    points = class_pad(names, norms)
    read = ~np.isnan(points[:, 0]) & ~_span(names, _MUSIC) & ~_span(names, _SILENCE)
    return evidence_pad(scores[read], points[read])


def _checked(scores: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(names),):
        raise ValueError(f"expected one score per class ({len(names)}), got shape {scores.shape}")
    if not np.all((scores >= 0) & (scores <= 1)):
        raise ValueError("class scores must lie in [0, 1] (YAMNet's sigmoid scores, `class_scores`)")
    return scores


def _span(names: tuple[str, ...], spans) -> np.ndarray:
    inside = np.zeros(len(names), dtype=bool)
    for first, last in spans:
        if first not in names or last not in names:
            raise ValueError(f"the class map has no {first!r} or {last!r}: not YAMNet's AudioSet classes")
        inside[names.index(first):names.index(last) + 1] = True
    return inside


def is_music(scores: np.ndarray, names: tuple[str, ...] | None = None) -> bool:
    """True when YAMNet hears a clip as music (see the module docstring); `scores`: the clip's
    (classes,), `yamnet.class_scores`."""
    names = class_names() if names is None else names
    scores = _checked(scores, names)
    clip = np.where(_span(names, _SPEECH) | _span(names, _SILENCE), -np.inf, scores)
    return bool(_span(names, _MUSIC)[int(np.argmax(clip))])


def top_classes(scores: np.ndarray, names: tuple[str, ...] | None = None, k: int = 3) -> list[tuple[str, float]]:
    """The `k` classes YAMNet scores highest, with their scores."""
    names = class_names() if names is None else names
    order = np.argsort(-np.asarray(scores))[:k]
    return [(names[i], float(scores[i])) for i in order]
