"""`emostyle reproduce`: execute the notebooks with papermill to regenerate the paper's figures.

Parameters come from the profile (injected into each notebook's `parameters` cell). Each
notebook writes its figures into the run directory (`runs/<time>-<profile>/figures/<notebook>/`),
never straight into `figures/`; when the run ends, its figures and its manifest are published
into `figures/` together, so that folder never mixes runs. A notebook whose inputs (the
notebook file, its parameters, the resolved config, the package's code and registry, the
input songs: the kit's, or a folder of the user's, `songs`; the package versions, the device,
the CPU kernels and which optional files and packages are present: `_machine`) did not
change since it last succeeded is reused from the cache beside the run folders (`runs/.cache/`)
instead of executed; `force=True` executes everything. A failing notebook does not stop the
others: the run publishes every figure it could make (also those a failing notebook finished
before its error) and the manifest names the ones it could not, and why. Ctrl-C stops the kernels at
once, publishes nothing, and says where the partial run is.
Notebooks run side by side, one per core, the longest first.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import registry
from .audio import numba_cache_dir, read_audio
from .config import Config, load_config
from .manifest import MANIPULATION_KEYS, code_version, config_digest, environment, run_manifest, write_json
from .outputs import HELD, clear_dead, process_tag, signals_held
from .samples import Sample, songs as sample_songs, songs_digest
from .weights.cache import USED_LOG_VAR

__all__ = ["NOTEBOOKS", "Notebook", "ReproduceError", "Interrupted", "reproduce", "notebook_dir",
           "check_parameters_cell", "inputs_key", "register_kernel", "KERNEL_ENV"]

_KERNEL = "emostyle-kit"
# Environment of the kit's kernels. torch's OpenMP threads busy-wait for a core by default: on a
# shared machine they spin against other jobs and a step gets 20x slower; passive threads sleep.
# It must be in the environment before the kernel imports torch, so it goes into the kernelspec.
KERNEL_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


@dataclass(frozen=True)
class Notebook:
    """A notebook of the kit and the figures/tables (keys for `--only`) it regenerates."""

    name: str
    keys: tuple[str, ...]
    outputs: tuple[str, ...]  # file stems under figures/ (PNG+PDF or CSV+MD); "stem_*": one or more per dataset
    # Its running time on the offline profile, in seconds on one core (a first run orders the
    # notebooks longest first by these; later runs by the cache's own timings).
    seconds: float = 0.0


NOTEBOOKS = (
    Notebook("00_quickstart", ("fig1", "quickstart"), ("fig1_architecture", "quickstart"), 22),
    Notebook("01_retrieval", ("retrieval",), ("retrieval", "retrieval_sets", "retrieval_sets_faces"), 18),
    Notebook("02_affective_music", ("music",), ("affective_music",), 7),
    Notebook("03_guidance", ("fig2", "fig3"), ("fig2_lyrics", "fig3_sounds_a", "fig3_sounds_b", "guidance_losses"),
             166),
    Notebook("04_ablations", ("fig4",), ("fig4_ablations",), 75),
    Notebook("05_vila_scoring", ("table1",), ("table1",), 106),
    Notebook("07_start_study", ("study",), ("start_study", "start_study_examples_*", "start_study_by_start",
                                            "start_study_changes"), 169),
)


class ReproduceError(RuntimeError):
    """A notebook cannot run (no parameters cell, ...); the message names it and the fix."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, SIGHUP: `signum`) during a run: nothing was published and `run_dir`
    holds the partial run; or, `published`, the signal came while the finished run was being
    put in place, which it was, whole, before the signal took effect."""

    def __init__(self, run_dir: Path, done: list[str], out: Path = Path("figures"), signum: int = signal.SIGINT,
                 published: bool = False):
        super().__init__(f"interrupted after the run was published to {out} (run in {run_dir})" if published else
                         f"interrupted: nothing published to {out}; partial run in {run_dir} "
                         f"(finished: {', '.join(done) or 'none'})")
        self.run_dir, self.done, self.signum, self.published = run_dir, done, signum, published


def notebook_dir() -> Path:
    """The kit's notebooks/ folder (beside the package in a checkout)."""
    return Path(__file__).resolve().parents[1] / "notebooks"


