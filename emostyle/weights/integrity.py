"""Checks of a file against its registry entry: kind, HTML page, size, format, sha256.

A file is hashed when a process first uses it and again whenever its size, modification
time or inode change; a same-size corruption that keeps its time is therefore caught by the
next process that uses the file. The ledger `.verified.json` in each cache folder records
(size, mtime, inode, sha256) after a hash, for `emostyle weights list` only: nothing is
used on the ledger's word.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from ..manifest import write_json
from .table import ChecksumError, Entry, folder

__all__ = ["file_sha256", "tree_sha256", "digest", "check", "check_size", "looks_like_html", "remember",
           "forget", "recorded"]

_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<?xml")
# An entry with only an approximate size accepts files within this factor of it: a
# truncated transfer or an error page is far smaller, a different model far larger.
_APPROX_FACTOR = 2.0
# sha256 of files hashed in this process: resolved path -> (stat key, sha256).
_HASHED: dict[str, tuple[tuple, str]] = {}


def file_sha256(p: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks (never the whole file in memory)."""
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_sha256(folder: Path) -> str:
    """sha256 of a folder: over sorted lines `relative/path NUL file-sha256 LF`."""
    h = hashlib.sha256()
    for p in sorted(q for q in Path(folder).rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(folder).as_posix()}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()


def _stat_key(p: Path) -> tuple:
    """What changes when a file is replaced or rewritten: size, mtime and inode (of each file of a folder)."""
    def one(q: Path) -> tuple:
        st = q.stat()
        return st.st_size, st.st_mtime_ns, st.st_ino
    if p.is_dir():
        return tuple((q.relative_to(p).as_posix(), *one(q)) for q in sorted(p.rglob("*")) if q.is_file())
    return one(p)


def _size(p: Path) -> int:
    return sum(q.stat().st_size for q in p.rglob("*") if q.is_file()) if p.is_dir() else p.stat().st_size


def digest(p: Path, fresh: bool = False) -> str:
    """sha256 of a file (or `tree_sha256` of a folder), hashed once per process while the file
    is unchanged; `fresh` hashes again regardless."""
    key, where = _stat_key(p), str(Path(p).resolve())
    seen = _HASHED.get(where)
    if seen and seen[0] == key and not fresh:
        return seen[1]
    value = tree_sha256(p) if p.is_dir() else file_sha256(p)
    _HASHED[where] = (key, value)
    return value


def looks_like_html(head: bytes) -> bool:
    """Whether the first bytes of a file are an HTML or XML page (an error or login page)."""
    return head.lstrip().lower().startswith(_HTML_STARTS)


def check_size(e: Entry, size: int, where: str) -> None:
    """ChecksumError if `size` bytes cannot be entry `e`."""
    if e.size is not None and size != e.size:
        raise ChecksumError(f"{where} has {size} bytes; {e.name} ({e.filename}) has {e.size} bytes")
    if e.approx_size is not None and not e.approx_size / _APPROX_FACTOR <= size <= e.approx_size * _APPROX_FACTOR:
        raise ChecksumError(
            f"{where} has {size} bytes, far from the ~{e.approx_size} bytes of {e.name} ({e.filename}): "
            "a truncated download or a different file"
        )


def _is_torch(p: Path, head: bytes) -> bool:
    if zipfile.is_zipfile(p):  # torch.save since 1.6: a zip with <archive>/data.pkl
        with zipfile.ZipFile(p) as z:
            return any(n.endswith("data.pkl") for n in z.namelist())
    return head[:1] == b"\x80"  # the legacy format: a pickle stream


def _is_json(p: Path, head: bytes) -> bool:
    try:
        json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError):
        return False
    return True


