"""Output folders that appear only complete.

A run writes into a staging folder beside its `out` (`.<name>.partial-<pid>@<host>`) and publishes
it with a rename once it has finished: a failed or interrupted run leaves no folder, and
never a previous run's images beside nothing new. An `out` that holds another run's result
(a `manifest.json` with the keys the caller's results have: `manipulate`'s name a song and a
method, and reproduce's figures folder is not one) and nothing else (the manifest lists the
files it was published with, under "files") is replaced as a whole at publication; an `out`
holding anything else (a photo put there, a result of an older version) is refused unless
`force`, and an `out` holding one of the run's inputs always. Paths that the staged JSON files
name inside the staging folder are rewritten to `out` before publication.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["signals_held", "staged_output", "process_tag", "owner_alive", "clear_dead", "Published"]


HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP take effect when the block ends: for the few renames that put
    a finished result in place, which must happen all or not at all, and for torch's imports
    (`emostyle.cli`). Python runs signal handlers in the main thread whichever thread the signal
    reaches (masking one thread only sends it to another), so the main thread's handlers are
    swapped for a recorder and each recorded signal is raised again at the end. A signal the
    process ignores (`nohup`, a background job's Ctrl-C) stays ignored. A block that fails drops
    the signals it held: its error, which stops the caller as well, says what went wrong, where
    the signal would have hidden it. Off the main thread no handler runs, and nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    heard: list[int] = []
    previous = {s: signal.getsignal(s) for s in HELD}
    for s, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(s, lambda signum, frame: heard.append(signum))
    done = False
    try:
        yield
        done = True
    finally:
        for s, handler in previous.items():
            if handler is not signal.SIG_IGN:
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        for s in dict.fromkeys(heard) if done else ():
            signal.raise_signal(s)  # to the handler it would have reached


def _files(folder: Path) -> list[str]:
    """The files under `folder`, as paths relative to it."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink())


# What a desktop or JupyterLab leaves in any folder it shows: no one's work
_LITTER = {".DS_Store", "Thumbs.db", "desktop.ini"}


def _listed(out: Path, result_keys: tuple[str, ...]) -> list[str] | None:
    """The files that the previous result in `out` of the caller's kind (a manifest.json with
    `result_keys`) lists under "files" ([] for a result of a kit before that list); None: `out`
    holds no such result."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(manifest, dict) and set(result_keys) <= manifest.keys()):
        return None
    listed = manifest.get("files") or []
    return listed if isinstance(listed, list) and all(isinstance(f, str) for f in listed) else None


def _refuse(out: Path, force: bool, result_keys: tuple[str, ...], inputs: tuple[Path, ...]) -> None:
    """A one-line ValueError for an `out` that cannot or must not receive the result."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: give a folder path (it is created)")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {out}: {parent} is a file, so no folder can be made under it; "
                         "give another folder")
    if out.is_dir():
        for path in inputs:  # replacing the folder would delete them, --force or not
            if Path(path).expanduser().resolve().is_relative_to(out.resolve()):
                raise ValueError(f"--out {out} holds {path}, an input of this run, and would be replaced as a "
                                 "whole: give another folder")
    listed = _listed(out, result_keys) if out.is_dir() else []
    known = set(listed or ())
    strays = None if listed is None else [
        f for f in (_files(out) if out.is_dir() else []) if f not in known
        and Path(f).name not in _LITTER and ".ipynb_checkpoints" not in Path(f).parts]
    if out.is_dir() and any(out.iterdir()) and strays != [] and not force:
        what = ("other files than a previous result (another command's results, such as reproduce's figures, "
                "are not one)" if strays is None else
                "a result of an earlier version of the kit, whose manifest does not list the files it wrote"
                if not listed else
                f"files that the previous result there did not write ({', '.join(strays[:3])}"
                f"{', ...' if len(strays) > 3 else ''})")
        raise ValueError(f"--out {out} exists and holds {what}; give a new folder, or pass --force "
                         "(force=True in Python) to replace it with all it holds")
    if out.is_dir() and Path.cwd().resolve().is_relative_to(out.resolve()):
        raise ValueError(f"--out {out} holds the current folder; it cannot be replaced: give a new folder")
    if out.is_dir():
        from .weights.table import home

        for kept, what in ((home(), "the kit's home (its weights and caches)"),
                           (Path(__file__).resolve().parent, "the kit's code")):
            if kept.expanduser().resolve().is_relative_to(out.resolve()):  # --force or not
                raise ValueError(f"--out {out} holds {what}, {kept}; it cannot be replaced: give a new folder")


