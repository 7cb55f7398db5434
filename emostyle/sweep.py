"""Sweeps for Table 1: songs x seeds x methods (x profiles) on Dask, one task per run.

A grid file (YAML) names the runs:

    songs: [data/songs/happy_sunshine.wav, data/songs/sad_rain.wav]  # relative to the grid file, else to the working folder
    seeds: [0, 1, 2]            # or a count: 3 -> 0, 1, 2
    methods: [emostyle, styleclip, lee]
    profiles: [paper-lhq, paper-ffhq]   # optional; default: --profile
    datasets: {paper-lhq: LHQ, paper-ffhq: FFHQ}   # optional labels of the profiles
    overrides: {guidance.steps: 300}   # optional, for every run

Each task writes its own folder `OUT/<profile>/<method>/<song>/seed-<n>/`; `task.json` in it is
the completion marker (written last), so a re-run skips finished tasks and retries failed ones
(their traceback is in `error.json`). A failure never stops the other tasks. The results of every
task of the grid are gathered into one table, `OUT/results.parquet` and `OUT/results.csv`:
one row per task with its grid keys, status, seconds, output folder and the scalar entries of
what the task returned (nested keys joined with dots). Worker processes keep librosa's compiled
functions in `OUT/.numba/<worker>`, one folder each.

With `--scheduler ADDRESS` (a running `dask scheduler` with its workers), the workers must see
OUT and the songs at the same paths (a shared filesystem) and have the kit installed.

The task is `emostyle.pipeline.manipulate(song, profile=, method=, seed=, out=, overrides=) -> dict`
unless another callable of that signature is passed (tests inject cheap ones).
"""

from __future__ import annotations

import csv
import functools
import json
import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from .manifest import write_json

__all__ = ["TaskSpec", "expand_grid", "load_grid", "run_task", "run_sweep", "gather", "add_sweep_parser"]

MARKER = "task.json"
ERROR = "error.json"
_GRID_KEYS = {"songs", "seeds", "methods", "profiles", "datasets", "overrides", "profile"}


@dataclass(frozen=True)
class TaskSpec:
    """One run of the grid and the folder it writes."""

    profile: str
    dataset: str
    method: str
    song: str
    seed: int
    out: str
    overrides: tuple = ()  # sorted (key, value as JSON) pairs, so the spec is hashable whatever the values

    @property
    def key(self) -> str:
        return f"{self.profile}/{self.method}/{Path(self.song).stem}/seed-{self.seed}"

    @property
    def settings(self) -> dict:
        """The overrides as the configuration takes them."""
        return {k: json.loads(v) for k, v in self.overrides}


def _song_path(song: str, base: Path) -> str:
    """A song of the grid: absolute, relative to the grid file, or else to the working folder."""
    song = Path(song)
    if song.is_absolute() or (base / song).exists() or not song.exists():
        return str(song if song.is_absolute() else base / song)
    return str(song.resolve())


def load_grid(path: str | Path) -> dict:
    """Read a grid YAML file (see the module docstring) into a dict."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grid file {path} not found")
    try:
        grid = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text: a grid is a YAML file (see `emostyle sweep --help`)") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ValueError(f"{path} is not valid YAML{at}: {getattr(error, 'problem', None) or error}") from None
    if not isinstance(grid, dict):
        raise ValueError(f"{path}: a grid is a mapping with keys songs, seeds, methods (and optionally profiles)")
    grid["songs"] = [_song_path(s, path.parent) for s in _listed(grid, "songs")]
    return grid


def _listed(grid: dict, key: str) -> list[str]:
    """The grid's list of names under `key`; one name alone is a list of one (YAML's `methods: lee`)."""
    value = grid.get(key)
    if value is None:
        return []
    values = [value] if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, (str, os.PathLike)) and str(v) for v in values):
        raise ValueError(f"the grid's {key} must be a list of names, e.g. {key}: [a, b]; got {value!r}")
    return [str(v) for v in values]  # a grid made in Python may name its songs by Path


def _seeds(value) -> list[int]:
    """A count n (seeds 0 .. n-1) or a list of seeds, each a whole number >= 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"the grid's seeds is a count of at least 1 or a list of seeds; got {value}")
        return list(range(value))
    if not isinstance(value, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                              for s in value):
        raise ValueError(f"the grid's seeds must be a count (3 -> 0, 1, 2) or a list of whole numbers >= 0, "
                         f"e.g. seeds: [0, 1]; got {value!r}")
    return value


