"""The cache of registry files: `path` (a verified file, recorded as used), `fetch` (make it
present), `verify` (hash everything again) and `used` (what a run used, for manifests: the
files of the innermost `recording`, else of the whole process)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .integrity import check, digest, forget, recorded, remember
from .sources import FETCHERS, install
from .table import ChecksumError, Entry, MissingWeightError, candidates, entries, entry, folder, how_to_get, \
    profile_files

__all__ = ["path", "fetch", "fetch_profile", "verify", "Check", "presence", "used", "recording", "kept_with_uses", "replay",
           "USED_LOG_VAR"]

# Every file a run used in this process: entry name -> {name, path, sha256, size, pinned}.
_USED: dict[str, dict] = {}
# When set, each use is also appended (one JSON line) to this file: a run made of several
# processes (reproduce's notebook kernels) collects their files there (`used(logs)`).
USED_LOG_VAR = "EMOSTYLE_USED_WEIGHTS"


# The open `recording`s of this context, outermost first: each collects the files used inside it.
_RECORDINGS: ContextVar[tuple[list[dict], ...]] = ContextVar("emostyle_recordings", default=())

T = TypeVar("T")


def _record_use(e: Entry, p: Path, sha256: str) -> None:
    size = sum(q.stat().st_size for q in p.rglob("*") if q.is_file()) if p.is_dir() else p.stat().st_size
    _note({"name": e.name, "path": str(p), "sha256": sha256, "size": size, "pinned": bool(e.sha256)}, live=True)


def _same_file(a: dict, b: dict | None) -> bool:
    """Two records of one file: the same entry and content (a cached reading's record may name a
    path the file has since left)."""
    return b is not None and a["name"] == b["name"] and a["sha256"] == b["sha256"]


def _note(record: dict, live: bool) -> None:
    """Record a use: `live`, a file read now (its path is where it is); else `replay`ed from a
    cached result (its path is where the file was then, and gives way to a live one's)."""
    for records in _RECORDINGS.get():
        same = [k for k, r in enumerate(records) if _same_file(record, r)]
        if not same:
            records.append(record)
        elif live:
            records[same[0]] = record
    if _USED.get(record["name"]) == record or (not live and _same_file(record, _USED.get(record["name"]))):
        return
    _USED[record["name"]] = record
    if os.environ.get(USED_LOG_VAR):
        with open(os.environ[USED_LOG_VAR], "a") as log:
            log.write(json.dumps(record) + "\n")


@contextmanager
def recording() -> Iterator[list[dict]]:
    """Collect the registry files used inside the block (the yielded list, in order of first
    use), for the manifest of one run: a process that runs several (the Python API, a
    notebook's kernel) used files for the others too. `used()` inside the block lists these.
    A thread started inside does not collect into it (a new thread's context is empty)."""
    records: list[dict] = []
    token = _RECORDINGS.set((*_RECORDINGS.get(), records))
    try:
        yield records
    finally:
        _RECORDINGS.reset(token)


def kept_with_uses(store: dict, key, make: Callable[[], T]) -> T:
    """`make()`, made once per process and kept in `store` under `key` with the registry files it
    read; every call that takes it records those files again (`replay`), so that a run reusing
    what an earlier run made still lists them."""
    if key not in store:
        with recording() as records:
            value = make()
        store[key] = value, records
    value, records = store[key]
    replay(records)
    return value


def replay(records: Iterable[dict]) -> None:
    """Record again, as used now, files that a cached result was made from (`recording`)."""
    for record in records:
        _note(dict(record), live=False)


def used(logs: Iterable[str | Path] = ()) -> list[dict]:
    """Every registry file used in the innermost open `recording` (outside any: in this
    process), in order of first use: name, path, sha256, size (bytes), pinned (whether the
    sha256 is the published one); and those logged in `logs` by other processes of the run
    (notebook kernels, given those files as their $EMOSTYLE_USED_WEIGHTS)."""
    scopes = _RECORDINGS.get()
    records = list(scopes[-1] if scopes else _USED.values())
    for log in map(Path, logs):
        if not log.is_file():
            continue
        for line in log.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a killed process
                continue
            same = [k for k, r in enumerate(records) if _same_file(record, r)]
            if not same:
                records.append(record)
            elif not Path(records[same[0]]["path"]).exists():  # a path the file has left gives way
                records[same[0]] = record
    return [dict(r) for r in records]


def _first_good(e: Entry) -> tuple[Path | None, list[str]]:
    """The first candidate of `e` that passes its check (hashed once per process), and the
    reasons the ones before it failed."""
    bad = []
    for p in candidates(e):
        if not p.exists():
            continue
        try:
            check(p, e)
        except ChecksumError as err:
            forget(p, e)
            bad.append(str(err))
            continue
        return p, bad
    return None, bad


def path(name: str) -> Path:
    """The verified file (or folder) of entry `name`, recorded in `used()`.

    Looks in the cache, then `$EMOSTYLE_WEIGHT_<NAME>`, then `$EMOSTYLE_MIRROR`; raises
    MissingWeightError saying which file, which profiles need it, and how to get it, or
    ChecksumError when the only copies fail their check.
    """
    e = entry(name)
    p, bad = _first_good(e)
    if p is not None:
        _record_use(e, p, digest(p))
        return p
    if bad:
        raise ChecksumError(f"{bad[0]}: this copy of {e.name} is damaged or the wrong file and is not used. "
                            f"{how_to_get(e)}")
    needed = f"needed by profile {', '.join(e.profiles)}" if e.profiles else "optional: no profile needs it"
    raise MissingWeightError(
        f"missing {'folder' if e.directory else 'file'} {e.filename!r} ({e.description}; registry entry "
        f"{e.name!r}; {needed}). {how_to_get(e)}"
    )


def fetch(name: str, progress: bool = True, from_path: str | Path | None = None) -> Path:
    """Make entry `name` present and verified in the cache; return its path.

    `from_path`: take the file from there (checked, then copied; for an entry without a
    published sha256 its format is checked and its sha256 recorded). Otherwise a cached,
    `$EMOSTYLE_WEIGHT_<NAME>` or `$EMOSTYLE_MIRROR` copy is used before the network; a damaged
    cached copy is replaced.
    """
    e = entry(name)
    if from_path is not None:
        src = Path(from_path).expanduser()
        if not src.exists():
            raise FileNotFoundError(f"--from {src}: no such file")
        return install(src, e, move=False)[0]
    p, _ = _first_good(e)
    if p is not None:
        return p if p.parent == folder(e) else install(p, e, move=False)[0]
    for bad in (q for q in candidates(e) if q.parent == folder(e) and q.exists()):  # the cache's own damaged copies
        shutil.rmtree(bad) if bad.is_dir() else bad.unlink()
    return FETCHERS[e.source["kind"]](e, progress)[0]


def fetch_profile(profile: str, progress: bool = True) -> list[Path]:
    """Fetch every file that `profile` needs; return their paths."""
    return [fetch(n, progress=progress) for n in profile_files(profile)]


@dataclass
class Check:
    """One line of `verify`: status is ok, unpinned (present, no published sha256), missing or bad."""

    name: str
    status: str
    path: Path | None = None
    detail: str = ""


def verify(names: list[str] | None = None) -> list[Check]:
    """Re-check (full sha256, hashed afresh) every present file of `names` (default: all entries)."""
    report = []
    for e in (entry(n) for n in names) if names else entries().values():
        present = [p for p in candidates(e) if p.exists()]
        if not present:
            report.append(Check(e.name, "missing", detail=f"`emostyle weights fetch {e.name}`"))
            continue
        try:
            value = check(present[0], e, fresh=True)
        except ChecksumError as err:
            forget(present[0], e)
            report.append(Check(e.name, "bad", present[0], f"{err}; it will not be used: "
                                f"`emostyle weights fetch {e.name}` replaces it"))
            continue
        report.append(Check(e.name, "ok" if e.sha256 else "unpinned", present[0],
                            "" if e.sha256 else f"no published sha256; this copy has {value}"))
    return report


def presence(name: str) -> str:
    """For listings: where the copy that runs take lies, "yes" (in the cache) or "mirror"
    (elsewhere); "BAD" (every copy fails its check) or "no". A file is hashed only when the
    ledger holds no record of it as it is now; runs never rely on this (`path` hashes on first
    use)."""
    e = entry(name)
    bad = False
    for p in candidates(e):
        if not p.exists():
            continue
        try:
            if not recorded(p, e):
                remember(p, e, check(p, e))
        except ChecksumError:
            bad = True  # a good copy after it is the one runs take (`_first_good`)
            continue
        return "yes" if p.parent == folder(e) else "mirror"
    return "BAD" if bad else "no"
