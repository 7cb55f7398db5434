"""`emostyle doctor`: what this machine has, and the command that fixes each missing piece."""

from __future__ import annotations

import importlib.util
import shutil
import sys

from . import registry
from .config import PROFILES

__all__ = ["doctor", "checks"]

# (module, what it enables, how to get it)
_OPTIONAL = (
    ("faster_whisper", "lyrics on the offline profile", "pip install -e '.[offline]'"),
    ("vaderSentiment", "polarity on the offline profile", "pip install -e '.[offline]'"),
    ("pyphen", "syllables for the composer and GRU-EBS", "pip install -e '.[offline]'"),
    ("dlib", "the landmark judge of the offline profile's faces", "pip install -e '.[offline]'"),
    ("tinysoundfont", "SoundFont rendering of the music", "pip install --no-deps tinysoundfont"),
    ("whisper_at", "Whisper-AT lyrics and audio tags (paper profiles)", "pip install --no-deps whisper-at"),
    ("tensorflow", "the VILA scorer of Table 1", "pip install -e '.[vila]'"),
    ("dask", "sweeps (emostyle sweep)", "pip install -e '.[sweep]'"),
    ("gdown", "Google Drive weights (StyleGAN2 FFHQ, ArcFace)", "pip install -e '.[gdrive]'"),
    ("jupyterlab", "exploring the notebooks", "bash kit.sh lab"),
)
_PROGRAMS = (
    ("fluidsynth", "the reference MIDI renderer (optional; tinysoundfont or the additive synth otherwise)",
     "apt-get install fluidsynth"),
    ("espeak-ng", "remaking data/songs (data/make_songs.py)", "apt-get install espeak-ng"),
)


def checks() -> list[tuple[str, bool, str, str]]:
    """(item, present, what it is for, how to fix) for everything the kit can use."""
    import torch

    rows = [("python " + sys.version.split()[0], sys.version_info >= (3, 10), "the kit", "use Python >= 3.10"),
            (f"torch {torch.__version__}", True, "every network", ""),
            ("CUDA device" + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""),
             torch.cuda.is_available(), "full-size paper profiles in reasonable time",
             "optional: a machine with an NVIDIA GPU and a CUDA build of torch")]
    for module, purpose, fix in _OPTIONAL:
        rows.append((f"python package {module}", importlib.util.find_spec(module) is not None, purpose, fix))
    for program, purpose, fix in _PROGRAMS:
        rows.append((f"program {program}", shutil.which(program) is not None, purpose, fix))
    for profile in PROFILES:
        for name in registry.profile_files(profile):
            try:
                registry.path(name)
                present = True
            except FileNotFoundError:
                present = False
            rows.append((f"[{profile}] {name}", present, registry.entry(name).description,
                         f"emostyle weights fetch {name}"))
    return rows


def doctor() -> int:
    """Print the checks; exit code 0 (a missing optional piece is information, not failure)."""
    for item, present, purpose, fix in checks():
        mark = "ok " if present else "-- "
        line = f"{mark} {item}: {purpose}"
        if not present and fix:
            line += f"\n      fix: {fix}"
        print(line)
    return 0
