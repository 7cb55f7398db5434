"""Sentiment polarity: the reply parser, VADER, and the LLM backend on a tiny random GPT-2."""

import pytest
import torch

from emostyle.affective.music import Polarity
from emostyle.affective.polarity import PROMPT, LLMPolarity, VaderPolarity, build_prompt, parse_polarity_reply

HAPPY = "I feel so happy today, the sun is shining and I love you, what a wonderful day!"
SAD = "I am so sad and lonely, my heart is broken, tears fall in the cold dark night."


@pytest.mark.parametrize("reply, expected", [
    ("positive", "positive"),
    ("Negative", "negative"),
    ("NEGATIVE.", "negative"),
    ("  **Positive**!\n", "positive"),
    ("The sentiment polarity of these lyrics is positive.", "positive"),
    ("Sentiment: negative (sadness, loss)", "negative"),
    ("These lyrics express a positively hopeful mood.", "positive"),
    ("It is not positive.", "negative"),
    ("The song isn't negative at all", "positive"),
    ("The song is not very positive", "negative"),
    ("positive, not negative", "positive"),
    ("Negative rather than positive? No: it is definitely negative, not positive.", None),
    ("The lyrics are negative; they are not positive.", "negative"),
    ("Judge the sentiment polarity (positive or negative): negative", "negative"),
    ("There is no doubt: positive", "positive"),
    ("No, positive.", "positive"),
    ("both positive and negative", None),
    ("The sentiment is neither positive nor negative.", None),
    ("neutral", None),
    ("I cannot judge that.", None),
    ("", None),
    (None, None),
    ("积极", "positive"),
    ("这首歌的情感是消极的。", "negative"),
    ("不积极", "negative"),
])
def test_parse_polarity_reply(reply, expected):
    assert parse_polarity_reply(reply) == expected


def test_vader_opposite_polarities_with_scores():
    vader = VaderPolarity()
    happy, sad = vader.judge(HAPPY), vader.judge(SAD)
    assert (happy.label, sad.label) == ("positive", "negative")
    assert happy.score > 0.5 and sad.score < -0.5  # VADER compound scores kept
    assert happy.backend == "vader" and not happy.fallback and "compound" in happy.raw


def test_vader_warns_on_non_english():
    with pytest.warns(UserWarning, match="English only"):
        p = VaderPolarity().judge("Je suis très triste", language="fr")
    assert p.label in ("positive", "negative")


def test_polarity_validates():
    with pytest.raises(ValueError, match="positive"):
        Polarity("neutral", 0.0, "x")
    with pytest.raises(ValueError, match="outside"):
        Polarity("positive", 2.0, "x")


def test_prompt_is_the_papers():
    assert build_prompt("  la la love  ") == "Judge the sentiment polarity (positive or negative): la la love"
    assert PROMPT == "Judge the sentiment polarity (positive or negative):"


def _tiny_llm(folder, answer: str):
    """A 2-layer random GPT-2 whose every next token is `answer`, with a word-level tokenizer.

    The final LayerNorm is set to output a constant vector along `answer`'s embedding, so greedy
    decoding repeats that word whatever the prompt: the test then checks the prompt code path,
    generation, decoding and parsing, not the model's judgement.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    punctuation = "():,.!"
    text = build_prompt(HAPPY + " " + SAD).lower()
    words = ["<unk>", "<eos>", *punctuation] + sorted(set(text.translate({ord(c): " " for c in punctuation})
                                                          .split()) | {"maybe"})
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                                       eos_token_id=1, bos_token_id=1))
    with torch.no_grad():
        direction = torch.zeros(32)
        direction[0] = 1.0
        model.transformer.wte.weight[vocab[answer]] = direction
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(10 * direction)
    model.save_pretrained(folder)
    return folder


def test_llm_backend_reads_its_reply(tmp_path):
    judge = LLMPolarity(_tiny_llm(tmp_path / "llm", "negative"), max_new_tokens=4, name="tiny-gpt2")
    prompt_ids = judge._inputs(build_prompt(HAPPY))["input_ids"][0]
    sent = judge.tokenizer.decode(prompt_ids)
    assert sent.startswith("judge the sentiment polarity ( positive or negative ) : i feel so happy") and "<unk>" not in sent
    p = judge.judge(HAPPY)
    assert p == Polarity("negative", -1.0, "tiny-gpt2", "negative negative negative negative", False)


def test_llm_unusable_reply_warns_and_falls_back(tmp_path):
    judge = LLMPolarity(_tiny_llm(tmp_path / "llm", "maybe"), max_new_tokens=3)
    with pytest.warns(UserWarning, match="no usable polarity.*falling back to VADER"):
        p = judge.judge(SAD)
    assert p.fallback and p.backend == "chatglm->vader" and p.raw == "maybe maybe maybe"
    assert p.label == "negative" and p.score < -0.5  # VADER decided


def test_llm_missing_folder_names_the_fetch_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch chatglm3-6b"):
        LLMPolarity(tmp_path / "nothing")
