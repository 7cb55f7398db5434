"""The song's emotion category: a distribution over EmoGen's eight EmoSet categories.

EmoStyle reduces the lyrics to a polarity; EmoGen (and EmoSet, after Mikels et al. 2005) works
with amusement, awe, contentment, excitement (positive) and anger, disgust, fear, sadness
(negative). Two backends read the lyrics:

- `LexiconCategories` (offline): the NRC Word-Emotion Association Lexicon (Mohammad & Turney
  2013; registry `nrc-emotion-lexicon`, the JSON of the `nrclex` wheel). NRC tags words with
  Plutchik's eight basic emotions, which are not EmoSet's: anger, disgust, fear and sadness map
  to themselves; the positive four are read through Plutchik's dyads (Plutchik 1980/2001):
  amusement ~ delight (joy + surprise), excitement ~ optimism (joy + anticipation),
  contentment ~ love/serenity (joy + trust), awe ~ surprise. Each matched word (an inflected
  form read as its lemma: "sobbing" as "sob", `_lemmas`) gives one unit
  per NRC emotion it carries, split evenly over the categories that emotion feeds (`NRC_TO_EMOSET`),
  and a word naming a category ("sad", "angry", "awe"; the lexicon lacks some) one unit to it;
  the distribution is the normalised sum (uniform, flagged `fallback`, when no word matches).
  The mapping is the kit's reading, not NRC's nor EmoGen's.
- `LLMCategories` (paper profiles): the paper's LLM (ChatGLM3) asked `PROMPT` + lyrics; the
  reply goes through the same reader as the polarity reply (`polarity.read_labels`); the named
  categories share the mass. A reply naming none falls back to the lexicon (`fallback=True`).

`Categories.polarity` is the positive/negative split of the distribution. The affective stage
keeps the categories on the side of the song's polarity (`Categories.within`), so that EmoGen is
given an emotion of the side EmoStyle is guided toward.
"""

from __future__ import annotations

import abc
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from emostyle.affective.polarity import LLMPolarity, read_labels
from emostyle.models.emogen import EMOTIONS, POSITIVE

__all__ = ["Categories", "CategoryBackend", "LexiconCategories", "LLMCategories", "NRC_TO_EMOSET", "PROMPT",
           "parse_category_reply"]

PROMPT = ("Judge the emotion category of these lyrics (one of amusement, awe, contentment, excitement, anger, "
          "disgust, fear, sadness):")

# Which EmoSet categories each NRC emotion feeds (see the module docstring); NRC's "positive"
# and "negative" sentiment tags are not emotions and are not used.
NRC_TO_EMOSET = {
    "joy": ("amusement", "contentment", "excitement"),
    "surprise": ("amusement", "awe"),
    "anticipation": ("excitement",),
    "trust": ("contentment",),
    "anger": ("anger",),
    "disgust": ("disgust",),
    "fear": ("fear",),
    "sadness": ("sadness",),
}
# Word beginnings that name each category in a reply ("amused", "angry", "scared", ...).
_FORMS = {"amusement": ("amus",), "awe": ("awe",), "contentment": ("contentment", "contented"), "excitement": ("excit",),
          "anger": ("anger", "angry", "angri"), "disgust": ("disgust",), "fear": ("fear", "afraid", "scared", "scary"),
          "sadness": ("sad",)}
_CHINESE = {"娱乐": "amusement", "愉悦": "amusement", "敬畏": "awe", "满足": "contentment", "兴奋": "excitement",
            "愤怒": "anger", "厌恶": "disgust", "恐惧": "fear", "悲伤": "sadness"}
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
# NRC lists lemmas ("cry", "sob", "giggle"), and lyrics inflect them: each (suffix, ending, shortest
# stem) turns an inflected form into a candidate lemma, tried in this order ("loved" -> "love", "cried"
# -> "cry", "dies" -> "die", "giggling" -> "giggle"). English doubles the consonant of a one-syllable
# consonant-vowel-consonant stem before "-ing" and "-ed" ("sob" -> "sobbing"), so such a stem is
# undoubled ("sobbing" -> "sob"), and an undoubled one is no lemma in itself: "scaring" is "scare",
# never "scar", "cured" "cure", never "cur". The shortest stem keeps short words from being read as
# inflections ("feed" is not "fee", nor "bring" "br").
_INFLECTIONS = (("s", "", 3), ("es", "", 3), ("ies", "y", 2), ("ed", "e", 3), ("ed", "", 3), ("ied", "y", 2),
                ("ied", "ie", 1), ("ing", "", 3), ("ing", "e", 3), ("ier", "y", 2), ("iest", "y", 2))
