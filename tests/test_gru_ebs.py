"""GRU-EBS (paper Eq. 3): checkpoint layout, parity with the official modules, beam search, MIDI.

tests/data/gru_ebs_parity.pt was made by running the official `GRU_generator.Encoder/Decoder` and
`LSTM_cls.LSTMClassifier` (BaoChunhui/Generate-Emotional-Music @ db3a117f) at tiny sizes on CPU
(torch.manual_seed(0); encoder input 6, hidden 8, 2 layers, 11 syllables, 13 notes, note embedding 5;
classifier embeddings 7 + 3, hidden 6, 2 layers; `.cuda()` shimmed to a no-op, gensim/pandas stubbed):
it holds their state dicts, random inputs and the outputs they gave.
"""

import json
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from emostyle.affective.gru_ebs import (
    GruEbsComposer, SkipGram, emotional_beam_search, melody_to_midi, parse_note, read_vocabulary, syllabify,
)
from emostyle.affective.music import MusicBackend, Polarity
from emostyle.models.gru_ebs import GruEbsGenerator, load_generator
from emostyle.models.gru_ebs_classifier import EmotionClassifier, load_classifier

DATA = Path(__file__).parent / "data"
POSITIVE = Polarity("positive", 1.0, "test")
NEGATIVE = Polarity("negative", -1.0, "test")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small batched RNN steps: one intra-op thread avoids spin-waiting on a shared CI runner."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vocab(shared_data):
    folder = shared_data / "gru-ebs"
    return {name: read_vocabulary(folder / f"{name}.json")
            for name in ("syllable_vocabulary", "word_vocabulary", "music_vocabulary_50")}


def _keys(vocabulary):
    return sorted(vocabulary, key=vocabulary.get)


def _official_generator_state(n_syllables, n_notes, lyc2vec=128, hidden=256, layers=4, note_dim=100):
    """Random tensors in the layout of GRU_generator_seqlen_50_embed_128_epoch_*.pkl, written from the
    official `Seq2Seq(Encoder(lyc2vec*2, 256, 4), Decoder(100, 256, 4))`, not from our module."""
    g = torch.Generator().manual_seed(1)
    shapes = {}
    for part, first_in in (("encoder", 2 * lyc2vec), ("decoder", note_dim + hidden)):
        for layer in range(layers):
            shapes[f"{part}.gru.weight_ih_l{layer}"] = (3 * hidden, first_in if layer == 0 else hidden)
            shapes[f"{part}.gru.weight_hh_l{layer}"] = (3 * hidden, hidden)
            shapes[f"{part}.gru.bias_ih_l{layer}"] = (3 * hidden,)
            shapes[f"{part}.gru.bias_hh_l{layer}"] = (3 * hidden,)
    shapes.update({"encoder.fc.weight": (n_syllables, hidden), "encoder.fc.bias": (n_syllables,),
                   "decoder.embedding.weight": (n_notes, note_dim), "decoder.attention.v": (hidden,),
                   "decoder.attention.attn.weight": (hidden, 2 * hidden), "decoder.attention.attn.bias": (hidden,),
                   "decoder.fc.weight": (n_notes, 2 * hidden), "decoder.fc.bias": (n_notes,)})
    return {k: torch.randn(s, generator=g) * 0.05 for k, s in shapes.items()}


def _official_classifier_state(n_syllables, n_notes, hidden=256, layers=6, syllable_dim=128, note_dim=10):
    """Random tensors in the layout of LSTM_datasetlen_50_fold_7_clf.pkl (official
    `LSTMClassifier(input_txt_size=128, input_mus_size=10, hidden_size=256, num_layers=6, num_classes=2)`)."""
    g = torch.Generator().manual_seed(2)
    shapes = {}
    for layer in range(layers):
        for suffix in ("", "_reverse"):
            first_in = syllable_dim + note_dim
            shapes[f"lstm.weight_ih_l{layer}{suffix}"] = (4 * hidden, first_in if layer == 0 else 2 * hidden)
            shapes[f"lstm.weight_hh_l{layer}{suffix}"] = (4 * hidden, hidden)
            shapes[f"lstm.bias_ih_l{layer}{suffix}"] = (4 * hidden,)
            shapes[f"lstm.bias_hh_l{layer}{suffix}"] = (4 * hidden,)
    shapes.update({"fc.weight": (2, 2 * hidden), "fc.bias": (2,),
                   "word_embeddings.weight": (n_syllables, syllable_dim),
                   "music_embeddings.weight": (n_notes, note_dim)})
    return {k: torch.randn(s, generator=g) * 0.05 for k, s in shapes.items()}