def check_parameters_cell(path: str | Path) -> None:
    """papermill silently ignores parameters when no cell is tagged `parameters`: refuse that."""
    nb = json.loads(Path(path).read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ReproduceError(f"{path} must have exactly one cell tagged 'parameters' (found {len(tagged)})")


def _selects(nb: Notebook, key: str) -> bool:
    """`key` names the notebook, one of its keys, or one of its figures ("stem_*": any stem so begun)."""
    return key in (nb.name, *nb.keys) or any(key == o or (o.endswith("*") and key.startswith(o[:-1]))
                                             for o in nb.outputs)


def _select(only: str | list[str] | None) -> list[Notebook]:
    if not only:
        return list(NOTEBOOKS)
    keys = [k.strip() for k in (only.split(",") if isinstance(only, str) else only) if k.strip()]
    if not keys:  # selecting nothing would publish an empty run over figures/
        raise ValueError(f"--only {only!r} names no figure or notebook; give e.g. fig2,table1, or leave it out")
    unknown = [k for k in keys if not any(_selects(nb, k) for nb in NOTEBOOKS)]
    if unknown:
        valid = sorted({k for nb in NOTEBOOKS for k in nb.keys} | {nb.name for nb in NOTEBOOKS})
        raise ValueError(f"unknown --only entries {unknown}; valid: {', '.join(valid)}, or a figure's file name "
                         f"(the table \"The figures and tables\" in the README)")
    return [nb for nb in NOTEBOOKS if any(_selects(nb, k) for k in keys)]


# -- what a notebook's result depends on ---------------------------------------------------
def inputs_key(notebook: Path, parameters: dict, config: dict, code: str, machine: dict) -> str:
    """The hash of everything a notebook's outputs depend on but the kernel's thread count: equal
    keys give equal outputs at the thread count each run's manifest records (`--jobs` sets it).
    `machine`: what of this environment shapes them (`_machine`)."""
    h = hashlib.sha256()
    h.update(notebook.read_bytes())
    for part in (parameters, machine):
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
    h.update(code.encode() + config_digest(config))
    return h.hexdigest()


# -- kernels -------------------------------------------------------------------------------
_LIVE_KERNELS: set = set()


def _local_kernel_manager(env: dict[str, str] | None = None):
    """Kernels that talk to papermill over local (IPC) sockets rather than TCP: the run needs
    no network interface at all (it works with the network cut, `unshare -n`) and opens no port.
    Live kernels are remembered so that Ctrl-C can stop them at once. The asynchronous manager,
    because nbclient then notices a dead kernel within a second (the synchronous one waits
    for a reply forever). `env`: added to this kernel's environment (the kernelspec's is
    shared by every kernel of the run)."""
    from jupyter_client.manager import AsyncKernelManager

    class LocalKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            # Kernels started at once must not share socket files (the default names are
            # numbered from the working folder); a short private prefix each (sockets have a
            # 107-character path limit).
            prefix = Path(tempfile.mkdtemp(prefix="emostyle-kernel-")) / "k"
            super().__init__(transport="ipc", ip=str(prefix), **kwargs)
            self.socket_dir = prefix.parent
            _LIVE_KERNELS.add(self)

        async def start_kernel(self, **kw):
            kw["env"] = {**kw.get("env", os.environ), **(env or {})}
            return await super().start_kernel(**kw)

        async def _async_interrupt_kernel(self):
            # jupyter_client interrupts a kernel before every shutdown, and the kernel, idle
            # by then, logs "KeyboardInterrupt caught in kernel" into the run's output.
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return LocalKernelManager


def _kill_kernels() -> bool:
    """Kill every kernel this run started (its process group: the kernel's own children too);
    returns whether there was one."""
    killed = False
    for manager in list(_LIVE_KERNELS):
        process = getattr(manager.provisioner, "process", None) if manager.provisioner else None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # kernels run in their own session
            except OSError:
                process.kill()
            killed = True
        _LIVE_KERNELS.discard(manager)
        shutil.rmtree(manager.socket_dir, ignore_errors=True)
    return killed


def _forget_dead_kernels() -> None:
    for manager in list(_LIVE_KERNELS):
        process = getattr(manager.provisioner, "process", None) if manager.provisioner else None
        if process is None or process.poll() is not None:
            _LIVE_KERNELS.discard(manager)
            shutil.rmtree(manager.socket_dir, ignore_errors=True)


def register_kernel(root: str | Path, env: dict[str, str] | None = None) -> Path:
    """Write the kit's kernelspec under `root/kernels/` (put `root` on JUPYTER_PATH to use it):
    this very interpreter, so papermill never picks another Python (the NoSuchKernel failures
    under conda and virtual environments), with KERNEL_ENV and `env` in its environment."""
    spec = Path(root) / "kernels" / _KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "EmoStyle kit", "language": "python", "env": KERNEL_ENV | (env or {})}))
    return spec


