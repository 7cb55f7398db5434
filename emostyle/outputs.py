"""Output folders that appear only complete.

A run writes into a staging folder beside its `out` (`.<name>.partial-<pid>`) and publishes
it with a rename once it has finished: a failed or interrupted run leaves no folder, and
never a previous run's images beside nothing new. An `out` that holds another run's result
(a `manifest.json` with the keys the caller's results have: `manipulate`'s name a song and a
method, and reproduce's figures folder is not one) is replaced as a whole at publication; an
`out` holding anything else is refused unless `force`. Paths that the staged JSON files name inside the staging folder are
rewritten to `out` before publication.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["staged_output"]


def _previous_result(out: Path, result_keys: tuple[str, ...]) -> bool:
    """`out` holds a result of the caller's kind: a manifest.json with `result_keys`."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and set(result_keys) <= manifest.keys()


def _refuse(out: Path, force: bool, result_keys: tuple[str, ...]) -> None:
    """A one-line ValueError for an `out` that cannot or must not receive the result."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: give a folder path (it is created)")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {out}: {parent} is a file, so no folder can be made under it; "
                         "give another folder")
    if out.is_dir() and any(out.iterdir()) and not _previous_result(out, result_keys) and not force:
        raise ValueError(f"--out {out} exists and holds other files than a previous result (another command's "
                         "results, such as reproduce's figures, are not one); give a new folder, or pass --force "
                         "(force=True in Python) to replace it")
    if out.is_dir() and Path.cwd().resolve().is_relative_to(out.resolve()):
        raise ValueError(f"--out {out} holds the current folder; it cannot be replaced: give a new folder")


def _remove_stale(out: Path) -> None:
    """Staging folders of runs that were killed (their process is gone)."""
    for stale in out.absolute().parent.glob(f".{out.name}.partial-*"):
        try:
            os.kill(int(stale.name.rsplit("-", 1)[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except (ValueError, PermissionError):  # not ours, or a process of another user
            pass


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
        text = p.read_text()
        if stage.name in text:
            write_json(p, fix(json.loads(text)))


def _publish(stage: Path, out: Path) -> None:
    _rewrite_paths(stage, out)
    old = out.absolute().parent / f".{out.name}.old-{os.getpid()}" if out.exists() else None
    if old is not None:
        os.replace(out, old)
    try:
        os.replace(stage, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_output(out: str | Path, force: bool = False, result_keys: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield an empty staging folder beside `out`; publish it as `out` when the block ends
    without an error, remove it otherwise. Bad `out` paths are one-line ValueErrors raised
    before the block runs. `result_keys`: what the manifest.json of a previous result (replaced
    without `force`) holds."""
    out = Path(out).expanduser()
    _refuse(out, force, result_keys)
    _remove_stale(out)
    stage = out.absolute().parent / f".{out.name}.partial-{os.getpid()}"
    try:
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
    except OSError as error:
        raise ValueError(f"--out {out}: cannot write in {stage.parent} ({error.strerror}); give a folder "
                         "you can write to") from None
    try:
        yield stage
        _publish(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
