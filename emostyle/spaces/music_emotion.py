"""The emotion of a song in PAD (pleasure, arousal, dominance), read by musicnn's mood tags.

musicnn (`emostyle.models.musicnn`) gives the probability of each of the Million Song
Dataset's 50 Last.fm tags. Eight of them name a mood or feeling (`MOOD_TAGS`: happy, sad,
beautiful, mellow, chill, party, sexy, catchy); the others name a genre, an era, an
instrument or a voice and carry no affect here. Two mood-like tags are not words of the
norms and are left out too: "chillout" and "easy listening".

Each mood tag's PAD point is the norm of its word in Warriner, Kuperman & Brysbaert (2013),
"Norms of valence, arousal, and dominance for 13,915 English lemmas", Behavior Research
Methods 45:1191-1207 (registry entry `warriner-vad-norms`; columns V/A/D.Mean.Sum, ratings
on 1-9 scales), mapped to [-1, 1] about the scales' midpoint, which the raters were told
means "neutral": PAD = (mean - 5) / 4. Valence is read as pleasure (the two are the same
dimension in Mehrabian's and in the norms' sense).

musicnn's outputs estimate P(tag | audio), which carries each tag's prior: Last.fm listeners
tag songs "beautiful" or "mellow" about four times as often as "happy", whatever the music.
The evidence that the audio itself gives for a mood is the likelihood ratio
r_t = p_t / prior_t (Bayes' rule; the prior correction of classifier outputs of Saerens,
Latinne & Decaestecker 2002, Neural Computation 14:21-41). The priors are the frequencies of
the tags in the labels of the MSD top-50 tagging split (Choi, Fazekas & Sandler 2016,
"Automatic tagging using deep convolutional neural networks", ISMIR; repository
keunwoochoi/MSD_split_for_tagging at 2e08b89, `valid_y.npy` and `test_y.npy`, 41,174 songs:
its `train_y.npy` is not published), kept as counts in `_PRIOR_COUNTS`. A song's PAD is the
mood-evidence-weighted mean of the tags' points, centred on their plain mean:

    q_t = r_t / sum_s r_s,    PAD(song) = sum_t q_t PAD_t - mean_t PAD_t

so a song that gives no mood more evidence than another (every r_t equal, e.g. a typical
song, or one without any emotional tag) is at the neutral origin, and one whose evidence
all points to "happy" is at PAD_happy - mean. No constant is fitted to any song.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["MOOD_TAGS", "norms_table", "mood_tag_pad", "tags_pad", "evidence_pad", "music_emotion_pad"]

# The MSD tags that name a mood (musicnn spells "Mellow" with a capital), and their words in the norms.
MOOD_TAGS = {"happy": "happy", "sad": "sad", "beautiful": "beautiful", "Mellow": "mellow", "chill": "chill",
             "party": "party", "sexy": "sexy", "catchy": "catchy"}
# Songs carrying each mood tag among the 41,174 labelled songs of the validation and test
# sets of the MSD top-50 tagging split (see the module docstring): the tags' priors.
_PRIOR_COUNTS = {"happy": 125, "sad": 205, "beautiful": 529, "Mellow": 609, "chill": 430, "party": 244,
                 "sexy": 272, "catchy": 195}
_PRIOR_SONGS = 41174
_COLUMNS = ("V.Mean.Sum", "A.Mean.Sum", "D.Mean.Sum")
_MIDPOINT, _HALF_RANGE = 5.0, 4.0  # the 1-9 rating scales


def norms_table(norms: str | Path | None = None) -> dict[str, np.ndarray]:
    """{lemma: PAD (3,) in [-1, 1]} of the norms file (None: the registry's `warriner-vad-norms`)."""
    if norms is None:
        from emostyle import registry

        norms = registry.path("warriner-vad-norms")
    return _norms(str(norms))


@functools.lru_cache(maxsize=2)
def _norms(path: str) -> dict[str, np.ndarray]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not set(("Word", *_COLUMNS)) <= set(reader.fieldnames):
            raise ValueError(f"{path} is not the Warriner et al. (2013) norms file: it needs the columns Word, "
                             f"{', '.join(_COLUMNS)}; run `emostyle weights fetch warriner-vad-norms`")
        return {row["Word"]: (np.array([float(row[c]) for c in _COLUMNS]) - _MIDPOINT) / _HALF_RANGE
                for row in reader}


def mood_tag_pad(norms: str | Path | None = None) -> dict[str, np.ndarray]:
    """PAD (3,) in [-1, 1] of each of `MOOD_TAGS`, from the norms file (None: the registry's)."""
    table = norms_table(norms)
    missing = [w for w in MOOD_TAGS.values() if w not in table]
    if missing:
        raise ValueError(f"the norms file has no norms for {missing}: not the 13,915-lemma file of Warriner et al. "
                         "(2013)")
    return {tag: table[word] for tag, word in MOOD_TAGS.items()}


def tags_pad(probs: Mapping[str, float], norms: str | Path | None = None) -> np.ndarray:
    """PAD (3,) of a song from its tag probabilities {tag: p in [0, 1]} (see the module docstring).

    Tags outside `MOOD_TAGS` are ignored; every mood tag must be in `probs`.
    """
    points = mood_tag_pad(norms)
    missing = [tag for tag in points if tag not in probs]
    if missing:
        raise ValueError(f"tag probabilities lack the mood tags {missing}; pass musicnn's full output "
                         "(`tag_probabilities`)")
    p = np.array([float(probs[tag]) for tag in points])
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError(f"tag probabilities must lie in [0, 1]; got {dict(zip(points, p.tolist()))}")
    table = np.stack(list(points.values()))  # (tags, 3)
    return evidence_pad(p / (np.array([_PRIOR_COUNTS[tag] for tag in points]) / _PRIOR_SONGS), table)


def evidence_pad(evidence: np.ndarray, points: np.ndarray) -> np.ndarray:
    """sum_t q_t PAD_t - mean_t PAD_t with q_t = r_t / sum_s r_s: the evidence-weighted mean of
    the labels' PAD points (points, (labels, 3)) centred on their plain mean, so that evidence
    that favours no label over another reads neutral (see the module docstring)."""
    if evidence.sum() == 0:  # no label at all: nothing favours any of them
        return np.zeros(3)
    return evidence @ points / evidence.sum() - points.mean(axis=0)


def music_emotion_pad(path: str | Path, network=None, norms: str | Path | None = None) -> np.ndarray:
    """PAD (3,) of an audio file: musicnn's tag probabilities (`tag_probabilities`) through `tags_pad`.

    network: a loaded musicnn (None: the registry's, loaded once per process).
    """
    from emostyle.models.musicnn import tag_probabilities

    return tags_pad(tag_probabilities(path, network=network), norms)