def _mark_unrun_cells(path: Path) -> None:
    """papermill marks the cell that was running and those after it as completed when a run
    is interrupted: mark them as interrupted and never run. A cell finished when the kernel
    replied to it (nbclient records `shell.execute_reply`)."""
    import nbformat

    if not path.exists():
        return
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        status = cell.metadata.get("papermill", {})
        if cell.cell_type != "code" or "shell.execute_reply" in cell.metadata.get("execution", {}):
            continue
        status["status"] = "not run (interrupted)" if cell.get("execution_count") is None else "interrupted"
    nb.metadata.setdefault("papermill", {})["interrupted"] = True
    nbformat.write(nb, path)


def _weights_log(run_dir: Path, name: str) -> Path:
    """Where notebook `name`'s kernel logs the registry files it used (`registry.used`); in its
    own folder, so a reused notebook's log comes back from the cache with its other files."""
    return run_dir / name / "weights_used.jsonl"


# -- the cache -----------------------------------------------------------------------------
def _link(src: str | Path, dst: str | Path) -> None:
    """`dst` as a hard link to `src` (a run's files and the cache's are the same bytes: an
    unchanged run took 78 MB again as copies), a copy where no link can be made (another disk)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _restore(entry: Path, run_dir: Path, name: str) -> dict:
    shutil.copytree(entry / "figures", run_dir / "figures" / name, dirs_exist_ok=True, copy_function=_link)
    shutil.copytree(entry / "work", run_dir / name, dirs_exist_ok=True, copy_function=_link)
    _link(entry / "notebook.ipynb", run_dir / f"{name}.ipynb")
    return json.loads((entry / "record.json").read_text())


def _store(entry: Path, run_dir: Path, name: str, record: dict) -> None:
    """Link a successful notebook's outputs into the cache; the record goes last, so a half
    copy (a killed run) is never taken for a cache entry. Each process stages under its own
    name (`process_tag`) and clears what dead ones left; where another run stored the same
    entry first (equal keys, equal outputs), that entry stays."""
    clear_dead(entry.parent, f"{entry.name}.partial-")
    partial = entry.with_name(f"{entry.name}.partial-{process_tag()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        shutil.copytree(run_dir / "figures" / name, partial / "figures", copy_function=_link)
        (run_dir / name).mkdir(exist_ok=True)
        shutil.copytree(run_dir / name, partial / "work", copy_function=_link)
        _link(run_dir / f"{name}.ipynb", partial / "notebook.ipynb")
        write_json(partial / "record.json", record)
        shutil.rmtree(entry, ignore_errors=True)
        try:
            os.replace(partial, entry)
        except OSError:
            if not (entry / "record.json").exists():  # not another run's entry: a real failure
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


# -- publishing ----------------------------------------------------------------------------
def _made(stem: str, name: str) -> bool:
    """Whether the file `name` is one of the output `stem` (PNG, CSV, ...; "stem_*": any "stem_x")."""
    return name.startswith(stem[:-1]) if stem.endswith("_*") else name.startswith(stem + ".")


def _previous(out: Path) -> dict:
    """The manifest published in `out` before, or {} (none, unreadable, or an older format)."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest.get("notebooks"), dict) else {}


def _check_out(out: Path) -> None:
    """`out` must be a folder (or none yet) that holds no other command's result: a figures folder,
    or files the kit did not make."""
    if out.exists() and not out.is_dir():
        raise ReproduceError(f"--out {out} is a file; give a folder for the figures")
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return
    if isinstance(manifest, dict) and "notebooks" not in manifest and set(MANIPULATION_KEYS) <= set(manifest):
        raise ReproduceError(f"--out {out} holds a manipulation's result (its manifest.json names a song and a "
                             "method); give another folder for the figures")