# -- checkpoints

def test_official_layout_loads_strictly_at_real_sizes(vocab, tmp_path):
    n_syllables, n_notes = len(vocab["syllable_vocabulary"]), len(vocab["music_vocabulary_50"])
    assert (n_syllables, n_notes) == (20934, 5954)
    for state, load, cls_sizes in (
        (_official_generator_state(n_syllables, n_notes), load_generator,
         lambda m: (m.encoder.fc.out_features, m.decoder.fc.out_features, m.encoder.gru.num_layers, m.input_size)),
        (_official_classifier_state(n_syllables, n_notes), load_classifier,
         lambda m: (m.word_embeddings.num_embeddings, m.music_embeddings.num_embeddings, m.lstm.num_layers,
                    m.lstm.bidirectional)),
    ):
        path = tmp_path / "model.pkl"
        torch.save(state, path)
        model = load(path)
        assert cls_sizes(model) in ((n_syllables, n_notes, 4, 256), (n_syllables, n_notes, 6, True))
        loaded = model.state_dict()
        assert set(loaded) == set(state)
        assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch gru-ebs-generator"):
        load_generator(tmp_path / "absent.pkl")
    html = tmp_path / "page.pkl"
    html.write_text("<!DOCTYPE html><html>Google Drive - virus scan warning</html>")
    with pytest.raises(ValueError, match="HTML page"):
        load_generator(html)
    state = _official_generator_state(11, 13, lyc2vec=3, hidden=8, layers=2, note_dim=5)
    path = tmp_path / "g.pkl"
    torch.save(state, path)
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError, match="truncated"):
        load_generator(truncated)
    del state["decoder.attention.v"]
    torch.save(state, path)
    with pytest.raises(ValueError, match="decoder.attention.v"):
        load_generator(path)
    torch.save(_official_classifier_state(11, 13, hidden=8, layers=2), path)
    with pytest.raises(ValueError, match="not a GRU-EBS generator"):
        load_generator(path)


