"""Sentiment polarity P of the lyrics (paper 3.2): positive or negative, with a score.

- `VaderPolarity` (offline default): VADER (Hutto & Gilbert 2014, `vaderSentiment`); the
  label is the sign of the compound score, which is kept as `Polarity.score`.
- `LLMPolarity` (paper): a causal language model (ChatGLM3-6B in the paper) loaded with
  `transformers` from a local folder and asked the paper's prompt
  "Judge the sentiment polarity (positive or negative):" + lyrics. Its free-text reply is
  read by `parse_polarity_reply`; a reply that says neither (or both) is a warning and a
  recorded VADER fallback (`Polarity.fallback`), never the official code's silent switch-off.
"""

from __future__ import annotations

import abc
import re
import warnings
from pathlib import Path

from emostyle.affective.music import Polarity

__all__ = ["PROMPT", "PolarityBackend", "VaderPolarity", "LLMPolarity", "parse_polarity_reply", "read_labels",
           "build_prompt"]

PROMPT = "Judge the sentiment polarity (positive or negative):"

# Words that flip the polarity word right after them ("not positive", "isn't negative").
_NEGATIONS = {"not", "no", "never", "isn't", "isnt", "wasn't", "wasnt", "aren't", "arent", "hardly",
              "nor", "neither", "without", "non", "un", "lacks"}
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|[\u4e00-\u9fff]+|[.!?;:,()\[\]\"]")
# ChatGLM is bilingual and may answer in Chinese.
_ZH = {"积极": "positive", "正面": "positive", "正向": "positive",
       "消极": "negative", "负面": "negative", "负向": "negative"}
_OPPOSITE = {"positive": "negative", "negative": "positive"}


def build_prompt(lyrics: str) -> str:
    """The paper's query: PROMPT followed by the lyrics."""
    return f"{PROMPT} {lyrics.strip()}"


def read_labels(text: str | None, forms: dict[str, tuple[str, ...]], chinese: dict[str, str] | None = None,
                echoes: tuple[str, ...] = ()) -> tuple[set[str], set[str]]:
    """The labels a model's free-text reply states and those it negates: (stated, negated).

    A label is named by any word starting with one of its `forms` (case- and punctuation-
    insensitive, so word forms count); a negation up to three words back in the same clause
    ("not", "isn't", ...) moves it to `negated`. `chinese` maps Chinese words to labels (不 before
    one negates it); `echoes` are phrases of the prompt to ignore when the model repeats them.
    "neither ... nor ..." states nothing.
    """
    if not text:
        return set(), set()
    reply = text.lower()
    for echo in echoes:
        reply = reply.replace(echo, " ")
    reply = reply.replace("\u2019", "'")
    for idiom in ("no doubt", "without doubt", "no question"):  # negations that do not negate
        reply = reply.replace(idiom, " ")
    for zh, label in (chinese or {}).items():
        reply = reply.replace("不" + zh, f" not {forms[label][0]} ").replace(zh, f" {forms[label][0]} ")
    tokens = _WORD.findall(reply)
    if "neither" in tokens and "nor" in tokens:
        return set(), set()
    stated, negated = set(), set()
    for i, token in enumerate(tokens):
        label = next((name for name, starts in forms.items() if token.startswith(starts)), None)
        if label is None:
            continue
        # A negation up to three words back, within the same clause, negates the word.
        before = []
        for prev in reversed(tokens[max(0, i - 3):i]):
            if not prev.isalpha() and "'" not in prev:
                break
            before.append(prev)
        (negated if any(w in _NEGATIONS or w.endswith("n't") for w in before) else stated).add(label)
    return stated, negated