_VOWELS = "aeiou"


def _one_syllable_cvc(stem: str) -> bool:
    """Whether `stem` is one syllable ending consonant-vowel-consonant ("scar", "hop"; not "fear",
    "open", "snow"): the stems whose final consonant English doubles before "-ing" and "-ed"."""
    return (len(stem) >= 3 and stem[-1] not in _VOWELS + "wxy" and stem[-2] in _VOWELS and stem[-3] not in _VOWELS
            and not any(c in _VOWELS for c in stem[:-2]))


def _lemmas(word: str) -> list[str]:
    """Candidate lemmas of an inflected `word`, in `_INFLECTIONS` order."""
    found = []
    for suffix, ending, shortest in _INFLECTIONS:
        stem = word[: -len(suffix)]
        if not word.endswith(suffix) or len(stem) < shortest:
            continue
        participle = suffix in ("ed", "ing") and not ending
        if participle and _one_syllable_cvc(stem):
            continue  # "scaring": "scar" would have been doubled, so the lemma is "scare" (the next rule)
        found.append(stem + ending)
        if participle and stem[-1] == stem[-2] and _one_syllable_cvc(stem[:-1]):
            found.append(stem[:-1])  # "sobbing" -> "sob", "stopped" -> "stop" ("kissing" is "kiss", found first)
    return found


@dataclass(frozen=True)
class Categories:
    """A distribution over EMOTIONS and how it was obtained."""

    probs: dict  # category -> probability, in EMOTIONS order, summing to 1
    backend: str  # "nrc-lexicon", "chatglm", "chatglm->nrc-lexicon"
    raw: str | None = None  # the matched words, or the model's reply
    fallback: bool = False  # no evidence (uniform) or an unusable reply

    def __post_init__(self):
        if list(self.probs) != list(EMOTIONS):
            raise ValueError(f"categories must be given in the order {EMOTIONS}; got {list(self.probs)}")
        total = sum(self.probs.values())
        if min(self.probs.values()) < 0 or abs(total - 1) > 1e-6:
            raise ValueError(f"category probabilities must be >= 0 and sum to 1; got {self.probs}")

    @property
    def top(self) -> str:
        """The most probable category (the first in EMOTIONS order on a tie)."""
        return max(EMOTIONS, key=lambda e: self.probs[e])

    @property
    def caption(self) -> str:
        """`top` as a figure names it: without evidence (`fallback`, a uniform distribution) the
        top is only the first category of the tie, and the caption says so."""
        return f"none found ({self.top} as a tie-break)" if self.fallback else self.top

    @property
    def explained(self) -> str:
        """`caption` with the words the lexicon read in the lyrics ("excitement (the lexicon read:
        happened)"), so that a reader sees how thin the evidence is (a sound Whisper heard two words
        in); where none of them is of the song's side (`within`), it says so."""
        words = ", ".join(dict.fromkeys((self.raw or "").split())) if self.backend == "nrc-lexicon" else ""
        if not words:
            return self.caption
        if self.fallback:
            return f"{self.caption}: the lexicon read only {words}, none of the song's side"
        return f"{self.top} (the lexicon read: {words})"

    @property
    def positive(self) -> float:
        """P(amusement, awe, contentment or excitement)."""
        return float(sum(self.probs[e] for e in POSITIVE))

    @property
    def polarity(self) -> str:
        """"positive" when the positive categories hold at least half the mass."""
        return "positive" if self.positive >= 0.5 else "negative"

    def within(self, emotion: str) -> "Categories":
        """The distribution on the side of the song's polarity `emotion` ("positive": amusement, awe,
        contentment, excitement; "negative": the other four), renormalised; any other `emotion`
        ("neutral") leaves it whole. The lexicon counts words, not what a sentence says ("the garden
        froze and died ... only grief remains" gives half its mass to contentment, for "garden" and
        "grows"), and EmoGen compared beside EmoStyle should be given the emotion that EmoStyle is
        guided by. With no evidence on that side the side is uniform, flagged `fallback`."""
        if emotion not in ("positive", "negative"):
            return self
        side = POSITIVE if emotion == "positive" else tuple(e for e in EMOTIONS if e not in POSITIVE)
        mass = sum(self.probs[e] for e in side)
        if self.fallback or mass == 0:
            return Categories({e: 1.0 / len(side) if e in side else 0.0 for e in EMOTIONS}, self.backend, self.raw,
                              fallback=True)
        return Categories({e: self.probs[e] / mass if e in side else 0.0 for e in EMOTIONS}, self.backend, self.raw)

    def to_json(self) -> dict:
        return {"probs": dict(self.probs), "top": self.top, "polarity": self.polarity, "backend": self.backend,
                "raw": self.raw, "fallback": self.fallback}

    @classmethod
    def from_json(cls, d: dict) -> "Categories":
        return cls(dict(d["probs"]), d["backend"], d.get("raw"), d.get("fallback", False))


