"""What a run needs (registry files and optional Python packages), checked before any model loads.

`requirements(config)` derives from a configuration which registry entries and which optional
packages a run of it reads; `check(config)` raises one `MissingRequirementsError` that lists
everything missing, grouped, with the one command that fixes each group. The commands work
from the repository root, with or without an activated virtual environment. `emostyle doctor`
reads the same tables.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import registry

__all__ = ["PACKAGES", "MissingRequirementsError", "Requirements", "requirements", "missing", "check",
           "install_command", "fetch_command"]

# Optional Python packages: module -> (what it is for, install group of `install_command`).
PACKAGES = {
    "faster_whisper": ("lyrics on the offline profile", "offline"),
    "vaderSentiment": ("polarity on the offline profile (and the fallback of ChatGLM)", "offline"),
    "pyphen": ("syllables for GRU-EBS", "offline"),
    "dlib": ("the landmark judge of faces (scoring.judge=landmarks; skipped with a note without it)", "offline"),
    "tflite": ("MediaPipe's face mesh in torch (guidance.face_reader=blendshapes)", "offline"),
    "onnx": ("YAMNet in torch: sounds that are not music (affective.audio_reader=yamnet+musicnn+mode)", "offline"),
    "ai_edge_litert": ("the blendshape judge of faces (scoring.judge=blendshapes; skipped with a note without it)",
                       "offline"),
    "whisper_at": ("Whisper-AT lyrics and audio tags (paper profiles)", "paper"),
    "tiktoken": ("the Whisper-AT tokenizer (paper profiles)", "paper"),
    "tinysoundfont": ("SoundFont rendering of the music (else an additive synth)", "soundfont"),
    "tensorflow": ("the VILA scorer of Table 1", "vila"),
    "dask": ("sweeps (emostyle sweep)", "sweep"),
    "gdown": ("Google Drive weights (StyleGAN2 FFHQ, ArcFace)", "gdrive"),
    "jupyterlab": ("exploring the notebooks", "lab"),
    "diffusers": ("Stable Diffusion for EmoGen (--method emogen)", "emogen"),
}
_CLIP_FILES = ("clip-vit-b-32", "clip-bpe-vocab", "soundclip-resnet18")


class MissingRequirementsError(FileNotFoundError):
    """Files or packages a run needs are missing; the message lists all of them and their fixes."""


@dataclass
class Requirements:
    """Registry entries and importable modules a run reads (files with a fallback are left out)."""

    files: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)


def _python() -> str:
    """This interpreter, relative to the current folder when inside it (e.g. `.venv/bin/python`)."""
    exe = Path(sys.executable)
    try:
        return str(exe.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


def install_command(group: str) -> str:
    """The command, from the repository root, that installs the packages of `group`."""
    pip = f"{_python()} -m pip install"
    return {"paper": f"{pip} -e '.[paper]' && {pip} --no-deps whisper-at==0.5",  # its triton pin blocks installs
            "soundfont": f"{pip} --no-deps 'tinysoundfont>=0.3'",  # its pyaudio dependency needs PortAudio
            "lab": "bash kit.sh lab"}.get(group, f"{pip} -e '.[{group}]'")


def fetch_command(names: list[str], profile: str | None = None) -> str:
    """The command that fetches `names` (the whole `profile` when they are all of its files)."""
    if profile in registry.profiles() and set(registry.profile_files(profile)) >= set(names):
        return f"bash kit.sh emostyle weights fetch --profile {profile}"
    return f"bash kit.sh emostyle weights fetch {' '.join(names)}"


def requirements(config, lyrics_given: bool = False, method: str | None = None,
                 datasets: bool = False) -> Requirements:
    """What a run of `config` (an emostyle.config.Config) reads; `lyrics_given`: the lyrics
    come from the user, so no speech recogniser is needed; `method` "emogen": EmoGen's
    generator instead of the profile's guidance; `datasets`: every dataset of the profile, as
    `reproduce` runs them (a scene dataset's photos beside the faces), not only its first."""
    need = Requirements()
    files, modules = need.files, need.modules
    if method == "emogen":
        modules.append("diffusers")
        if not config.random_weights:
            e = config.emogen
            files += [n for n in (e.weights, e.mapper) if not Path(n).expanduser().exists()]
            if not e.space:  # the released emotion space, from the registry
                from .models.emogen import EMOTIONS

                files += [f"emogen-space-{emotion}-{kind}" for emotion in EMOTIONS for kind in ("mean", "std")]
    else:
        from .config import dataset_configs

        for part in (dataset_configs(config).values() if datasets else [config]):
            _guidance_files(part, files)
        if "yamnet-onnx" in files:
            modules.append("onnx")
    a = config.affective
    if not lyrics_given:
        files += {"faster-whisper": ["whisper-ct2-base"],
                  "whisper-at": ["whisper-at-large-v1", "whisper-at-large-v1-at-head"]}[a.lyrics]
        modules += {"faster-whisper": ["faster_whisper"], "whisper-at": ["whisper_at", "tiktoken"]}[a.lyrics]
    modules.append("vaderSentiment")  # VADER judges, or stands in for an unusable ChatGLM reply
    if a.polarity == "chatglm":
        files.append("chatglm3-6b")
    if a.music == "gru-ebs":
        files += [f"gru-ebs-{part}" for part in ("generator", "classifier", "syllable-skipgram", "word-skipgram",
                                                  "music-vocabulary", "syllable-vocabulary")]
        modules.append("pyphen")
    files[:] = dict.fromkeys(files)  # each once, in the order first named (datasets and spaces share files)
    return need


def _guidance_files(config, files: list[str]) -> None:
    """Add to `files` the registry entries that guiding with `config` reads: the generator (or the
    photo grader's photos), the spaces' networks and the identity network."""
    if config.random_weights:
        return
    g = config.generator
    if g.kind == "grader":
        from .models.photo_grader import PHOTOS

        files += [name for name, *_ in PHOTOS]
    elif not Path(g.weights).expanduser().exists():  # a registry name, not a file the user named
        files.append(g.weights)
    for space in (config.guidance.space, config.retrieval.space):
        if space in ("clip", "imagebind"):  # without imagebind-huge, retrieval falls back to the CLIP space
            files += _CLIP_FILES
        if space == "affect":  # faces through FER or MediaPipe; audio through YAMNet, musicnn, the VAD norms
            face = {"fer": "fer-mini-xception", "blendshapes": "mediapipe-face-landmarker"}[config.guidance.face_reader]
            reader = config.affective.audio_reader
            files += ([face] if config.domain == "face" else []) + \
                (["yamnet-onnx", "yamnet-class-map"] if reader.startswith("yamnet") else []) + \
                (["musicnn-msd"] if "musicnn" in reader else []) + \
                (["warriner-vad-norms"] if reader != "cues" else [])
    if config.guidance.l_id > 0:
        name = {"arcface": "arcface-ir-se50", "dlib": "dlib-face-resnet", "fer": "fer-mini-xception",
                "expression": "fer2013-cnn"}.get(config.guidance.identity)
        if name:
            files.append(name)


def _state(name: str, verify: bool) -> str:
    if not verify:
        return {"yes": "ok", "mirror": "ok", "BAD": "damaged"}.get(registry.presence(name), "missing")
    try:
        registry.path(name)  # hashed here once; the run that follows uses the same process's hash
    except registry.ChecksumError:
        return "damaged"
    except registry.MissingWeightError:
        return "missing"
    return "ok"


def missing(config, lyrics_given: bool = False, verify: bool = True, method: str | None = None,
            datasets: bool = False) -> list[str]:
    """One line per group of missing things, each with the command that fixes the group.
    `verify=False` trusts the ledger of earlier checks instead of hashing (for listings)."""
    need = requirements(config, lyrics_given, method, datasets)
    absent, damaged, manual = [], [], []
    for name in need.files:
        state = _state(name, verify)
        if state == "damaged":
            damaged.append(name)
        elif state == "missing":
            (manual if registry.entry(name).source["kind"] == "manual" else absent).append(name)
    if any(registry.entry(n).source["kind"] == "gdrive" for n in absent):
        need.modules.append("gdown")  # the fetch command below needs it
    groups: dict[str, list[str]] = {}
    for module in need.modules:
        if importlib.util.find_spec(module) is None:
            groups.setdefault(PACKAGES[module][1], []).append(module)
    lines = [f"Python packages {', '.join(mods)}: run `{install_command(group)}`" for group, mods in groups.items()]
    if absent:
        command = fetch_command(absent, config.profile)
        named = "" if command.endswith(" ".join(absent)) else " " + ", ".join(absent)
        lines.append(f"files{named}: run `{command}`")
    if damaged:
        lines.append(f"damaged files {', '.join(damaged)} (they fail their sha256 check and are not used): run "
                     f"`bash kit.sh emostyle weights fetch {' '.join(damaged)}` to replace them")
    if manual:
        lines.append(f"files {', '.join(manual)} that no public source serves: `bash kit.sh emostyle weights list "
                     "--long` says how to get each, then `emostyle weights fetch NAME --from PATH`")
    return lines


def check(config, lyrics_given: bool = False, command: str = "this run", method: str | None = None) -> None:
    """Raise MissingRequirementsError listing everything `config` needs and lacks (one line)."""
    lines = missing(config, lyrics_given, method=method)
    if lines:
        raise MissingRequirementsError(f"{command} (profile {config.profile}) cannot start; missing: "
                                       + "; ".join(lines))