@contextlib.contextmanager
def _publishing(out: Path) -> Iterator[None]:
    """An exclusive lock on the folder `out` (made if missing) for the block: flock, which the
    system releases when the process ends, so a killed run leaves no lock behind."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    folder = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (some network and FUSE mounts): publish unlocked
            pass
        yield
    finally:
        os.close(folder)


def _publish(staged: Path, out: Path, manifest: dict, previous: dict) -> None:
    """Move the run's figures into `out` and write the manifest, with signals held meanwhile.
    Figures of the previous manifest that the new one does not list are removed, so that
    everything in `out` is described by `out/manifest.json`. Files the kit did not make
    (README.md) stay."""
    with signals_held():  # a second or so for a run's figures; a signal meanwhile takes effect after
        out.mkdir(parents=True, exist_ok=True)
        clear_dead(out, ".incoming-")  # of a run killed while publishing
        incoming = out / f".incoming-{process_tag()}"
        shutil.rmtree(incoming, ignore_errors=True)
        try:
            # Everything that can fail (a full disk, a folder where a figure goes) fails before
            # anything in `out` changes; then renames within one folder, the manifest last.
            shutil.copytree(staged, incoming)
            write_json(incoming / "manifest.json", manifest)
            names = sorted(p.name for p in incoming.iterdir() if p.name != "manifest.json")
            blocked = [n for n in [*names, "manifest.json"] if (out / n).is_dir()]
            if blocked:
                raise ReproduceError(f"{out / blocked[0]} is a folder where the run puts a file; move it away")
            stale = set(previous.get("outputs", [])) - set(manifest["outputs"])
            for name in names:
                os.replace(incoming / name, out / name)
            for name in stale:
                (out / name).unlink(missing_ok=True)
            os.replace(incoming / "manifest.json", out / "manifest.json")
        finally:
            shutil.rmtree(incoming, ignore_errors=True)


def _estimate(cache: Path, name: str) -> float | None:
    try:
        return json.loads((cache / "timings.json").read_text()).get(name)
    except (OSError, ValueError):
        return None


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _plan(jobs: int | None, n: int) -> tuple[int, int]:
    """(notebooks at once, torch threads per kernel): one kernel per core up to `jobs`, and the
    cores shared out, so that kernels never oversubscribe the CPU (threads that wait for a
    core they do not get make every step slower). The threads are those of a run of every
    notebook, however many run now: a thread count rounds otherwise, so `--only fig2` must give
    the numbers of the whole run."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n, jobs or cores)), max(1, cores // min(jobs or cores, len(NOTEBOOKS)))


def _hear(config: Config, songs: list[Sample], say: Callable[[str], object]) -> None:
    """Songs without a .txt must hold speech that the profile's lyrics backend reads: each is
    transcribed now, so that a song with neither fails here, not in six notebooks. Only the
    recogniser is loaded (not the profile's polarity model, an LLM on the paper profiles), and
    it is let go before the notebooks start."""
    if not songs:
        return
    from .affective import LYRICS_BACKENDS
    from .affective.lyrics import transcribe

    say(f"listening for the lyrics of {len(songs)} song(s) without a .txt before any notebook runs")
    recogniser = LYRICS_BACKENDS[config.affective.lyrics]()
    unheard = []
    for song in songs:  # every song is listened to, so that one error names them all
        try:
            transcribe(song.path, recogniser)
        except ValueError as error:  # no speech, or none clear enough: the first clause says which
            unheard.append(f"{song.path.name} ({str(error).replace(f' in {song.path.name}', '').split(':')[0]})")
    if unheard:
        raise ValueError(f"no lyrics could be read from {', '.join(unheard)}: put each song's lyrics in a .txt of "
                         "its name beside it")


def _machine(config: Config) -> dict:
    """What of this environment shapes a notebook's outputs besides its inputs: the package
    versions, the device, the kernels chosen for the CPU (they round differently), and which of
    the files and packages that add to a figure are present (Table 1 gains VILA with TensorFlow
    and its weights; the metrics EmoGen's with its files): installing one runs the notebooks again.
    TensorFlow counts only where the profile scores with VILA: `kit.sh test` installs it for the
    VILA test, and that must not make the next `reproduce` of the offline profile run again."""
    import importlib.util

    from .weights.table import candidates, entry, profile_files

    env = environment(config.resolve_device())
    present = {name: any(p.exists() for p in candidates(entry(name))) for name in profile_files(config.profile)}
    unused = set() if "vila-r" in config.scoring.scorers else {"tensorflow", "tensorflow-cpu"}
    modules = {m: importlib.util.find_spec(m) is not None for m in ("tensorflow", "diffusers") if m not in unused}
    packages = {name: version for name, version in env["packages"].items() if name not in unused}
    return {"packages": packages, "device": env["device"], "cpu_kernels": env["cpu_kernels"],
            "present": present, "modules": modules}


