"""`emostyle doctor`: what this machine lacks for each profile, grouped, one command per group."""

from __future__ import annotations

import importlib.util
import shutil
import sys

from .config import PROFILES, load_config
from .preflight import PACKAGES, install_command, missing

__all__ = ["doctor", "report"]

_PROGRAMS = (
    ("fluidsynth", "the reference MIDI renderer (tinysoundfont or the additive synth otherwise)",
     "apt-get install fluidsynth"),
    ("espeak-ng", "remaking data/songs (data/make_songs.py)", "apt-get install espeak-ng"),
)


def report() -> list[str]:
    """The lines of `emostyle doctor`: the machine, then each profile and each optional group
    that lacks something, with the command that fixes it."""
    import torch

    device = (f"CUDA device {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
              else "no CUDA device (the paper profiles run, slowly, on the CPU)")
    lines = [f"Python {sys.version.split()[0]}, torch {torch.__version__}, {device}"]
    if sys.version_info < (3, 11):
        lines.append("-- Python is older than 3.11, which the kit needs: use Python 3.11 or later")
    for profile in PROFILES:
        lacking = missing(load_config(profile), verify=False, datasets=True)  # what `reproduce` reads
        lines.append(f"ok {profile} profile: every file and package present" if not lacking else
                     f"-- {profile} profile lacks " + "\n     ".join(lacking))
    groups: dict[str, list[str]] = {}
    for module, (purpose, group) in PACKAGES.items():
        if importlib.util.find_spec(module) is None:
            groups.setdefault(group, []).append(f"{module}, for {purpose}")
    for group, mods in groups.items():
        lines.append(f"-- optional {'; '.join(mods)}: `{install_command(group)}`")
    for program, purpose, fix in _PROGRAMS:
        if shutil.which(program) is None:
            lines.append(f"-- optional program {program}, for {purpose}: `{fix}`")
    return lines


def doctor() -> int:
    """Print `report()`; exit code 0 (a missing optional piece is information, not failure)."""
    print("\n".join(report()))
    return 0