def _normalised(scores: dict[str, float]) -> dict[str, float]:
    total = sum(scores.values())
    return {e: scores[e] / total for e in EMOTIONS}


class CategoryBackend(abc.ABC):
    """Lyrics in, `Categories` out."""

    name: str

    @abc.abstractmethod
    def categorise(self, lyrics: str, language: str = "en") -> Categories:
        """The distribution of `lyrics` (ISO 639-1 `language`) over EmoGen's categories."""


class LexiconCategories(CategoryBackend):
    """NRC lexicon counts mapped to EmoSet's categories (NRC_TO_EMOSET). `lexicon`: a mapping
    word -> NRC emotions, or a JSON file of one; None reads the registry's `nrc-emotion-lexicon`."""

    name = "nrc-lexicon"

    def __init__(self, lexicon: dict[str, list[str]] | str | Path | None = None):
        if lexicon is None:
            from emostyle import registry

            lexicon = registry.path("nrc-emotion-lexicon")
        if not isinstance(lexicon, dict):
            try:
                lexicon = json.loads(Path(lexicon).read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise ValueError(f"cannot read the NRC lexicon {lexicon} ({error}); "
                                 f"run `emostyle weights fetch nrc-emotion-lexicon`") from None
        self.lexicon = {w.lower(): set(tags) & set(NRC_TO_EMOSET) for w, tags in lexicon.items()}

    def _tags(self, word: str) -> set[str]:
        if word in self.lexicon:
            return self.lexicon[word]
        for lemma in _lemmas(word):
            if lemma in self.lexicon:
                return self.lexicon[lemma]
        return set()

    def categorise(self, lyrics: str, language: str = "en") -> Categories:
        if not language.lower().startswith("en"):
            warnings.warn(f"the NRC lexicon is English; lyrics in {language!r} get unreliable categories",
                          stacklevel=2)
        scores = {e: 0.0 for e in EMOTIONS}
        matched = []
        for word in _WORD.findall(lyrics.lower().replace("\u2019", "'")):
            tags = self._tags(word)
            # The lexicon lacks some category words themselves ("sad"): naming one counts for it.
            named = [e for e, forms in _FORMS.items() if word.startswith(forms)]
            if tags or named:
                matched.append(word)
            for tag in tags:
                for category in NRC_TO_EMOSET[tag]:
                    scores[category] += 1.0 / len(NRC_TO_EMOSET[tag])
            for category in named:
                scores[category] += 1.0
        if not matched:
            return Categories({e: 1.0 / len(EMOTIONS) for e in EMOTIONS}, self.name, "", fallback=True)
        return Categories(_normalised(scores), self.name, " ".join(matched))


def parse_category_reply(text: str | None) -> list[str]:
    """The categories a model's reply names and does not negate, in EMOTIONS order ("The
    emotion is sadness." -> ["sadness"]; "not fear but awe" -> ["awe"]; 悲伤 -> ["sadness"])."""
    stated, _ = read_labels(text, _FORMS, _CHINESE, echoes=(PROMPT.lower(),))
    return [e for e in EMOTIONS if e in stated]


class LLMCategories(CategoryBackend):
    """The paper's LLM (shared with its polarity backend) asked PROMPT + lyrics."""

    def __init__(self, llm: LLMPolarity, fallback: CategoryBackend | None = None):
        self.llm, self._fallback = llm, fallback
        self.name = llm.name

    def categorise(self, lyrics: str, language: str = "en") -> Categories:
        raw = self.llm.ask(f"{PROMPT} {lyrics.strip()}")
        named = parse_category_reply(raw)
        if named:
            return Categories({e: (1.0 / len(named) if e in named else 0.0) for e in EMOTIONS}, self.name, raw)
        warnings.warn(f"{self.name} named no emotion category (reply {raw[:80]!r}); falling back to the NRC lexicon",
                      stacklevel=2)
        if self._fallback is None:
            self._fallback = LexiconCategories()
        lexicon = self._fallback.categorise(lyrics, language)
        return Categories(lexicon.probs, f"{self.name}->{lexicon.backend}", raw, fallback=True)
