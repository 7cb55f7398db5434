"""Affective music (paper 3.2): lyrics L, sentiment polarity P, emotional music M = Music(L, P).

`affective_music(audio_path, ...)` runs the four steps (lyrics, polarity, music, rendering)
with backends picked by name (a profile's setting) or passed as instances, and caches its
result by the input file's hash and the settings, so notebooks re-run fast.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from emostyle import registry
from emostyle.affective.categories import Categories, CategoryBackend, LexiconCategories, LLMCategories
from emostyle.affective.lyrics import (
    FasterWhisperLyrics,
    LyricsBackend,
    Transcript,
    WhisperATLyrics,
    transcribe,
)
from emostyle.affective.music import MusicBackend, Polarity
from emostyle.affective.polarity import LLMPolarity, PolarityBackend, VaderPolarity
from emostyle.affective.render import RENDERERS, render_midi
from emostyle.audio import read_audio
from emostyle.manifest import write_json, written_whole
from emostyle.registry import file_sha256

__all__ = ["affective_music", "AffectiveResult", "LYRICS_BACKENDS", "POLARITY_BACKENDS", "MUSIC_BACKENDS",
           "CATEGORY_BACKENDS", "Transcript", "Polarity", "Categories", "MusicBackend"]


def _composer() -> MusicBackend:
    from emostyle.affective.composer import AffectiveComposer

    return AffectiveComposer()


def _gru_ebs() -> MusicBackend:
    """GRU-EBS from the registry's files (the paper's music backend)."""
    from emostyle.affective.gru_ebs import GruEbsComposer

    return GruEbsComposer.from_files(*(registry.path(f"gru-ebs-{part}") for part in (
        "generator", "classifier", "syllable-skipgram", "word-skipgram", "music-vocabulary",
        "syllable-vocabulary")))


def _chatglm() -> PolarityBackend:
    return LLMPolarity(registry.path("chatglm3-6b"), name="chatglm")


def _chatglm_categories() -> CategoryBackend:
    return LLMCategories(_by_name("polarity", "chatglm"))  # one ChatGLM for both questions


LYRICS_BACKENDS = {"faster-whisper": FasterWhisperLyrics, "whisper-at": WhisperATLyrics}
CATEGORY_BACKENDS = {"nrc": LexiconCategories, "chatglm": _chatglm_categories}
POLARITY_BACKENDS = {"vader": VaderPolarity, "chatglm": _chatglm}
MUSIC_BACKENDS = {"composer": _composer, "gru-ebs": _gru_ebs}
_BACKENDS = {"lyrics": LYRICS_BACKENDS, "polarity": POLARITY_BACKENDS, "music": MUSIC_BACKENDS,
             "categories": CATEGORY_BACKENDS}
_BUILT: dict = {}  # (kind, name) -> (backend, the registry files it read): `_by_name`


def _by_name(kind: str, name: str):
    """One instance per backend name and process: loading Whisper or an LLM takes seconds. A run
    that reuses one records the files it was built from again (`registry.kept_with_uses`)."""
    if name not in _BACKENDS[kind]:
        raise ValueError(f"unknown {kind} backend {name!r}; choose one of {sorted(_BACKENDS[kind])} "
                         "or pass an instance")
    return registry.kept_with_uses(_BUILT, (kind, name), _BACKENDS[kind][name])


def _backend(kind: str, value, base: type):
    if isinstance(value, str):
        return _by_name(kind, value)
    if not isinstance(value, base):
        raise ValueError(f"{kind} backend must be a name or a {base.__name__}; got {type(value).__name__}")
    return value


@dataclass
class AffectiveResult:
    """What the affective branch made of one audio file; `timings` in seconds per step.
    `categories`: the lyrics' distribution over EmoGen's eight emotion categories."""

    transcript: Transcript
    polarity: Polarity
    midi_path: Path
    wav_path: Path
    renderer: str
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    categories: Categories | None = None

    @property
    def guiding_wav(self) -> Path | None:
        """The piece whose emotion the music term pulls toward, or None where the lyrics have no
        polarity (VADER's neutral band): the composer still needs one of its two labels and
        takes "positive", but that mood is its tie-break, not the song's, and it pulled sad songs
        whose lyrics were misheard as neutral toward happy (`Pipeline.targets`)."""
        return None if self.polarity.emotion == "neutral" else self.wav_path

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(midi_path=str(self.midi_path), wav_path=str(self.wav_path),
                 categories=self.categories.to_json() if self.categories else None)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "AffectiveResult":
        t = d["transcript"]
        transcript = Transcript(t["text"], [tuple(s) for s in t["segments"]], [tuple(s) for s in t["tags"]],
                                t["language"], t["backend"], t["source"], t.get("quality", {}))
        categories = Categories.from_json(d["categories"]) if d.get("categories") else None
        return cls(transcript, Polarity(**d["polarity"]), Path(d["midi_path"]), Path(d["wav_path"]),
                   d["renderer"], d["timings"], d["cached"], categories)



def _key(audio_path: Path, settings: dict) -> str:
    """The cache key of a song's reading: its content, the settings and the kit's code (a reading
    made by older code is not served after an upgrade: its transcript fed every figure that
    composes music, and the numbers of FINDINGS.md were once an older kit's reading)."""
    from emostyle.manifest import code_version

    blob = json.dumps({"audio": file_sha256(audio_path), "code": code_version(), **settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _describe(backend) -> str:
    return f"{type(backend).__module__}.{type(backend).__qualname__}:{getattr(backend, 'name', '')}"


def affective_music(audio_path: str | Path, profile=None, *,
                    lyrics_backend: str | LyricsBackend = "faster-whisper",
                    polarity_backend: str | PolarityBackend = "vader",
                    music_backend: str | MusicBackend = "composer",
                    category_backend: str | CategoryBackend = "nrc", renderer: str = "auto", seed: int = 0,
                    out_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                    label: str | None = None, lyrics: str | None = None) -> AffectiveResult:
    """Lyrics, polarity, MIDI and WAV for one song (paper 3.2, Eq. 3).

    `profile` (a profile name or an emostyle.config.Config), when given, chooses the backends,
    renderer and seed of its `affective` section and caches under the kit's home; without it,
    the keyword arguments do. `out_dir` defaults to `$EMOSTYLE_HOME/music`.
    Backends by name (LYRICS_BACKENDS, POLARITY_BACKENDS, MUSIC_BACKENDS, CATEGORY_BACKENDS) or
    instance; the category backend gives the lyrics' distribution over EmoGen's eight categories;
    `renderer` one of render.RENDERERS; `label` stands in for the lyrics of audio without
    speech when the lyrics backend gives no tags. With `cache_dir`, a second call with the
    same file content and settings returns the stored result (`cached=True`) without
    running any model. `lyrics`, when given, replaces the transcription (source "given").
    Writes `<stem>-<key>.mid` and `.wav` into `out_dir`. A backend passed
    as an instance enters the key by its class and `name` only: give differently configured
    instances different names.
    """
    if profile is not None:
        from emostyle.config import Config, load_config

        config = profile if isinstance(profile, Config) else load_config(profile)
        a = config.affective
        lyrics_backend, polarity_backend, music_backend = a.lyrics, a.polarity, a.music
        category_backend = a.categories
        renderer, seed = a.renderer, config.seed
        cache_dir = cache_dir if cache_dir is not None else registry.home() / "cache" / "affective"
    out_dir = out_dir if out_dir is not None else registry.home() / "music"
    audio_path = Path(audio_path)
    if not audio_path.is_file():
        raise FileNotFoundError(f"audio file not found: {audio_path}")
    if renderer not in RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r}; choose one of {RENDERERS}")
    out_dir = Path(out_dir)
    names = {k: v if isinstance(v, str) else _describe(v) for k, v in
             (("lyrics", lyrics_backend), ("polarity", polarity_backend), ("music", music_backend),
              ("categories", category_backend))}
    key = _key(audio_path, {**names, "renderer": renderer, "seed": seed, "label": label, "lyrics": lyrics})
    midi_path, wav_path = out_dir / f"{audio_path.stem}-{key}.mid", out_dir / f"{audio_path.stem}-{key}.wav"

    record = Path(cache_dir) / key / "result.json" if cache_dir is not None else None
    stored = [record.parent / "music.mid", record.parent / "music.wav"] if record is not None else []
    if record is not None and all(p.is_file() for p in [record, *stored]):
        kept = json.loads(record.read_text())
        registry.replay(kept["weights"])  # the files the reading was made from, for this run's manifest
        result = AffectiveResult.from_json(kept)
        out_dir.mkdir(parents=True, exist_ok=True)
        for src, dst in zip(stored, (midi_path, wav_path)):
            if src.resolve() != dst.resolve():
                shutil.copyfile(src, dst)
        return dataclasses.replace(result, midi_path=midi_path, wav_path=wav_path, cached=True)

    with registry.recording() as files:  # kept with the reading: a later hit records them again
        timings: dict[str, float] = {}
        start = time.perf_counter()
        given = lyrics
        lyrics = _backend("lyrics", lyrics_backend, LyricsBackend) if given is None else None
        polarity_judge = _backend("polarity", polarity_backend, PolarityBackend)
        music = _backend("music", music_backend, MusicBackend)
        category_reader = _backend("categories", category_backend, CategoryBackend)
        timings["load"] = time.perf_counter() - start

        step = time.perf_counter()
        if given is None:
            transcript = transcribe(audio_path, lyrics, label=label)
        else:
            if not given.strip():
                raise ValueError("the given lyrics are empty")
            read_audio(audio_path)  # the song itself must still be usable audio
            transcript = Transcript(given.strip(), backend="given", source="given")
        timings["lyrics"] = time.perf_counter() - step
        step = time.perf_counter()
        polarity = polarity_judge.judge(transcript.text, transcript.language)
        timings["polarity"] = time.perf_counter() - step
        step = time.perf_counter()
        categories = category_reader.categorise(transcript.text, transcript.language).within(polarity.emotion)
        timings["categories"] = time.perf_counter() - step
        step = time.perf_counter()
        pm = music.compose(transcript.text, polarity, seed)
        out_dir.mkdir(parents=True, exist_ok=True)
        pm.write(str(midi_path))
        timings["music"] = time.perf_counter() - step
        step = time.perf_counter()
        used = render_midi(pm, wav_path, renderer)
        timings["render"] = time.perf_counter() - step
        timings["total"] = time.perf_counter() - start

    result = AffectiveResult(transcript, polarity, midi_path, wav_path, used, timings, categories=categories)
    if record is not None:  # each file whole or absent, the record last: a crash never leaves a half hit
        for src, name in ((midi_path, "music.mid"), (wav_path, "music.wav")):
            with written_whole(record.parent / name) as tmp:
                shutil.copyfile(src, tmp)
        write_json(record, {**result.to_json(), "weights": files})
    return result