def expand_grid(grid: dict, out: str | Path, profile: str | None = None) -> list[TaskSpec]:
    """The tasks of a grid, in a fixed order (profile, method, song, seed)."""
    unknown = set(grid) - _GRID_KEYS
    if unknown:
        raise ValueError(f"unknown grid keys {sorted(unknown)}; valid: {', '.join(sorted(_GRID_KEYS - {'profile'}))}")
    missing = [k for k in ("songs", "seeds", "methods") if grid.get(k) in (None, [], "")]
    if missing:
        raise ValueError(f"the grid needs non-empty {', '.join(missing)}")
    from .guidance import MANIPULATE_METHODS

    methods = _listed(grid, "methods")
    wrong = [m for m in methods if m not in MANIPULATE_METHODS]
    if wrong:  # before any task starts, not once per task
        raise ValueError(f"unknown methods {wrong} in the grid; valid: {', '.join(MANIPULATE_METHODS)}")
    seeds = _seeds(grid["seeds"])
    profiles = _listed(grid, "profiles") or [grid.get("profile") or profile]
    if profiles == [None]:
        raise ValueError("no profile: give --profile or a `profiles` list in the grid")
    for key in ("datasets", "overrides"):
        if not isinstance(grid.get(key) or {}, dict):
            raise ValueError(f"the grid's {key} must be a mapping, e.g. "
                             f"{key}: {{{'paper-lhq: LHQ' if key == 'datasets' else 'guidance.steps: 300'}}}; "
                             f"got {grid[key]!r}")
    labels = grid.get("datasets") or {}
    try:
        overrides = tuple(sorted((str(k), json.dumps(v, sort_keys=True)) for k, v in (grid.get("overrides") or {}).items()))
    except TypeError as error:  # a YAML date, say
        raise ValueError(f"the grid's overrides must be numbers, text, lists or mappings ({error})") from None
    songs = _listed(grid, "songs")
    stems = [Path(s).stem for s in songs]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise ValueError(f"songs must have distinct file names (they name the result folders): {clashes}")
    out = Path(out)
    specs = []
    for prof in profiles:
        for method in methods:
            for song in songs:
                for seed in seeds:
                    spec = TaskSpec(prof, labels.get(prof, prof), method, song, seed, "", overrides)
                    specs.append(TaskSpec(**{**asdict(spec), "out": str(out / spec.key)}))
    return specs


def _default_task():
    from .pipeline import manipulate

    return functools.partial(manipulate, progress=False)  # many workers' progress bars would interleave


def _flatten(d: dict, prefix: str = "") -> dict:
    """Scalar entries of a nested dict, keys joined with dots; lists and other objects are dropped."""
    flat = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(_flatten(v, name + "."))
        elif v is None or isinstance(v, (bool, int, float, str)):
            flat[name] = v
    return flat


def _row(spec: TaskSpec, status: str, seconds: float | None, error: str | None, result: dict) -> dict:
    row = {k: v for k, v in asdict(spec).items() if k != "overrides"}
    row.update(task=spec.key, status=status, seconds=seconds, error=error)
    row.update({f"result.{k}": v for k, v in _flatten(result).items()})
    return row


def run_task(spec: TaskSpec, task: Callable[..., dict] | None = None) -> dict:
    """Run one task (or read it back if its marker exists); its table row. Never raises for a task failure."""
    folder = Path(spec.out)
    marker = folder / MARKER
    if marker.is_file():
        return json.loads(marker.read_text())["row"]
    if folder.exists():  # a failed or interrupted attempt: start clean
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    task = task or _default_task()
    begun = time.perf_counter()
    try:
        result = task(spec.song, profile=spec.profile, method=spec.method, seed=spec.seed, out=folder,
                      overrides=spec.settings)
        if not isinstance(result, dict):
            raise TypeError(f"the task returned {type(result).__name__}, expected a dict")
    except Exception as err:  # noqa: BLE001 -- one failed run must not stop the sweep
        seconds = round(time.perf_counter() - begun, 3)
        message = f"{type(err).__name__}: {err}"
        (folder / ERROR).write_text(json.dumps({"error": message, "traceback": traceback.format_exc()}, indent=2))
        return _row(spec, "failed", seconds, message, {})
    row = _row(spec, "ok", round(time.perf_counter() - begun, 3), None, result)
    write_json(marker, {"spec": asdict(spec), "row": row})  # the marker appears whole or not at all
    return row


def _client(scheduler: str | None, workers: int, threads: int, processes: bool, out: Path):
    try:
        from dask.distributed import Client, LocalCluster, WorkerPlugin
    except ImportError as err:
        raise ImportError(f'sweeps need Dask: pip install "emostyle[sweep]" ({err})') from None

    class OwnNumbaCache(WorkerPlugin):
        """Each worker process compiles librosa's functions into `OUT/.numba/<worker>` (`numba_cache_dir`)."""

        def setup(self, worker):
            from emostyle.audio import numba_cache_dir  # by name: this class travels to the workers by value

            os.environ["NUMBA_CACHE_DIR"] = numba_cache_dir(out / ".numba", str(worker.name))

    if scheduler:
        client, cluster = Client(scheduler), None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=threads, processes=processes,
                               dashboard_address=None)
        client = Client(cluster)
    if scheduler or processes:  # workers in this process share its cache, and numba's lock
        client.register_plugin(OwnNumbaCache(), name="emostyle-numba-cache")
    return client, cluster