def _remove_stale(out: Path) -> None:
    """Staging folders of runs that were killed (their process is gone); a previous result that
    such a run had moved aside to publish its own goes back in place if nothing replaced it."""
    for stale in sorted(out.absolute().parent.glob(f".{out.name}.*-*")):
        kind, _, owner = stale.name[len(out.name) + 2:].partition("-")
        if kind not in ("partial", "old") or owner_alive(owner):
            continue
        if kind == "old" and not out.exists():
            os.replace(stale, out)
        else:
            shutil.rmtree(stale, ignore_errors=True)


def clear_dead(folder: Path, prefix: str) -> None:
    """Remove what killed processes staged in `folder` as `<prefix><process_tag>`: a writer that
    is gone never finishes it; a live one (or one of another host) keeps its own."""
    for left in folder.glob(f"{glob.escape(prefix)}*"):
        if not owner_alive(left.name[len(prefix):]):
            shutil.rmtree(left, ignore_errors=True)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"


def process_tag() -> str:
    """"<pid>@<host>": names what this process stages, so that a later run can tell whether its
    writer is gone (`owner_alive`), also where hosts share the folder."""
    return f"{os.getpid()}@{_host()}"


def owner_alive(tag: str) -> bool:
    """Whether the process of a `process_tag` (or a bare pid, as older versions named staging)
    still runs. A process of another host cannot be asked, nor one we may not signal (another
    user's), nor a name that is no tag: each counts as alive, not ours to clean up."""
    pid, _, host = tag.partition("@")
    if host and host != _host():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError, OverflowError):
        pass
    return True


def _rewrite_paths(stage: Path, out: Path) -> None:
    """Point the staged JSON files' mentions of the staging folder at the published one."""
    def fix(value):
        if isinstance(value, str):
            return value.replace(stage.name, out.name)
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        return value

    from .manifest import write_json

    for p in stage.glob("*.json"):
        record = json.loads(p.read_text())  # parsed: the text escapes a name's non-ASCII letters
        fixed = fix(record)
        if fixed != record:
            write_json(p, fixed)


def _record_files(stage: Path) -> None:
    """List in the staged manifest.json the files published with it (itself included), so that a
    later run knows what it may replace."""
    from .manifest import write_json

    manifest = stage / "manifest.json"
    if manifest.is_file():
        record = json.loads(manifest.read_text())
        if isinstance(record, dict):
            write_json(manifest, {**record, "files": sorted({*_files(stage), "manifest.json"})})


class Published(KeyboardInterrupt):
    """A signal (`signum`) that came while a finished result was put in place at `out`, which it
    was, whole, before the signal took effect."""

    def __init__(self, out: Path, signum: int):
        super().__init__(f"the result was published to {out}")
        self.out, self.signum = out, signum


def _publish(stage: Path, out: Path) -> None:
    _rewrite_paths(stage, out)
    _record_files(stage)
    old = out.absolute().parent / f".{out.name}.old-{process_tag()}" if out.exists() else None
    placed = False
    try:
        # Never the old result gone and the new one not yet in place; and the old one removed
        # before a signal takes effect (a result is a few megabytes: a second at most).
        with signals_held():
            if old is not None:
                os.replace(out, old)
            try:
                os.replace(stage, out)
            except BaseException:
                if old is not None:
                    os.replace(old, out)
                raise
            placed = True
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except KeyboardInterrupt as stop:
        if placed:
            raise Published(out, getattr(stop, "signum", signal.SIGINT)) from None
        raise


@contextmanager
def staged_output(out: str | Path, force: bool = False, result_keys: tuple[str, ...] = (),
                  inputs: tuple[str | Path, ...] = ()) -> Iterator[Path]:
    """Yield an empty staging folder beside `out`; publish it as `out` when the block ends
    without an error, remove it otherwise. Bad `out` paths are one-line ValueErrors raised
    before the block runs. `result_keys`: what the manifest.json of a previous result (replaced
    without `force`) holds; `inputs`: files the run reads, which `out` must not hold."""
    out = Path(out).expanduser()
    if out.is_symlink():  # the folder it names (made if missing), not the link replaced by a folder
        out = out.resolve()
    inputs = tuple(Path(p) for p in inputs)
    _refuse(out, force, result_keys, inputs)
    _remove_stale(out)
    stage = out.absolute().parent / f".{out.name}.partial-{process_tag()}"
    made = [p for p in stage.parents if not p.exists()]  # folders the run creates, deepest first
    try:
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
    except OSError as error:
        raise ValueError(f"--out {out}: cannot write in {stage.parent} ({error.strerror}); give a folder "
                         "you can write to") from None
    published = False
    try:
        yield stage
        _refuse(out, force, result_keys, inputs)  # again: a file put there while the run worked is not lost
        try:
            _publish(stage, out)
        except Published:
            published = True
            raise
        published = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in made if not published else ():  # a refused or failed run leaves no empty folders
            try:
                folder.rmdir()
            except OSError:  # something else was put there meanwhile
                break
