"""GRU-EBS music backend (paper Eq. 3): M = GRU-EBS(L, P).

The lyrics L, split into syllables, seed the lyrics-to-melody generator; emotion-based beam search
(EBS) then continues lyrics and melody together, keeping the candidates that the emotion classifier
finds closest to the polarity P. One note per syllable; the MIDI is written at 120 bpm.
Follows BaoChunhui/Generate-Emotional-Music `GRU_EBS.py`, with these documented departures:
- seeds are the syllables of the whole lyric (the paper: "using the lyrics as seeds"); EmoStyle's
  code keeps the first 5 words (`seed_words=5`) and feeds each word as one syllable;
- the encoder starts every pass from a zero state (the official script carries the state of the
  previous beam over);
- words the vocabularies do not know are dropped with a warning (the official script fails on them).
"""

from __future__ import annotations

import codecs
import functools
import json
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from emostyle.affective.music import MIDI_CHARSET, MusicBackend, Polarity
from emostyle.models.gru_ebs import GruEbsGenerator, load_generator
from emostyle.models.gru_ebs_classifier import CLASSES, EmotionClassifier, load_classifier

__all__ = [
    "SkipGram", "read_vocabulary", "syllabify", "Melody", "emotional_beam_search",
    "parse_note", "melody_to_midi", "GruEbsComposer",
]

TEMPO = 120.0  # bpm: one beat (the token's duration and rest unit) is 0.5 s


# -- reading the official files (gensim pickles and numpy-pickled dicts) without running their code

class _Record:
    """Stands in for every class a pickle names: keeps the state it is given, runs nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and plain containers; any other global becomes an inert `_Record`."""

    def find_class(self, module, name):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own array reconstructor
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("_codecs", "encode"):
            return codecs.encode  # how protocol-2 pickles carry bytes
        if (module, name) == ("collections", "defaultdict"):
            return lambda *_: {}
        return type(name, (_Record,), {})


def _unpickle(stream, path: Path):
    try:
        return _RestrictedUnpickler(stream, encoding="latin1").load()
    except Exception as err:  # a malformed pickle of any kind: one clear message
        raise ValueError(f"{path} is not a readable pickle ({type(err).__name__}: {err}); "
                         "the file may be truncated or not the expected one") from None


def _check_file(path: str | Path, name: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name} not found at {path}; run `emostyle weights fetch {name}`")
    return path


