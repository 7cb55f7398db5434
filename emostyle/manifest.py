"""Run manifests: what produced an output (profile, config, versions, device, seeds, timings,
the weight files used with their sha256).

Every output folder gets a `manifest.json` beside it, written atomically, so a figure can
always be traced back to the run that made it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = ["MANIPULATION_KEYS", "code_version", "config_digest", "environment", "git_commit", "write_json", "written_whole", "run_manifest", "collected_warnings"]

# What the manifest of a manipulation (`emostyle manipulate`) holds, and a figures folder's does not.
MANIPULATION_KEYS = ("song", "method")

_PACKAGES = ("emostyle", "torch", "numpy", "scipy", "librosa", "transformers", "faster-whisper",
             "ctranslate2", "vaderSentiment", "pretty_midi", "papermill", "matplotlib", "h5py", "pillow",
             "soundfile", "numba", "tflite", "onnx", "ai-edge-litert", "dlib-bin", "pyphen", "diffusers", "tensorflow",
             "tensorflow-cpu")


def git_commit(root: str | Path | None = None) -> str | None:
    """The commit of the kit's checkout (with `-dirty` if it has changes), or None."""
    root = Path(root or Path(__file__).resolve().parents[1])
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str | None = None) -> dict[str, Any]:
    """Versions of Python and the packages that shape results, torch's thread count, and the device."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    import torch

    info: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                            "packages": versions, "git_commit": git_commit(),
                            "torch_threads": torch.get_num_threads(),  # float sums, and so results, depend on it
                            # So do the kernels chosen for the CPU's instruction set (torch's, and
                            # CTranslate2's for Whisper, forced with CT2_FORCE_CPU_ISA): FINDINGS.md, "One
                            # image's reading is one draw".
                            "cpu": _cpu_model(), "cpu_kernels": {
                                "torch": torch.backends.cpu.get_cpu_capability(),
                                "ctranslate2": os.environ.get("CT2_FORCE_CPU_ISA", "chosen for the CPU")}}
    if device is not None:
        info["device"] = device
        if device.startswith("cuda"):
            info["device_name"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    """The processor's name (Linux's /proc/cpuinfo; elsewhere what `platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def code_version() -> str:
    """sha256 of the package's code, registry (which holds every weight's sha256) and profiles."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(p for pattern in ("*.py", "*.toml", "*.yaml") for p in root.rglob(pattern)
                       if "__pycache__" not in p.parts):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def config_digest(config: dict) -> bytes:
    """sha256 of a configuration (as JSON) and of the content of every file a run with it reads
    besides registry entries: the kit's songs and any path in the configuration."""
    from .samples import SONGS_DIR, songs_digest

    files = []

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, str) and os.sep in value and Path(value).expanduser().is_file():
            files.append(Path(value).expanduser())

    walk(config)
    digests = songs_digest() if SONGS_DIR.is_dir() else {}
    digests |= {str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    h.update(json.dumps(digests, sort_keys=True).encode())
    return h.digest()


@contextmanager
def written_whole(path: str | Path) -> Iterator[Path]:
    """A temporary file beside `path` to write in the block; renamed to `path` when the block
    ends, removed if it fails: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the file is as readable as any other the kit writes
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def kept(store: str | Path, key: bytes, map_location=None) -> Any | None:
    """What `keep` stored in `store` under `key` for this version of the kit's code
    (`code_version`), or None: absent, or unreadable (damaged, or removed meanwhile), to be
    made again."""
    import torch

    path = _kept_path(store, key)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception:
        return None


def keep(store: str | Path, key: bytes, value: Any) -> None:
    """Store `value` (`torch.save`) in `store` under `key`, written whole (`written_whole`), and
    remove what other versions of the code kept there (a changed kit would otherwise pile up
    results that no version reads)."""
    import shutil

    import torch

    path = _kept_path(store, key)
    with written_whole(path) as tmp:
        torch.save(value, tmp)
    for other in Path(store).iterdir():
        if other.is_dir() and other != path.parent:
            shutil.rmtree(other, ignore_errors=True)


def _kept_path(store: str | Path, key: bytes) -> Path:
    return Path(store) / code_version()[:16] / f"{hashlib.sha256(key).hexdigest()}.pt"


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically (temporary file, then rename): no half-written manifest. Strict JSON
    (RFC 8259), which `jq` and browsers read: a number that is not finite (a NaN reading, the
    infinite PSNR of an exact reconstruction) is written as null."""
    plain = json.loads(json.dumps(data, default=_jsonable), parse_constant=lambda _: None)
    text = json.dumps(plain, indent=2, allow_nan=False)
    with written_whole(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it: setting it to read
    it back would leave it 0 for a moment, and a thread writing then makes world-writable files."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(value)
    return str(value)


def run_manifest(config, *, seeds: dict[str, int] | None = None, timings: dict[str, float] | None = None,
                 weight_logs: Iterable[str | Path] = (), **extra: Any) -> dict[str, Any]:
    """A manifest for a run of `config` (an emostyle.config.Config), with every registry file
    this process used and its sha256 (`weights`), and those that the run's other processes
    logged in `weight_logs` (`registry.used`)."""
    from . import registry

    return {
        "profile": config.profile,
        "config": config.to_dict(),
        "seeds": seeds or {"seed": config.seed},
        "timings_s": timings or {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(config.resolve_device()),
        "weights": registry.used(weight_logs),
        **extra,
    }


@contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """Warnings raised inside the block, for a manifest: each distinct message is shown once
    (stages that re-read a song repeat theirs) and appended to the yielded list as it comes."""
    seen: list[str] = []
    with warnings.catch_warnings():  # restores the filters and the display function on exit
        warnings.simplefilter("always")
        # Python hides these by default: they tell of an object the collector met, not of the run
        warnings.simplefilter("ignore", ResourceWarning)
        show = warnings.showwarning

        def once(message, category, filename, lineno, file=None, line=None):
            text = f"{category.__name__}: {message}"
            if text not in seen:
                seen.append(text)
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = once
        yield seen