def run_sweep(grid: dict | str | Path, out: str | Path, profile: str | None = None,
              task: Callable[..., dict] | None = None, scheduler: str | None = None, workers: int = 1,
              threads: int = 1, processes: bool = False, log: Callable[[str], None] | None = None) -> list[dict]:
    """Run the grid's unfinished tasks on Dask (a LocalCluster unless `scheduler` is an address),
    gather every task's row into `out/results.parquet` and `out/results.csv`, and return the rows."""
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: give a folder path (it is created)")
    if not isinstance(grid, dict):
        grid = load_grid(grid)
    specs = expand_grid(grid, out, profile)
    todo = [s for s in specs if not (Path(s.out) / MARKER).is_file()]
    log = log or (lambda message: None)
    log(f"{len(specs)} tasks, {len(specs) - len(todo)} already finished, {len(todo)} to run")
    if todo and task is None:  # the pipeline's files and packages, for every profile, before any worker starts
        from .config import load_config
        from .preflight import check

        absent = [song for song in dict.fromkeys(s.song for s in todo) if not Path(song).is_file()]
        if absent:
            raise FileNotFoundError(f"the grid's songs not found: {', '.join(absent)}")
        for spec in {(s.profile, s.overrides): s for s in todo}.values():
            check(load_config(spec.profile, spec.settings), command="emostyle sweep")
    if todo:
        task = task or _default_task()
        client, cluster = _client(scheduler, workers, threads, processes, Path(out).resolve())
        try:
            futures = client.map(run_task, todo, task=task, key=[f"emostyle-{s.key}" for s in todo], pure=False)
            for spec, future in zip(todo, futures):
                try:
                    row = future.result()
                except Exception as err:  # noqa: BLE001 -- a lost worker: record it, go on
                    row = _row(spec, "failed", None, f"{type(err).__name__}: {err}", {})
                log(f"{row['status']:>6}  {spec.key}" + (f"  ({row['error']})" if row["error"] else ""))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return gather(specs, out)


def gather(specs: Iterable[TaskSpec], out: str | Path) -> list[dict]:
    """One row per task of `specs` (finished: its recorded row; failed: its error; else `pending`),
    written to `out/results.parquet` and `out/results.csv`."""
    rows = []
    for spec in specs:
        folder = Path(spec.out)
        if (folder / MARKER).is_file():
            rows.append(json.loads((folder / MARKER).read_text())["row"])
        elif (folder / ERROR).is_file():
            rows.append(_row(spec, "failed", None, json.loads((folder / ERROR).read_text())["error"], {}))
        else:
            rows.append(_row(spec, "pending", None, None, {}))
    columns = list(dict.fromkeys(k for row in rows for k in row))
    rows = [{c: row.get(c) for c in columns} for row in rows]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    _write_parquet(rows, columns, out / "results.parquet")
    return rows


def _write_parquet(rows: list[dict], columns: list[str], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = {}
    for c in columns:
        values = [r[c] for r in rows]
        kinds = {type(v) for v in values if v is not None}
        if len(kinds) > 1 and not kinds <= {int, float}:  # mixed kinds: keep them readable as text
            values = [None if v is None else str(v) for v in values]
        elif kinds == {int, float}:
            values = [None if v is None else float(v) for v in values]
        data[c] = values
    pq.write_table(pa.table(data), path)


def _cmd_sweep(args) -> int:
    from .config import parse_overrides

    grid = load_grid(args.grid)
    if args.overrides:
        grid["overrides"] = {**(grid.get("overrides") or {}), **parse_overrides(args.overrides)}
    rows = run_sweep(grid, args.out, profile=args.profile, scheduler=args.scheduler, workers=args.workers,
                     threads=args.threads, processes=args.processes, log=print)
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"{len(rows) - len(failed)} of {len(rows)} tasks done; table: {Path(args.out) / 'results.parquet'}")
    for r in failed:
        print(f"  {r['status']}: {r['task']}: {r['error']}")
    return 1 if failed else 0


def add_sweep_parser(subparsers) -> None:
    """Add `emostyle sweep` to the CLI's subparsers."""
    p = subparsers.add_parser("sweep", help="run a grid of songs x seeds x methods on Dask (Table 1)")
    p.add_argument("--grid", required=True, help="grid YAML: songs, seeds, methods, optional profiles/overrides")
    p.add_argument("--profile", default=None, help="profile of the runs when the grid names none")
    p.add_argument("--out", required=True, help="folder of the result folders and the results table")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. tcp://host:8786 (default: a local cluster)")
    p.add_argument("--workers", type=int, default=1, help="local cluster workers (default: 1)")
    p.add_argument("--threads", type=int, default=1, help="threads per local worker (default: 1)")
    p.add_argument("--processes", action="store_true", help="local workers as processes, not threads")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value for every run (repeatable)")
    p.set_defaults(func=_cmd_sweep)
