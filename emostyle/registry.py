"""The weights and data registry: every external file, where it comes from, and its cache.

Entries live in `registry.toml`. `path(name)` returns the verified cached file or raises
`MissingWeightError` naming the command that fetches it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

__all__ = ["MissingWeightError", "Entry", "entries", "entry", "path", "home"]


class MissingWeightError(FileNotFoundError):
    """A registry file that is not in the cache (or fails its check)."""


@dataclass(frozen=True)
class Entry:
    """One external file: `name` is the registry key used across the kit."""

    name: str
    description: str
    filename: str
    source: dict
    license: str = "unknown"
    size: int | None = None
    sha256: str | None = None
    profiles: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    mirror: str | None = None
    notes: str = ""


@lru_cache(maxsize=1)
def _table() -> dict:
    with open(Path(__file__).with_name("registry.toml"), "rb") as f:
        return tomllib.load(f)


def entries() -> dict[str, Entry]:
    """All entries by name."""
    return {
        name: Entry(name=name, **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
        for name, fields in _table()["weights"].items()
    }


def entry(name: str) -> Entry:
    """The entry called `name`; an unknown name raises KeyError listing close matches."""
    import difflib

    known = entries()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise KeyError(f"unknown registry entry {name!r}; {hint}see `emostyle weights list`")
    return known[name]


def home() -> Path:
    """The cache root: $EMOSTYLE_HOME, default ~/.cache/emostyle."""
    return Path(os.environ.get("EMOSTYLE_HOME", Path.home() / ".cache" / "emostyle")).expanduser()


def path(name: str) -> Path:
    """The cached file of entry `name`; raises MissingWeightError if absent."""
    e = entry(name)
    target = home() / "weights" / name / e.filename
    if not target.exists():
        needed = ", ".join(e.profiles) or "no profile (optional)"
        raise MissingWeightError(
            f"missing file {e.filename!r} (registry entry {name!r}, needed by {needed}); "
            f"fetch it with `emostyle weights fetch {name}` or put it at {target}"
        )
    return target