class SkipGram:
    """A skip-gram embedding table: `keys` in model order, `vectors` (V, D) float32, `index` key -> row."""

    def __init__(self, keys, vectors):
        self.keys = list(keys)
        self.vectors = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
        if self.vectors.dim() != 2 or self.vectors.shape[0] != len(self.keys):
            raise ValueError(f"expected {len(self.keys)} vectors (V, D); got {tuple(self.vectors.shape)}")
        self.index = {k: i for i, k in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @classmethod
    def from_file(cls, path: str | Path, name: str = "gru-ebs-skipgram") -> "SkipGram":
        """Read a gensim `Word2Vec.save` file (gensim 3 or 4), e.g. `syllEncoding_skipgram_dim_128.bin`;
        large vectors sit beside it in `<path>.wv.vectors.npy`. gensim itself is not needed."""
        path = _check_file(path, name)
        with open(path, "rb") as f:
            model = _unpickle(f, path)
        wv = getattr(model, "wv", model)
        keys = getattr(wv, "index_to_key", None) or getattr(wv, "index2word", None)
        if not isinstance(keys, list):
            raise ValueError(f"{path}: not a gensim Word2Vec/KeyedVectors file (no vocabulary found)")
        vectors = getattr(wv, "vectors", None)
        if vectors is None:  # gensim stored the array separately
            side = path.with_name(path.name + (".wv.vectors.npy" if wv is not model else ".vectors.npy"))
            vectors = np.load(_check_file(side, name), allow_pickle=False)
        return cls(keys, vectors)


def read_vocabulary(path: str | Path, name: str = "gru-ebs-vocabulary") -> dict[str, int]:
    """A token -> index vocabulary: JSON, or the official numpy-pickled dict (`saved_model/*.npy`)."""
    path = _check_file(path, name)
    if path.suffix == ".npy":
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            read_header(f)
            vocabulary = _unpickle(f, path)[()]
    else:
        try:
            vocabulary = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a JSON vocabulary: {err}") from None
    if not isinstance(vocabulary, dict) or sorted(vocabulary.values()) != list(range(len(vocabulary))):
        raise ValueError(f"{path}: expected a dict token -> index with indices 0..n-1")
    return vocabulary


# -- lyrics to syllables

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")


@functools.lru_cache(maxsize=None)
def _hyphenator(lang: str):
    import pyphen

    return pyphen.Pyphen(lang=lang)


def _known(token: str, vocabulary) -> str | None:
    """The vocabulary's spelling of `token`: as written, else lower-cased."""
    for form in (token, token.lower()):
        if form in vocabulary:
            return form
    return None


def syllabify(text: str, vocabulary, lang: str = "en_US") -> list[tuple[str, str]]:
    """(syllable, word) pairs of `text`, spelled as in `vocabulary` (a container of syllables).

    Words are split by pyphen's hyphenation dictionary; a word whose pieces are not all known is
    kept whole when the vocabulary knows it (the official script feeds whole words as syllables),
    and dropped with a warning otherwise.
    """
    pairs, dropped = [], []
    for word in _WORD.findall(text):
        dic = _hyphenator(lang)
        cuts = [0, *dic.positions(word), len(word)]
        pieces = [_known(word[a:b], vocabulary) for a, b in zip(cuts, cuts[1:])]
        if all(pieces):
            pairs += [(piece, word) for piece in pieces]
        elif whole := _known(word, vocabulary):
            pairs.append((whole, word))
        else:
            dropped.append(word)
    if dropped:
        warnings.warn(f"GRU-EBS: words outside the syllable vocabulary were dropped: {dropped}", stacklevel=2)
    return pairs


# -- emotion-based beam search

_EARLY_LENGTH, _EARLY_SCORE = 22, 0.9  # the official stop: every beam scores > 0.9 past 22 syllables


def emotional_beam_search(
    generator: GruEbsGenerator,
    seed_inputs: torch.Tensor,
    seed_syllables: list[int],
    embed: Callable[[int], torch.Tensor],
    classifier: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
    emotion: str | None,
    rng: torch.Generator,
    *,
    b1: int = 3,
    b2: int = 3,
    b3: int = 5,
    syllable_penalty: float = 0.5,
    note_penalty: float = 0.9,
    out_len: int = 30,
    first_note_max: int = 100,
) -> list[tuple[list[int], list[int], float]]:
    """Continue seed lyrics with (syllable, note) pairs whose emotion follows `emotion`.

    seed_inputs (n, E): lyric vectors of the n seed syllables (generator indices `seed_syllables`);
    `embed(i)` is the lyric vector (E,) of generated syllable i. The first seed note is drawn from
    [0, first_note_max] with `rng`, the others are the generator's greedy notes. Each step every beam
    proposes its b1 best syllables x b2 best notes (probabilities of already used syllables scaled
    by `syllable_penalty`, of used notes by `note_penalty`); `classifier(syllables, notes)` (N, T) ->
    logits over `CLASSES` scores each extended sequence and the b3 most `emotion`-like survive.
    Without a classifier (emotion None) each beam takes one candidate at random (from `rng`).
    Stops past `out_len` syllables, or past 22 when every beam scores > 0.9.
    Returns the beams, best first, as (syllable indices, note indices, score).
    """
    if (classifier is None) != (emotion is None):
        raise ValueError("give both a classifier and an emotion, or neither")
    if emotion is not None and emotion not in CLASSES:
        raise ValueError(f"emotion {emotion!r}; expected one of {CLASSES}")
    if min(b1, b2, b3) < 1:
        raise ValueError(f"beam sizes b1, b2, b3 must be >= 1; got {b1}, {b2}, {b3}")
    if len(seed_syllables) == 0 or len(seed_syllables) != len(seed_inputs):
        raise ValueError("need one lyric vector per seed syllable, and at least one syllable")
    device = seed_inputs.device
    n_notes = generator.decoder.fc.out_features
    notes = [int(torch.randint(0, min(first_note_max, n_notes - 1) + 1, (1,), generator=rng))]
    with torch.no_grad():
        for i in range(1, len(seed_syllables)):
            _, note_logits = generator.next_logits(seed_inputs[:i, None], torch.tensor(notes, device=device)[:, None])
            notes.append(int(note_logits[0].argmax()))
        beams = [(list(seed_syllables), list(seed_inputs), notes, 0.5)]
        while True:
            lyrics = torch.stack([torch.stack(inputs) for _, inputs, _, _ in beams], dim=1)  # (T, B, E)
            music = torch.tensor([b[2] for b in beams], device=device).T  # (T, B)
            syllable_logits, note_logits = generator.next_logits(lyrics, music)
            syllable_probs, note_probs = syllable_logits.softmax(-1), note_logits.softmax(-1)
            candidates = []
            for k, (syllables, _, beam_notes, _) in enumerate(beams):
                syllable_probs[k, sorted(set(syllables))] *= syllable_penalty
                note_probs[k, sorted(set(beam_notes))] *= note_penalty
                best_syllables = syllable_probs[k].topk(min(b1, syllable_probs.shape[1])).indices.tolist()
                best_notes = note_probs[k].topk(min(b2, note_probs.shape[1])).indices.tolist()
                candidates.append([(s, m) for s in best_syllables for m in best_notes])
            beams = _select(beams, candidates, embed, classifier, emotion, rng, b3)
            if beams[-1][3] > _EARLY_SCORE and len(beams[0][0]) > _EARLY_LENGTH:
                break
            if len(beams[0][0]) > out_len:
                break
    return [(syllables, notes, score) for syllables, _, notes, score in beams]


def _select(beams, candidates, embed, classifier, emotion, rng, b3):
    """Extend the beams by their candidate pairs; keep the b3 that the classifier rates most `emotion`."""
    if classifier is None:
        picks = [pairs[int(torch.randint(len(pairs), (1,), generator=rng))] for pairs in candidates]
        return [(s + [syl], x + [embed(syl)], m + [note], 0.5) for (s, x, m, _), (syl, note) in zip(beams, picks)]
    extended = [(k, syl, note) for k, pairs in enumerate(candidates) for syl, note in pairs]
    device = beams[0][1][0].device
    syllables = torch.tensor([beams[k][0] + [syl] for k, syl, _ in extended], device=device)
    notes = torch.tensor([beams[k][2] + [note] for k, _, note in extended], device=device)
    scores = classifier(syllables, notes).softmax(-1)[:, CLASSES.index(emotion)].tolist()
    ranked = sorted(range(len(extended)), key=lambda i: -scores[i])[:b3]  # stable: ties keep proposal order
    out = []
    for i in ranked:
        k, syl, note = extended[i]
        s, x, m, _ = beams[k]
        out.append((s + [syl], x + [embed(syl)], m + [note], scores[i]))
    return out


# -- tokens to MIDI

_NOTE = re.compile(r"p_([0-9.]+)\^d_([0-9.]+)\^r_([0-9.]+)")


def parse_note(token: str) -> tuple[int, float, float]:
    """`p_{pitch}^d_{duration}^r_{rest}` -> (MIDI pitch, duration in beats, rest before it in beats)."""
    match = _NOTE.fullmatch(token)
    if not match:
        raise ValueError(f"not a GRU-EBS music token: {token!r}; expected p_<pitch>^d_<duration>^r_<rest>")
    pitch, duration, rest = (float(g) for g in match.groups())
    return int(pitch), duration, rest


def melody_to_midi(notes: list[str], syllables: list[str] | None = None, tempo: float = TEMPO,
                   program: int = 1, velocity: int = 100):
    """One MIDI note per token as the official decoder writes them: durations and rests in beats
    at `tempo` bpm, each token's rest is the silence before it (the first note starts at 0).
    `syllables`, when given, become MIDI lyric events at the note onsets."""
    import pretty_midi

    if syllables is not None and len(syllables) != len(notes):
        raise ValueError(f"{len(syllables)} syllables for {len(notes)} notes; expected one note per syllable")
    beat = 60.0 / tempo
    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo, charset=MIDI_CHARSET)
    voice = pretty_midi.Instrument(program=program)
    time = 0.0
    for i, token in enumerate(notes):
        pitch, duration, rest = parse_note(token)
        if i > 0:
            time += rest * beat
        voice.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=time, end=time + duration * beat))
        if syllables is not None:
            midi.lyrics.append(pretty_midi.Lyric(syllables[i], time))
        time += duration * beat
    midi.instruments.append(voice)
    return midi


