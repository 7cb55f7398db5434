"""The emotion of a sound in PAD, read by YAMNet's AudioSet classes, and whether a clip is music.

musicnn (`music_emotion`) was trained on songs' Last.fm tags: it hears a giggle or a sob as a
song and reads them against their sense (giggling pleasure -0.03, sobbing +0.02). YAMNet
(`emostyle.models.yamnet`) names what sounds in a clip among AudioSet's 521 classes (Gemmeke et
al. 2017), among them Giggle, "Crying, sobbing", Explosion and Rain.

A class's PAD point is the norm of its name in Warriner, Kuperman & Brysbaert (2013) (the
relation `music_emotion` uses for mood tags): the head word of each comma-separated name (an
English compound is named by its last word: a "Baby cry" is a cry, a "Power tool" a tool; "X of
Y" by X's), parenthesised glosses left out, an inflected word reduced to its lemma by the
regular English suffixes (`lemma`); a class with several names takes the mean of their points,
and a class none of whose heads is in the norms (65 of the 521, e.g. "Snicker", "Bleat")
carries no affect here. A clip's PAD is the score-weighted mean of the classes' points centred
on their plain mean (`music_emotion.evidence_pad`): YAMNet's scores are read as each class's
evidence as they are, because AudioSet's label frequencies (the priors that musicnn's tags are
divided by) do not ship with the model. Measured on Figure 3's sounds: giggling +0.36, sobbing
-0.37, explosion -0.31 (arousal +0.32); the raters' norms also make water and rain pleasant
words (+0.50, +0.40), so a thunderstorm heard as falling water reads pleasant (+0.28). No
constant is fitted to any sound.

Music is not read this way ("music" itself is a pleasant word: every song would read happy).
`is_music` sends a clip to the music reader when the class YAMNet scores highest, speech
aside (a song's words are the lyrics branch's to read), is music: AudioSet's Music subtree or
its Singing subtree.
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
_SUFFIXES = (("ies", "y"), ("es", ""), ("s", ""), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e"))


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
    A doubled final consonant before -ing or -ed is undone too ("sobbing" -> "sob")."""
    if word in table:
        return word
    for suffix, ending in _SUFFIXES:
        if word.endswith(suffix) and len(word) > len(suffix) + 1:
            stem = word[:-len(suffix)]
            for candidate in (stem + ending, stem[:-1] if suffix in ("ing", "ed") and stem[-1] == stem[-2] else None):
                if candidate and candidate in table:
                    return candidate
    return None


def class_pad(names: tuple[str, ...] | None = None, norms: str | Path | None = None) -> np.ndarray:
    """PAD points (classes, 3) of the class names (NaN rows: no head word in the norms)."""
    names = class_names() if names is None else names
    table = norms_table(norms)
    points = np.full((len(names), 3), np.nan)
    for i, name in enumerate(names):
        heads = []
        for part in re.sub(r"\(.*?\)", "", name).lower().split(","):
            words = re.findall(r"[a-z]+", part.split(" of ")[0])  # "Music of Africa" is music
            head = lemma(words[-1], table) if words else None
            if head:
                heads.append(table[head])
        if heads:
            points[i] = np.mean(heads, axis=0)
    return points


def sound_pad(scores: np.ndarray, names: tuple[str, ...] | None = None, norms: str | Path | None = None) -> np.ndarray:
    """PAD (3,) of a clip from YAMNet's class scores (classes,) in [0, 1] (see the module docstring)."""
    names = class_names() if names is None else names
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(names),):
        raise ValueError(f"expected one score per class ({len(names)}), got shape {scores.shape}")
    if not np.all((scores >= 0) & (scores <= 1)):
        raise ValueError("class scores must lie in [0, 1] (YAMNet's sigmoid scores, `class_scores`)")
    points = class_pad(names, norms)
    known = ~np.isnan(points[:, 0])
    return evidence_pad(scores[known], points[known])


def _span(names: tuple[str, ...], spans) -> np.ndarray:
    inside = np.zeros(len(names), dtype=bool)
    for first, last in spans:
        if first not in names or last not in names:
            raise ValueError(f"the class map has no {first!r} or {last!r}: not YAMNet's AudioSet classes")
        inside[names.index(first):names.index(last) + 1] = True
    return inside


def is_music(scores: np.ndarray, names: tuple[str, ...] | None = None) -> bool:
    """True when the class YAMNet scores highest, speech aside, is music or singing."""
    names = class_names() if names is None else names
    scores = np.where(_span(names, _SPEECH), -np.inf, np.asarray(scores, dtype=np.float64))
    return bool(_span(names, _MUSIC)[int(np.argmax(scores))])


def top_classes(scores: np.ndarray, names: tuple[str, ...] | None = None, k: int = 3) -> list[tuple[str, float]]:
    """The `k` classes YAMNet scores highest, with their scores."""
    names = class_names() if names is None else names
    order = np.argsort(-np.asarray(scores))[:k]
    return [(names[i], float(scores[i])) for i in order]