def _new_run_dir(runs: Path, profile: str) -> Path:
    """runs/<time>-<profile>, made now, numbered when a run of the same second holds that name:
    a name is claimed by making it, so two runs started at once never share one."""
    stem = runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{profile}"
    runs.mkdir(parents=True, exist_ok=True)
    for k in itertools.count(1):
        path = stem if k == 1 else stem.with_name(f"{stem.name}-{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


@registry.recording()  # the run's manifest lists the files it used, not those of the process's earlier runs
def reproduce(profile: str = "offline", *, only: str | list[str] | None = None, device: str = "auto",
              out: str | Path = "figures", run_dir: str | Path | None = None,
              overrides: dict | None = None, progress: bool = True, force: bool = False,
              cache_dir: str | Path | None = None, jobs: int | None = None,
              songs: str | Path | None = None) -> dict:
    """Execute (or reuse) the selected notebooks on `profile` and publish their figures to `out`;
    returns the run manifest. `jobs` notebooks run at once (default: one per CPU core), the
    longest first. `songs`: a folder of songs (and their lyrics, `samples.songs`) that the
    figures and tables of songs use instead of the kit's. Raises `Interrupted` on Ctrl-C
    (nothing published)."""
    overrides = dict(overrides or {})
    if device != "auto":
        overrides["device"] = device
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs must be 1 or more notebooks at once, got {jobs}")
    config = load_config(profile, overrides)  # a bad profile or override fails before any notebook runs
    config.resolve_device()  # and so does a device this machine lacks
    inputs = {"profile": profile, "overrides": overrides}
    # one write per line: notebooks finishing at once must not interleave their lines
    say = (lambda text: (sys.stderr.write(text + "\n"), sys.stderr.flush())) if progress else (lambda text: None)
    if songs is not None:  # a missing or empty folder fails here, before any notebook runs
        songs = Path(songs).expanduser().resolve()
        try:
            inputs["songs"] = {"folder": str(songs), "files": songs_digest(songs)}
            with warnings.catch_warnings():  # a long song's truncation is the notebooks' to report
                warnings.simplefilter("ignore")
                listed = sample_songs(songs)
                for song in listed:  # a file that does not decode fails now, not in a notebook
                    read_audio(song.path)
            _hear(config, [song for song in listed if song.stand_in is None], say)
        except (OSError, ValueError) as error:
            raise ReproduceError(f"--songs: {error}") from None
    selected = _select(only)
    for nb in selected:
        check_parameters_cell(notebook_dir() / f"{nb.name}.ipynb")
    out = Path(out).expanduser().resolve()
    _check_out(out)  # before any notebook runs, not after
    if run_dir is None:
        run_dir = _new_run_dir(Path("runs"), profile)
    run_dir = Path(run_dir).expanduser().resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        # A run's files are hard links into the cache: a second run there would write through them.
        raise ReproduceError(f"--run-dir {run_dir} already holds a run; give a new (or empty) folder")
    cache = Path(cache_dir).expanduser().resolve() if cache_dir else run_dir.parent / ".cache"
    staged = run_dir / "figures"
    staged.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    code, machine = code_version(), _machine(config)

    # Reuse what the cache holds; the rest runs, longest first (by the last run's timings).
    entries: dict[str, dict] = {}
    pending = []
    for nb in selected:
        key = inputs_key(notebook_dir() / f"{nb.name}.ipynb", inputs, config.to_dict(), code, machine)
        entry = cache / f"{nb.name}-{key[:20]}"
        (staged / nb.name).mkdir(parents=True, exist_ok=True)
        if not force and (entry / "record.json").exists():
            record = _restore(entry, run_dir, nb.name)
            entries[nb.name] = {"status": "reused", "key": key, "seconds": 0.0,
                                "made_by": record["run_dir"], "made_in_s": record["seconds"],
                                "torch_threads": record.get("torch_threads")}
            say(f"{nb.name}: reused (inputs unchanged since {record['run_dir']})")
        else:
            pending.append((nb, key, entry))
    estimates = {nb.name: _estimate(cache, nb.name) for nb, _, _ in pending}
    pending.sort(key=lambda item: -(estimates[item[0].name] or item[0].seconds))
    jobs, threads = _plan(jobs, len(pending))
    register_kernel(run_dir, {"OMP_NUM_THREADS": str(threads)})
    if pending:
        known = [e for e in estimates.values() if e]
        say(f"running {len(pending)} notebook(s), {jobs} at a time, {threads} thread(s) each"
            + (f"; about {_minutes(max(max(known), sum(known) / jobs))} (last runs' timings)"
               if len(known) == len(pending) else ""))

    stop: list[int] = []
    running: dict[str, float] = {}  # notebook -> when it started
    begun_all = time.perf_counter()

    def heartbeat() -> None:
        """A line a minute while notebooks run: which, for how long, and against the last run."""
        now = time.perf_counter()
        say("  still running: " + ", ".join(
            f"{name} {_minutes(now - start)}" + (f" of about {_minutes(estimates[name])}" if estimates[name] else "")
            for name, start in sorted(running.items())))

    def execute(nb: Notebook, key: str, entry: Path) -> None:
        """Run one notebook in its own kernel, with a numba cache of its own (`numba_cache_dir`)."""
        import papermill

        if stop:
            return
        say(f"{nb.name}: running" + (f" (last run: {_minutes(estimates[nb.name])})" if estimates[nb.name] else ""))
        params = {"profile": profile, "overrides": overrides,
                  "figures_dir": str(staged / nb.name), "run_dir": str(run_dir / nb.name)}
        if songs is not None:
            params["songs_dir"] = str(songs)
        begun = running[nb.name] = time.perf_counter()
        _weights_log(run_dir, nb.name).parent.mkdir(parents=True, exist_ok=True)
        try:
            try:
                papermill.execute_notebook(
                    str(notebook_dir() / f"{nb.name}.ipynb"), str(run_dir / f"{nb.name}.ipynb"), parameters=params,
                    kernel_name=_KERNEL, cwd=str(notebook_dir()),
                    kernel_manager_class=_local_kernel_manager(
                        {"NUMBA_CACHE_DIR": numba_cache_dir(cache / "numba", nb.name),
                         USED_LOG_VAR: str(_weights_log(run_dir, nb.name))}),
                    progress_bar=False)
            finally:  # nbclient leaves this thread's event loop open, for the garbage collector to warn of
                from jupyter_core.utils import ensure_event_loop
                ensure_event_loop().close()
        except Exception as error:
            if stop:  # the kernel died of our Ctrl-C
                return
            if isinstance(error, papermill.PapermillExecutionError):
                reason = f"cell In [{error.exec_count}]: {error.ename}: {error.evalue}"
            else:  # the kernel died (out of memory, a crash in a library) or would not start
                reason = f"{type(error).__name__}: {error}"
            reason = reason.strip().splitlines()[0] if reason.strip() else type(error).__name__
            entries[nb.name] = {"status": "failed", "key": key, "error": reason,
                                "seconds": round(time.perf_counter() - begun, 2),
                                "notebook": str(run_dir / f"{nb.name}.ipynb")}
            # The figures it finished before the failing cell are complete and of this run: they are
            # published (Figure 2 without the sounds of Figure 3); the manifest names the missing ones.
            running.pop(nb.name, None)
            say(f"{nb.name}: FAILED ({reason}); the others go on")
            return
        seconds = round(time.perf_counter() - begun, 2)
        running.pop(nb.name, None)
        # the kernel's thread count, not this process's: float sums, and so results, depend on it
        entries[nb.name] = {"status": "ran", "key": key, "seconds": seconds, "torch_threads": threads}
        try:
            _store(entry, run_dir, nb.name, {"key": key, "run_dir": str(run_dir), "seconds": seconds,
                                             "torch_threads": threads})
        except OSError as error:  # the run's figures stand; only the next run's reuse is lost
            say(f"{nb.name}: not kept in the cache {cache} ({error}); the next run will execute it again")
        done = sum(e["status"] != "reused" for e in entries.values())
        say(f"{nb.name}: done in {_minutes(seconds)} ({done}/{len(pending)} run, "
            f"{_minutes(time.perf_counter() - begun_all)} so far)")

    def on_interrupt(signum, frame):
        # Raising inside nbclient's event loop leaves it waiting on a busy kernel (a minute, and a
        # long traceback); killing the kernels makes nbclient give up within a second instead.
        stop.append(signum)
        _kill_kernels()

    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    # SIGTERM (`timeout`, a scheduler) and SIGHUP (a closed terminal) stop it as Ctrl-C does
    previous_handlers = {s: signal.signal(s, on_interrupt) for s in HELD
                         if signal.getsignal(s) is not signal.SIG_IGN}  # `nohup` keeps a run going
    jupyter_path = os.environ.get("JUPYTER_PATH")  # the run's kernelspec, for this run only
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(run_dir), jupyter_path]))
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(execute, *item) for item in pending}
            beat = time.perf_counter()
            while futures:
                finished, futures = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
                if time.perf_counter() - beat > 60 and running and not stop:
                    heartbeat()
                    beat = time.perf_counter()
                for future in finished:
                    future.result()
                if stop:
                    _kill_kernels()  # also a kernel that was still starting at the signal
    finally:
        for s, handler in previous_handlers.items():
            signal.signal(s, handler)
        if jupyter_path is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = jupyter_path
        _forget_dead_kernels()
    timings = json.loads((cache / "timings.json").read_text()) if (cache / "timings.json").exists() else {}
    write_json(cache / "timings.json", timings | {n: e["seconds"] for n, e in entries.items() if e["status"] == "ran"})
    if stop:
        for nb, _, _ in pending:
            if nb.name not in entries:
                _mark_unrun_cells(run_dir / f"{nb.name}.ipynb")
        write_json(run_dir / "interrupted.json", {"finished": sorted(entries)})
        raise Interrupted(run_dir, sorted(n for n, e in entries.items() if e["status"] != "failed"), out, stop[0])

    entries = {nb.name: entries[nb.name] for nb in selected}  # the notebooks' order, not the finishing one
    for name in entries:
        files = sorted(p.name for p in (staged / name).iterdir()) if (staged / name).is_dir() else []
        entries[name]["outputs"] = files
        for path in (staged / name).iterdir() if files else ():
            os.replace(path, staged / path.name)
        shutil.rmtree(staged / name, ignore_errors=True)
    missing = {nb.name: [s for s in nb.outputs if not any(_made(s, f) for f in entries[nb.name]["outputs"])]
               for nb in selected}
    # Read what `out` holds and put the run in place under one lock: two runs that finish at once
    # publish one after the other, never one's manifest over the other's figures.
    with _publishing(out):
        # Notebooks left out by `only` keep their published figures, if that run used the same profile,
        # configuration (seed, overrides) and songs: the manifest describes them with this run's.
        previous = _previous(out)
        same = (previous.get("profile") == profile and previous.get("songs") == inputs.get("songs")
                and previous.get("config") == json.loads(json.dumps(config.to_dict(), default=str)))
        kept = {n: e | {"status": "kept", "made_by": e.get("made_by", previous.get("run_dir"))}
                for n, e in previous.get("notebooks", {}).items()
                if same and n not in entries and e.get("status") != "failed"}
        # What each notebook's published figures took to make: a reused one's, in the run that made them
        # (this run's own seconds are notebooks.<name>.seconds: 0 for a reused one).
        manifest = run_manifest(config, timings={n: e.get("made_in_s", e["seconds"]) for n, e in entries.items()},
                                weight_logs=[_weights_log(run_dir, n) for n in entries] +  # and the kept figures' run's
                                [_weights_log(Path(e["made_by"]), n) for n, e in kept.items() if e["made_by"]],
                                songs=inputs.get("songs"),
                                notebooks=entries | kept, run_dir=str(run_dir), figures_dir=str(out),
                                outputs=sorted({f for e in (entries | kept).values() for f in e.get("outputs", [])}),
                                failed={n: e["error"] for n, e in entries.items() if e["status"] == "failed"},
                                not_made={n: m for n, m in missing.items() if m})
        # Each notebook's kernel ran with its own thread count (notebooks.<name>.torch_threads), not this process's.
        manifest["environment"].pop("torch_threads", None)
        write_json(run_dir / "manifest.json", manifest)
        try:
            _publish(staged, out, manifest, previous)
        except KeyboardInterrupt as stop:  # held while publishing, raised once the run was in place; or just before
            published = _previous(out).get("run_dir") == str(run_dir)
            raise Interrupted(run_dir, sorted(entries), out, getattr(stop, "signum", signal.SIGINT), published) from None
    return manifest