def test_parity_with_official_modules():
    ref = torch.load(DATA / "gru_ebs_parity.pt", weights_only=True)
    generator = GruEbsGenerator.from_state_dict(ref["generator"]).eval()
    with torch.no_grad():
        syllable_logits, note_logits = generator(ref["lyrics"], ref["notes"])
        last = generator.next_logits(ref["lyrics"], ref["notes"])
    torch.testing.assert_close(syllable_logits, ref["syllable_logits"], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(note_logits, ref["note_logits"], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(last[0], ref["syllable_logits"][-1], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(last[1], ref["note_logits"][-1], atol=1e-6, rtol=1e-5)
    classifier = EmotionClassifier.from_state_dict(ref["classifier"]).eval()
    with torch.no_grad():
        logits = classifier(ref["cls_syllables"], ref["cls_notes"])
    torch.testing.assert_close(logits, ref["cls_logits"], atol=1e-6, rtol=1e-5)


# -- reading the official vocabulary and skip-gram files

def _fake_gensim_pickle(keys, vectors, protocol=2):
    """A gensim-3 style `Word2Vec.save` pickle: Word2Vec -> wv (Word2VecKeyedVectors) with index2word."""
    mods = {name: types.ModuleType(name) for name in ("gensim", "gensim.models", "gensim.models.word2vec",
                                                         "gensim.models.keyedvectors")}

    class Word2Vec:
        pass

    class Word2VecKeyedVectors:
        pass

    Word2Vec.__module__, Word2Vec.__qualname__ = "gensim.models.word2vec", "Word2Vec"
    Word2VecKeyedVectors.__module__ = "gensim.models.keyedvectors"
    Word2VecKeyedVectors.__qualname__ = "Word2VecKeyedVectors"
    mods["gensim.models.word2vec"].Word2Vec = Word2Vec
    mods["gensim.models.keyedvectors"].Word2VecKeyedVectors = Word2VecKeyedVectors
    model, wv = Word2Vec(), Word2VecKeyedVectors()
    wv.index2word, wv.vectors, wv.vector_size = list(keys), vectors, vectors.shape[1] if vectors is not None else 0
    model.wv = wv
    saved = {name: sys.modules.get(name) for name in mods}
    sys.modules.update(mods)
    try:
        return pickle.dumps(model, protocol=protocol)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name)
            else:
                sys.modules[name] = module


def test_skipgram_reads_gensim_files_without_gensim(tmp_path):
    keys, vectors = ["I", "love", "you"], np.arange(12, dtype=np.float32).reshape(3, 4)
    inline = tmp_path / "inline.bin"
    inline.write_bytes(_fake_gensim_pickle(keys, vectors))
    table = SkipGram.from_file(inline)
    assert table.keys == keys and table.index["you"] == 2 and torch.equal(table.vectors, torch.from_numpy(vectors))
    side = tmp_path / "side.bin"  # gensim stores large arrays beside the pickle
    side.write_bytes(_fake_gensim_pickle(keys, None, protocol=4))
    with pytest.raises(FileNotFoundError, match="side.bin.wv.vectors.npy"):
        SkipGram.from_file(side)
    np.save(tmp_path / "side.bin.wv.vectors.npy", vectors)
    assert torch.equal(SkipGram.from_file(side).vectors, torch.from_numpy(vectors))


def test_restricted_unpickler_runs_no_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="not a gensim"):
        SkipGram.from_file(path)
    assert not (tmp_path / "pwned").exists()


def test_vocabulary_reads_json_and_official_npy(vocab, tmp_path):
    music = vocab["music_vocabulary_50"]
    arr = np.empty((), dtype=object)
    arr[()] = music
    np.save(tmp_path / "music.npy", arr, allow_pickle=True)  # the official saved_model/*.npy format
    assert read_vocabulary(tmp_path / "music.npy") == music
    (tmp_path / "bad.json").write_text(json.dumps({"a": 0, "b": 2}))
    with pytest.raises(ValueError, match="0..n-1"):
        read_vocabulary(tmp_path / "bad.json")


# -- syllables

def test_syllabify_uses_pyphen_and_vocabulary_fallbacks():
    vocabulary = {"beau", "ti", "ful", "love", "I", "Every", "thing", "yesterday"}
    with pytest.warns(UserWarning, match="Xqzzt"):
        pairs = syllabify("I love beautiful, Xqzzt yesterday!", vocabulary)
    assert pairs == [("I", "I"), ("love", "love"), ("beau", "beautiful"), ("ti", "beautiful"),
                     ("ful", "beautiful"), ("yesterday", "yesterday")]  # "yes-ter-day" unknown: whole word
    assert syllabify("LOVE", vocabulary) == [("love", "LOVE")]


# -- emotion-based beam search, on tiny rigged generators

def _tiny_generator(n_syllables=11, n_notes=13, syllable_bias=None, note_bias=None):
    torch.manual_seed(0)
    generator = GruEbsGenerator(input_size=6, hidden_size=8, num_layers=2, n_syllables=n_syllables,
                                n_notes=n_notes, note_embedding_dim=5).eval()
    with torch.no_grad():
        for fc, bias in ((generator.encoder.fc, syllable_bias), (generator.decoder.fc, note_bias)):
            if bias is not None:  # the next-token distribution is then fixed: softmax(bias)
                fc.weight.zero_()
                fc.bias.copy_(bias)
    return generator


class _Recorder:
    """A classifier stub: logits from a rule on the candidate sequences; records every batch."""

    def __init__(self, rule=None):
        self.calls, self.rule = [], rule

    def __call__(self, syllables, notes):
        self.calls.append((syllables.clone(), notes.clone()))
        positive = self.rule(syllables, notes) if self.rule else torch.zeros(len(notes))
        return torch.stack([torch.zeros_like(positive), positive], dim=1)


def _search(generator, classifier, emotion="positive", seed=0, n_seed=3, **options):
    torch.manual_seed(1)
    seed_inputs = torch.randn(n_seed, 6)
    table = torch.randn(generator.encoder.fc.out_features, 6)
    return emotional_beam_search(generator, seed_inputs, list(range(n_seed)), lambda i: table[i], classifier,
                                 emotion, torch.Generator().manual_seed(seed), **options)


def test_search_returns_valid_tokens_and_honours_beam_sizes():
    classifier = _Recorder(rule=lambda s, n: torch.sin(3.0 * n[:, -1] + s[:, -1]))
    beams = _search(_tiny_generator(), classifier, b1=2, b2=3, b3=4, out_len=8)
    assert len(beams) == 4
    for syllables, notes, score in beams:
        assert len(syllables) == len(notes) == 9  # stops once past out_len
        assert all(0 <= s < 11 for s in syllables) and all(0 <= n < 13 for n in notes)
        assert 0.0 <= score <= 1.0
    sizes = [len(notes) for _, notes in classifier.calls]
    assert sizes == [6] + [4 * 6] * 5  # 1 beam x b1 x b2, then b3 beams x b1 x b2
    for syllables, notes in classifier.calls[1:]:
        for k in range(4):  # each beam proposes b1 distinct syllables x b2 distinct notes
            block_s, block_n = syllables[6 * k:6 * k + 6, -1], notes[6 * k:6 * k + 6, -1]
            assert len(set(block_s.tolist())) == 2 and len(set(block_n.tolist())) == 3
    scores = [score for *_, score in beams]
    assert scores == sorted(scores, reverse=True)


def test_search_is_deterministic_for_a_seed():
    classifier = _Recorder(rule=lambda s, n: torch.cos(n[:, -1].float()))
    runs = [_search(_tiny_generator(), classifier, seed=s, out_len=5) for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0][0][1][0] != runs[2][0][1][0]  # the seed draws the first note


def test_repetition_penalties_change_the_choice():
    # Syllable 0 and note 5 are slightly preferred (x1.5, x1.05) over syllable 9 and note 7; the seed
    # already holds syllable 0 and (greedy) note 5, so the penalties 0.5 and 0.9 must flip both choices.
    syllable_bias = torch.full((11,), -30.0)
    syllable_bias[0], syllable_bias[9] = np.log(1.5), 0.0
    note_bias = torch.full((13,), -30.0)
    note_bias[5], note_bias[7] = np.log(1.05), 0.0
    generator = _tiny_generator(syllable_bias=syllable_bias, note_bias=note_bias)
    options = dict(b1=1, b2=1, b3=1, out_len=3, first_note_max=0)
    (syllables, notes, _), = _search(generator, _Recorder(), **options)
    assert notes[:3] == [0, 5, 5] and syllables[3] == 9 and notes[3] == 7
    (syllables, notes, _), = _search(generator, _Recorder(), syllable_penalty=1.0, note_penalty=1.0, **options)
    assert syllables[3] == 0 and notes[3] == 5


def test_polarity_decides_which_sequence_wins():
    # A classifier that finds sequences ending on note 9 positive: they win under P = positive only.
    note_bias = torch.full((13,), -30.0)
    note_bias[3], note_bias[9], note_bias[11] = 0.0, -0.5, -1.0  # 9: a candidate, not the generator's choice
    generator = _tiny_generator(note_bias=note_bias)
    classifier = _Recorder(rule=lambda s, n: 4.0 * (n[:, -1] == 9).float())
    (_, positive, score_pos), *_ = _search(generator, classifier, "positive", b2=3, out_len=3)
    (_, negative, score_neg), *_ = _search(generator, classifier, "negative", b2=3, out_len=3)
    assert 9 in [n[:, -1] for _, n in classifier.calls][0].tolist()
    assert positive[3] == 9 and negative[3] != 9
    assert score_pos > 0.9 and score_neg == pytest.approx(0.5)


# -- MIDI

def test_midi_one_note_per_token_with_pitch_duration_rest():
    tokens = ["p_60.0^d_1.0^r_2.0", "p_64.0^d_0.5^r_1.0", "p_67.0^d_2.0^r_0.0"]
    assert parse_note(tokens[1]) == (64, 0.5, 1.0)
    midi = melody_to_midi(tokens, ["I", "love", "you"])
    notes = midi.instruments[0].notes
    # 120 bpm: a beat is 0.5 s; a token's rest is the silence before it (the first note starts at 0).
    assert [(n.pitch, n.start, n.end) for n in notes] == [(60, 0.0, 0.5), (64, 1.0, 1.25), (67, 1.25, 2.25)]
    assert [(lyric.text, lyric.time) for lyric in midi.lyrics] == [("I", 0.0), ("love", 1.0), ("you", 1.25)]
    assert midi.get_tempo_changes()[1][0] == pytest.approx(120.0)
    with pytest.raises(ValueError, match="p_<pitch>"):
        parse_note("C4")


# -- the backend at the real vocabulary sizes (reduced hidden sizes: this test is about the wiring)

@pytest.fixture(scope="module")
def composer(vocab):
    syllables, words, music = vocab["syllable_vocabulary"], vocab["word_vocabulary"], vocab["music_vocabulary_50"]
    g = torch.Generator().manual_seed(3)
    syllable_table = SkipGram(_keys(syllables), torch.randn(len(syllables), 4, generator=g))
    word_table = SkipGram(_keys(words), torch.randn(len(words), 4, generator=g))
    torch.manual_seed(4)
    generator = GruEbsGenerator(8, 16, 1, len(syllables), len(music), 8)
    classifier = EmotionClassifier(len(syllables), len(music), 8, 4, 8, 1)
    return GruEbsComposer(generator, classifier, syllable_table, word_table, music, syllables, out_len=12)


def test_composer_midi_has_one_note_per_syllable(composer, vocab):
    lyrics = "I give you my beautiful love"
    melody = composer.melody(lyrics, POSITIVE, seed=0)
    seed_pairs = syllabify(lyrics, composer.syllables.index)
    assert melody.syllables[:melody.n_seed] == [s for s, _ in seed_pairs]
    assert len(melody.syllables) == len(melody.notes) == 13
    assert all(token in vocab["music_vocabulary_50"] for token in melody.notes)
    midi = composer.compose(lyrics, POSITIVE, seed=0)
    assert isinstance(composer, MusicBackend) and composer.name == "gru-ebs"
    notes = midi.instruments[0].notes
    assert [lyric.text for lyric in midi.lyrics] == melody.syllables
    assert len(notes) == len(melody.syllables)
    time = 0.0
    for i, (note, token) in enumerate(zip(notes, melody.notes)):
        pitch, duration, rest = parse_note(token)
        time += rest * 0.5 if i else 0.0
        assert note.pitch == pitch
        assert note.start == pytest.approx(time) and note.end - note.start == pytest.approx(duration * 0.5)
        time += duration * 0.5
    again = composer.compose(lyrics, POSITIVE, seed=0)
    assert [(n.pitch, n.start) for n in again.instruments[0].notes] == [(n.pitch, n.start) for n in notes]


def test_composer_rejects_mismatched_parts_and_empty_lyrics(composer, vocab):
    with pytest.warns(UserWarning, match="Xqzzt"), pytest.raises(ValueError, match="no word of the lyrics"):
        composer.compose("Xqzzt Vrrbl", NEGATIVE, seed=0)
    small_music = dict(list(vocab["music_vocabulary_50"].items())[:100])
    with pytest.raises(ValueError, match="generator notes / music vocabulary"):
        GruEbsComposer(composer.generator, composer.classifier, composer.syllables, composer.words,
                       small_music, vocab["syllable_vocabulary"])


def test_composer_from_official_files(vocab, shared_data, tmp_path):
    """Checkpoints, gensim skip-grams and vocabularies in the official formats (reduced widths)."""
    syllables, words = _keys(vocab["syllable_vocabulary"]), _keys(vocab["word_vocabulary"])
    n_syllables, n_notes = len(syllables), len(vocab["music_vocabulary_50"])
    torch.save(_official_generator_state(n_syllables, n_notes, lyc2vec=2, hidden=8, layers=1, note_dim=4),
               tmp_path / "GRU_generator_seqlen_50_embed_2_epoch_59.pkl")
    torch.save(_official_classifier_state(n_syllables, n_notes, hidden=8, layers=1, syllable_dim=4, note_dim=2),
               tmp_path / "LSTM_datasetlen_50_fold_7_clf.pkl")
    rng = np.random.default_rng(0)
    for name, keys in (("syll", syllables), ("word", words)):
        vectors = rng.standard_normal((len(keys), 2)).astype(np.float32)
        (tmp_path / f"{name}.bin").write_bytes(_fake_gensim_pickle(keys, vectors))
    folder = shared_data / "gru-ebs"
    composer = GruEbsComposer.from_files(
        tmp_path / "GRU_generator_seqlen_50_embed_2_epoch_59.pkl", tmp_path / "LSTM_datasetlen_50_fold_7_clf.pkl",
        tmp_path / "syll.bin", tmp_path / "word.bin", folder / "music_vocabulary_50.json",
        folder / "syllable_vocabulary.json", out_len=6, b3=2)
    midi = composer.compose("when I got the dream", NEGATIVE, seed=5)
    assert len(midi.instruments[0].notes) == len(midi.lyrics) == 7
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch gru-ebs-word-skipgram"):
        GruEbsComposer.from_files(tmp_path / "GRU_generator_seqlen_50_embed_2_epoch_59.pkl",
                                  tmp_path / "LSTM_datasetlen_50_fold_7_clf.pkl", tmp_path / "syll.bin",
                                  tmp_path / "absent.bin", folder / "music_vocabulary_50.json",
                                  folder / "syllable_vocabulary.json")