# File suffix -> (format in words, test of (path, first 512 bytes)).
_FORMATS = {
    ".pt": ("PyTorch checkpoint", _is_torch),
    ".pth": ("PyTorch checkpoint", _is_torch),
    ".ckpt": ("PyTorch checkpoint", _is_torch),
    ".hdf5": ("HDF5", lambda p, head: head.startswith(b"\x89HDF\r\n\x1a\n")),
    ".h5": ("HDF5", lambda p, head: head.startswith(b"\x89HDF\r\n\x1a\n")),
    ".npy": ("NumPy array", lambda p, head: head.startswith(b"\x93NUMPY")),
    ".json": ("JSON", _is_json),
    ".gz": ("gzip", lambda p, head: head.startswith(b"\x1f\x8b")),
    ".sf2": ("SoundFont", lambda p, head: head[:4] == b"RIFF" and head[8:12] == b"sfbk"),
    ".flac": ("FLAC audio", lambda p, head: head.startswith(b"fLaC")),
    ".wav": ("WAV audio", lambda p, head: head[:4] == b"RIFF" and head[8:12] == b"WAVE"),
}


def _check_format(p: Path, e: Entry, where: str) -> None:
    known = _FORMATS.get(Path(e.filename).suffix.lower())
    if known is None or p.is_dir():
        return
    with open(p, "rb") as f:
        head = f.read(512)
    if not known[1](p, head):
        raise ChecksumError(f"{where} is not a {known[0]} file, so it cannot be {e.name} ({e.filename}): "
                            "the wrong file or a damaged copy")


def check(p: Path, e: Entry, where: str | None = None, fresh: bool = False) -> str:
    """Check kind, HTML, size, format (for entries without a published sha256) and sha256 of
    `p` against `e`; return its sha256. ChecksumError says what does not match."""
    where = where or str(p)
    if p.is_dir() != e.directory:
        raise ChecksumError(f"{where} is a {'folder' if p.is_dir() else 'file'}; {e.name} expects a "
                            f"{'folder' if e.directory else 'file'} ({e.filename})")
    if p.is_file():
        with open(p, "rb") as f:
            if looks_like_html(f.read(512)):
                raise ChecksumError(f"{where} is an HTML page, not {e.filename}: the link served an error or "
                                    "login page instead of the file")
    check_size(e, _size(p), where)
    if not e.sha256:
        _check_format(p, e, where)
    value = digest(p, fresh=fresh)
    if e.sha256 and value != e.sha256:
        raise ChecksumError(f"{where} has sha256 {value}; {e.name} ({e.filename}) has sha256 {e.sha256}")
    return value


def _ledger(e: Entry) -> Path:
    return folder(e) / ".verified.json"


def _read_ledger(e: Entry) -> dict:
    try:
        return json.loads(_ledger(e).read_text())
    except (OSError, ValueError):
        return {}


def _write_ledger(e: Entry, seen: dict) -> None:
    write_json(_ledger(e), seen)


def remember(p: Path, e: Entry, value: str) -> None:
    """Record that `p` hashed to `value` (in this process, and in the ledger where writable)."""
    key = _stat_key(p)
    _HASHED[str(p.resolve())] = (key, value)
    seen = _read_ledger(e)
    seen[str(p.resolve())] = [list(key), value]
    try:
        _write_ledger(e, seen)
    except OSError:  # a read-only cache: the file is hashed again next time
        pass


def forget(p: Path, e: Entry) -> None:
    """Drop `p` from the ledger and this process's hashes (a file found bad)."""
    _HASHED.pop(str(p.resolve()), None)
    seen = _read_ledger(e)
    if seen.pop(str(p.resolve()), None) is not None:
        try:
            _write_ledger(e, seen)
        except OSError:
            pass


def recorded(p: Path, e: Entry) -> str | None:
    """The sha256 the ledger holds for `p` if `p` has not changed since, else None (for listings only)."""
    seen = _read_ledger(e).get(str(p.resolve()))
    if not isinstance(seen, list) or len(seen) != 2:  # none, or a ledger of an older kit
        return None
    key, value = seen
    same = json.loads(json.dumps(_stat_key(p))) == key
    return value if same and (not e.sha256 or value == e.sha256) else None