# -- the backend

@dataclass(frozen=True)
class Melody:
    """A generated song: one note token per syllable; the first `n_seed` syllables are the lyrics'."""

    syllables: list[str]
    notes: list[str]
    score: float  # the classifier's probability of the requested polarity
    n_seed: int


class GruEbsComposer(MusicBackend):
    """M = GRU-EBS(L, P): the paper's emotional music backend (deterministic for a given seed)."""

    name = "gru-ebs"

    def __init__(self, generator: GruEbsGenerator, classifier: EmotionClassifier, syllables: SkipGram,
                 words: SkipGram, music_vocabulary: dict[str, int], classifier_vocabulary: dict[str, int],
                 *, b1: int = 3, b2: int = 3, b3: int = 5, syllable_penalty: float = 0.5,
                 note_penalty: float = 0.9, out_len: int = 30, seed_words: int | None = None,
                 device: str | torch.device = "cpu"):
        if generator.input_size != words.dim + syllables.dim:
            raise ValueError(f"the generator reads {generator.input_size}-d lyric vectors; the word and "
                             f"syllable skip-grams give {words.dim} + {syllables.dim}")
        sizes = {
            "generator syllables / syllable skip-gram": (generator.encoder.fc.out_features, len(syllables)),
            "generator notes / music vocabulary": (generator.decoder.fc.out_features, len(music_vocabulary)),
            "classifier notes / music vocabulary": (classifier.music_embeddings.num_embeddings, len(music_vocabulary)),
            "classifier syllables / its vocabulary": (classifier.word_embeddings.num_embeddings,
                                                      len(classifier_vocabulary)),
        }
        for what, (a, b) in sizes.items():
            if a != b:
                raise ValueError(f"size mismatch, {what}: {a} vs {b}; use matching checkpoint and vocabulary files")
        unknown = [k for k in syllables.keys if k not in classifier_vocabulary]
        if unknown:
            raise ValueError(f"{len(unknown)} generator syllables are not in the classifier vocabulary "
                             f"(e.g. {unknown[:3]}); use syllable_vocabulary.json")
        if min(b1, b2, b3) < 1 or not (0 < syllable_penalty <= 1 and 0 < note_penalty <= 1):
            raise ValueError("b1, b2, b3 must be >= 1 and the penalties in (0, 1]")
        if seed_words is not None and seed_words < 1:
            raise ValueError(f"seed_words must be >= 1 or None (all words); got {seed_words}")
        self.device = torch.device(device)
        self.generator = generator.eval().to(self.device)
        self.classifier = classifier.eval().to(self.device)
        self.syllables, self.words = syllables, words
        self.notes = sorted(music_vocabulary, key=music_vocabulary.get)  # index -> token
        self.to_classifier = torch.tensor([classifier_vocabulary[k] for k in syllables.keys], device=self.device)
        self.options = dict(b1=b1, b2=b2, b3=b3, syllable_penalty=syllable_penalty, note_penalty=note_penalty,
                            out_len=out_len)
        self.seed_words = seed_words
        self._word_vectors: dict[str, torch.Tensor] = {}

    @classmethod
    def from_files(cls, generator: str | Path, classifier: str | Path, syllable_skipgram: str | Path,
                   word_skipgram: str | Path, music_vocabulary: str | Path, syllable_vocabulary: str | Path,
                   **options) -> "GruEbsComposer":
        """From the official files: `GRU_generator_*.pkl`, `LSTM_datasetlen_*_clf.pkl`, the gensim
        skip-grams `syllEncoding_skipgram_dim_128.bin`, `wordLevelEncoder_skipgram_dim_128.bin`, and the
        vocabularies `music_vocabulary_50` and `syllable_vocabulary` (.json or the original .npy)."""
        return cls(load_generator(generator), load_classifier(classifier),
                   SkipGram.from_file(syllable_skipgram, "gru-ebs-syllable-skipgram"),
                   SkipGram.from_file(word_skipgram, "gru-ebs-word-skipgram"),
                   read_vocabulary(music_vocabulary, "gru-ebs-music-vocabulary"),
                   read_vocabulary(syllable_vocabulary, "gru-ebs-syllable-vocabulary"), **options)

    def melody(self, lyrics: str, polarity: Polarity, seed: int) -> Melody:
        """The syllables and note tokens GRU-EBS makes of `lyrics` under `polarity`."""
        pairs = syllabify(" ".join(_WORD.findall(lyrics)[: self.seed_words]), self.syllables.index)
        if not pairs:
            raise ValueError(f"no word of the lyrics {lyrics[:60]!r} is in the GRU-EBS syllable vocabulary")
        seed_inputs = torch.stack([self._lyric_vector(syllable, word) for syllable, word in pairs])
        rng = torch.Generator().manual_seed(int(seed))
        beams = emotional_beam_search(
            self.generator, seed_inputs, [self.syllables.index[s] for s, _ in pairs], self._generated_vector,
            lambda syllables, notes: self.classifier(self.to_classifier[syllables], notes), polarity.label,
            rng, **self.options)
        syllables, notes, score = beams[0]
        return Melody([self.syllables.keys[i] for i in syllables], [self.notes[i] for i in notes], score, len(pairs))

    def compose(self, lyrics: str, polarity: Polarity, seed: int):
        """A `pretty_midi.PrettyMIDI` at 120 bpm: one note per syllable, the syllables as lyric events."""
        melody = self.melody(lyrics, polarity, seed)
        return melody_to_midi(melody.notes, melody.syllables)

    def _lyric_vector(self, syllable: str, word: str) -> torch.Tensor:
        """[word skip-gram, syllable skip-gram], the generator's input for one syllable."""
        syllable_vector = self.syllables.vectors[self.syllables.index[syllable]]
        return torch.cat([self._word_vector(word), syllable_vector]).to(self.device)

    def _generated_vector(self, index: int) -> torch.Tensor:
        # A generated syllable has no word of its own: like the official script, the syllable stands in.
        key = self.syllables.keys[index]
        return self._lyric_vector(key, key)

    def _word_vector(self, word: str) -> torch.Tensor:
        """The word's vector; an unknown word takes the last vocabulary word containing it (as the
        official script does), or zeros when none does."""
        if word not in self._word_vectors:
            key = _known(word, self.words.index) or next(
                (k for k in reversed(self.words.keys) if word in k), None)
            self._word_vectors[word] = (self.words.vectors[self.words.index[key]] if key is not None
                                        else torch.zeros(self.words.dim))
        return self._word_vectors[word]