def parse_polarity_reply(text: str | None) -> str | None:
    """"positive" or "negative" from a model's free-text reply, or None when it says neither.

    Reads case- and punctuation-insensitively, inside a sentence ("The sentiment is
    Positive."), word forms ("positively"), negations ("not positive" -> negative;
    "positive, not negative" -> positive), Chinese answers (积极/消极), and an echo of the
    prompt's "(positive or negative)". Conflicting statements ("both positive and
    negative"), "neither ... nor ...", "neutral" or no polarity word give None.
    """
    stated, negated = read_labels(text, {"positive": ("positive",), "negative": ("negative",)}, _ZH,
                                  echoes=("positive or negative", "negative or positive"))
    votes = stated | {_OPPOSITE[label] for label in negated}
    return votes.pop() if len(votes) == 1 else None


class PolarityBackend(abc.ABC):
    """Lyrics in, a validated `Polarity` out."""

    name: str

    @abc.abstractmethod
    def judge(self, lyrics: str, language: str = "en") -> Polarity:
        """Polarity of `lyrics`, written in `language` (ISO 639-1, as Whisper reports it)."""


class VaderPolarity(PolarityBackend):
    """VADER's compound score in [-1, 1]; label positive when it is >= 0.

    VADER's lexicon is English: other languages give a warning (the score then rests on
    the few English-looking tokens and is usually near 0, i.e. a weak positive).
    """

    name = "vader"

    def __init__(self):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def judge(self, lyrics: str, language: str = "en") -> Polarity:
        if not language.lower().startswith("en"):
            warnings.warn(
                f"VADER reads English only; lyrics in language {language!r} get an unreliable polarity",
                stacklevel=2,
            )
        scores = self.analyzer.polarity_scores(lyrics)
        compound = float(scores["compound"])
        return Polarity("positive" if compound >= 0 else "negative", compound, self.name, repr(scores))


class LLMPolarity(PolarityBackend):
    """The paper's LLM judge (ChatGLM3-6B) from a local `transformers` folder.

    Greedy decoding of at most `max_new_tokens`; the chat format comes from the
    tokenizer (ChatGLM3's `build_chat_input`, else its chat template, else the plain
    prompt). An unusable reply warns and falls back to VADER with `fallback=True`.
    """

    def __init__(self, model_path: str | Path, device: str = "cpu", max_new_tokens: int = 16,
                 name: str = "chatglm", dtype: str = "auto"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_path = Path(model_path)
        if not (model_path / "config.json").is_file():
            raise FileNotFoundError(
                f"no transformers model in {model_path} (expected config.json and weights); "
                "run `emostyle weights fetch chatglm3-6b`"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=True)
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, trust_remote_code=True, dtype=dtype
        ).to(device).eval()
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.name = name
        self._fallback: VaderPolarity | None = None

    def _inputs(self, query: str):
        if hasattr(self.tokenizer, "build_chat_input"):  # ChatGLM3's own chat format
            return self.tokenizer.build_chat_input(query, history=[], role="user")
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": query}], add_generation_prompt=True,
                return_tensors="pt", return_dict=True,
            )
        return self.tokenizer(query, return_tensors="pt")

    def reply(self, lyrics: str) -> str:
        """The model's raw answer to the paper's prompt."""
        return self.ask(build_prompt(lyrics))

    def ask(self, query: str) -> str:
        """The model's raw answer to any query (greedy; the emotion-category prompt reuses the model)."""
        import torch

        inputs = {k: v.to(self.device) for k, v in self._inputs(query).items()}
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.eos_token_id)
        new_tokens = out[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)

    def judge(self, lyrics: str, language: str = "en") -> Polarity:
        raw = self.reply(lyrics)
        label = parse_polarity_reply(raw)
        if label is not None:
            return Polarity(label, 1.0 if label == "positive" else -1.0, self.name, raw)
        warnings.warn(
            f"{self.name} gave no usable polarity (reply {raw[:80]!r}); falling back to VADER",
            stacklevel=2,
        )
        if self._fallback is None:
            self._fallback = VaderPolarity()
        vader = self._fallback.judge(lyrics, language)
        return Polarity(vader.label, vader.score, f"{self.name}->vader", raw, fallback=True)
