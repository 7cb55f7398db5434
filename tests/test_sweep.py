"""Sweeps on a local Dask cluster with an injected cheap task (the real one is the whole pipeline)."""

import argparse
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("dask.distributed")

from emostyle.sweep import add_sweep_parser, expand_grid, gather, load_grid, run_sweep, run_task  # noqa: E402

CALLS = []
_lock = threading.Lock()


def cheap_task(song, profile, method, seed, out, overrides):
    """A deterministic stand-in for `manipulate`: writes a file, returns nested results."""
    with _lock:
        CALLS.append((Path(song).stem, method, seed))
    if Path(song).stem == "broken" and method == "lee":
        raise RuntimeError("this song cannot be guided")
    score = len(Path(song).stem) + 10 * seed + {"emostyle": 0.5, "lee": 0.25}[method]
    Path(out, "after.txt").write_text(f"{score}\n")
    return {"score": score, "polarity": {"label": "positive" if seed % 2 == 0 else "negative"},
            "steps": overrides.get("guidance.steps"), "curve": [1, 2, 3]}


def _grid(tmp_path, songs=("happy", "sad")):
    for s in songs:
        (tmp_path / f"{s}.wav").write_bytes(b"")
    return {"songs": [str(tmp_path / f"{s}.wav") for s in songs], "seeds": 2, "methods": ["emostyle", "lee"],
            "overrides": {"guidance.steps": 5}}


def _comparable(rows):
    return [{k: v for k, v in r.items() if k not in ("seconds", "out")} for r in rows]


def test_sweep_matches_one_by_one_and_resumes(tmp_path):
    grid = _grid(tmp_path)
    CALLS.clear()
    rows = run_sweep(grid, tmp_path / "dask", profile="tiny", task=cheap_task, workers=2)
    assert len(rows) == 8 and len(CALLS) == 8
    assert all(r["status"] == "ok" for r in rows)
    assert rows[0]["task"] == "tiny/emostyle/happy/seed-0" and rows[0]["result.score"] == 5.5
    assert rows[0]["result.steps"] == 5 and rows[1]["result.polarity.label"] == "negative"
    assert "result.curve" not in rows[0]  # lists are not table cells

    specs = expand_grid(grid, tmp_path / "serial", profile="tiny")
    for spec in specs:
        run_task(spec, cheap_task)
    assert _comparable(gather(specs, tmp_path / "serial")) == _comparable(rows)

    table = pq.read_table(tmp_path / "dask" / "results.parquet").to_pylist()
    assert _comparable(table) == _comparable(rows)
    assert (tmp_path / "dask" / "results.csv").read_text().count("\n") == 9

    CALLS.clear()
    again = run_sweep(grid, tmp_path / "dask", profile="tiny", task=cheap_task)
    assert CALLS == [] and again == rows  # every task finished: nothing runs, same table


def test_failure_is_recorded_and_others_finish(tmp_path):
    grid = _grid(tmp_path, songs=("happy", "broken"))
    CALLS.clear()
    rows = run_sweep(grid, tmp_path / "out", profile="tiny", task=cheap_task, workers=2)
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["task"] for r in failed] == ["tiny/lee/broken/seed-0", "tiny/lee/broken/seed-1"]
    assert "RuntimeError: this song cannot be guided" in failed[0]["error"]
    assert sum(r["status"] == "ok" for r in rows) == 6
    assert (Path(failed[0]["out"]) / "error.json").is_file()

    CALLS.clear()
    run_sweep(grid, tmp_path / "out", profile="tiny", task=cheap_task)
    assert sorted(CALLS) == [("broken", "lee", 0), ("broken", "lee", 1)]  # only the failures are retried


def test_grid_errors(tmp_path):
    with pytest.raises(ValueError, match="no profile"):
        expand_grid({"songs": ["a.wav"], "seeds": [0], "methods": ["lee"]}, tmp_path)
    with pytest.raises(ValueError, match="unknown grid keys"):
        expand_grid({"songs": ["a.wav"], "seeds": [0], "methods": ["lee"], "seed": 1}, tmp_path, "tiny")
    with pytest.raises(ValueError, match="distinct file names"):
        expand_grid({"songs": ["x/a.wav", "y/a.wav"], "seeds": [0], "methods": ["lee"]}, tmp_path, "tiny")
    with pytest.raises(ValueError, match=r"unknown methods \['emostile'\] in the grid; valid: emostyle"):
        expand_grid({"songs": ["a.wav"], "seeds": [0], "methods": ["emostile"]}, tmp_path, "tiny")
    specs = expand_grid({"songs": ["a.wav"], "seeds": [3], "methods": ["lee"], "profiles": ["paper-lhq"],
                         "datasets": {"paper-lhq": "LHQ"}}, tmp_path)
    assert [(s.dataset, s.seed, s.key) for s in specs] == [("LHQ", 3, "paper-lhq/lee/a/seed-3")]


@pytest.mark.parametrize("text, match", [
    ("songs: [a.wav\n  : bad", r"not valid YAML at line \d"),
    ("songs: [a.wav]\nseeds: 1\nmethods: [lee]\noverrides: [1, 2]", "overrides must be a mapping"),
    ("songs: [a.wav]\nseeds: 0\nmethods: [lee]", "count of at least 1"),
    ("songs: [a.wav]\nseeds: -1\nmethods: [lee]", "count of at least 1"),
    ("songs: [a.wav]\nseeds: abc\nmethods: [lee]", "seeds must be a count"),
    ("songs: [a.wav]\nseeds: [0, -2]\nmethods: [lee]", "seeds must be a count"),
    ("songs: [a.wav]\nseeds: 1\nmethods: [lee, 3]", "methods must be a list of names"),
])
def test_a_bad_grid_file_is_a_one_line_error_before_any_task(tmp_path, text, match):
    """A grid file's mistakes are named before anything runs: no traceback (a YAML error, overrides
    given as a list), no sweep of nothing (seeds: 0), no name split into letters."""
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        expand_grid(load_grid(path), tmp_path / "out", "tiny")
    assert "\n" not in str(info.value)


def test_one_name_in_a_grid_is_a_list_of_one(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    path = tmp_path / "grid.yaml"
    path.write_text("songs: a.wav\nseeds: 2\nmethods: emostyle\nprofiles: tiny")
    specs = expand_grid(load_grid(path), tmp_path / "out")
    assert [s.key for s in specs] == ["tiny/emostyle/a/seed-0", "tiny/emostyle/a/seed-1"]
    from_python = {"songs": [tmp_path / "a.wav"], "seeds": 2, "methods": ("emostyle",), "profiles": ["tiny"]}
    assert expand_grid(from_python, tmp_path / "out") == specs  # Paths and tuples, as Python code makes them


def test_overrides_of_any_kind_make_hashable_tasks_that_get_them_back(tmp_path):
    """A section given as a mapping (guidance: {steps: 3}) or a list value made task specs that
    could not be hashed, and the sweep failed with a TypeError."""
    overrides = {"guidance": {"steps": 3}, "scoring.scorers": ["brisque"], "seed": 2}
    specs = expand_grid({"songs": ["a.wav"], "seeds": 2, "methods": ["lee"], "overrides": overrides}, tmp_path, "tiny")
    assert len(set(specs)) == 2 and all(s.settings == overrides for s in specs)


def test_cli_parser(tmp_path):
    parser = argparse.ArgumentParser()
    add_sweep_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sweep", "--profile", "tiny", "--grid", "g.yaml", "--out", "o",
                              "--scheduler", "tcp://host:8786", "--set", "guidance.steps=3"])
    assert (args.grid, args.scheduler, args.workers) == ("g.yaml", "tcp://host:8786", 1)
    assert args.overrides == ["guidance.steps=3"]
    assert callable(args.func)


def test_scores_of_a_sweep_make_table_1(tmp_path):
    """Sweep -> score each run's after.png -> summary table (a stand-in scorer: mean grey level)."""
    import numpy as np
    from PIL import Image

    from emostyle.scoring import score_runs
    from emostyle.scoring.tables import summary_table

    def render(song, profile, method, seed, out, overrides):
        level = 40 * seed + (100 if method == "emostyle" else 0)
        Image.fromarray(np.full((8, 8, 3), level, np.uint8)).save(Path(out) / "after.png")
        return {}

    class MeanGrey:
        name, higher_is_better = "mean-grey", True

        def score(self, images):
            return ((images + 1) * 127.5).mean(dim=(1, 2, 3)).numpy()

    rows = run_sweep(_grid(tmp_path), tmp_path / "out", profile="tiny", task=render)
    records = score_runs(rows, {"mean-grey": MeanGrey()})
    assert len(records) == 8 and records[0] == {"method": "emostyle", "dataset": "tiny", "seed": 0,
                                                "song": str(tmp_path / "happy.wav"), "scorer": "mean-grey",
                                                "score": pytest.approx(100)}
    table = summary_table(records, n_boot=200)
    assert [(r["method"], r["mean"]) for r in table] == [("emostyle", pytest.approx(120)), ("lee", pytest.approx(20))]


# --- a real scheduler and worker processes, under faults ----------------------------------------------


def _wait(condition, seconds, what):
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow
def test_sweep_on_a_dask_scheduler_survives_a_killed_worker_and_a_stopped_sweep(tmp_path):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1; one worker is killed while
    tasks run on it, the sweep itself is stopped (Ctrl-C) half way and started again: the table
    ends with every task exactly once, right results, and each failure with its task."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), str(repo / "tests")]), "OMP_NUM_THREADS": "1"}
    dask = [str(Path(sys.executable).with_name("dask"))]
    info = tmp_path / "scheduler.json"
    procs = []

    def start(*args):
        procs.append(subprocess.Popen([*dask, *args], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        return procs[-1]

    songs = ["happy", "sad", "broken"]
    for s in songs:
        (tmp_path / f"{s}.wav").write_bytes(b"")
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"songs": [f"{s}.wav" for s in songs], "seeds": 3, "methods": ["emostyle", "lee"],
                                    "overrides": {"sleep": 0.4}}))
    out = tmp_path / "out"
    started = lambda: list(out.glob("*/*/*/*/started"))  # noqa: E731
    finished = lambda: list(out.glob("*/*/*/*/task.json"))  # noqa: E731
    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(info))
        _wait(info.exists, 60, "the scheduler")
        address = json.loads(info.read_text())["address"]
        doomed = start("worker", address, "--no-nanny", "--nthreads", "1", "--name", "doomed", "--host", "127.0.0.1")
        start("worker", address, "--no-nanny", "--nthreads", "1", "--name", "survivor", "--host", "127.0.0.1")
        code = ("import sweep_tasks\nfrom emostyle.sweep import run_sweep\n"
                f"run_sweep({str(grid)!r}, {str(out)!r}, profile='tiny', task=sweep_tasks.slow, scheduler={address!r})\n")
        sweep = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tmp_path,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(sweep)
        def running_on_doomed():
            return [p.parent for p in started() if p.read_text() == "doomed"
                    and not (p.parent / "task.json").exists() and not (p.parent / "error.json").exists()]

        _wait(running_on_doomed, 60, "a task running on the worker to kill")
        interrupted = running_on_doomed()
        doomed.kill()  # SIGKILL in the middle of a task: no goodbye to the scheduler
        _wait(lambda: len(finished()) >= 7, 60, "tasks to finish on the surviving worker")
        sweep.send_signal(signal.SIGINT)  # the user stops the sweep
        assert sweep.wait(30) != 0
        count = len(started())
        time.sleep(1.5)  # tasks already running on the worker finish; no new ones start
        assert len(started()) == count
        assert 7 <= len(finished()) < 18
        before = {p: p.stat().st_mtime_ns for p in finished()}

        from emostyle.sweep import run_sweep
        import sweep_tasks  # noqa: F401 -- the task travels by reference: the workers import it too

        rows = run_sweep(grid, out, profile="tiny", task=sweep_tasks.slow, scheduler=address)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    expected = {f"tiny/{m}/{s}/seed-{n}" for m in ("emostyle", "lee") for s in songs for n in range(3)}
    assert sorted(r["task"] for r in rows) == sorted(expected)  # none lost, none twice
    failed = {r["task"]: r["error"] for r in rows if r["status"] != "ok"}
    assert failed == {f"tiny/lee/broken/seed-{n}": "RuntimeError: this song cannot be guided" for n in range(3)}
    for task in failed:
        assert "cannot be guided" in json.loads((out / task / "error.json").read_text())["error"]
    for r in rows:
        if r["status"] == "ok":
            song, seed = Path(r["song"]).stem, r["seed"]
            assert r["result.score"] == len(song) + 10 * seed + {"emostyle": 0.5, "lee": 0.25}[r["method"]]
    assert {p: p.stat().st_mtime_ns for p in before} == before  # finished tasks were not run again
    assert interrupted and all((folder / "task.json").exists() or (folder / "error.json").exists()
                               for folder in interrupted)  # the killed worker's task was run again elsewhere
    table = pq.read_table(out / "results.parquet").to_pylist()
    assert sorted(r["task"] for r in table) == sorted(expected)
    # Worker processes never share a numba cache (processes compiling into one corrupt it).
    caches = {p.read_text(): (p.parent / "numba").read_text() for p in started()}
    assert caches["survivor"] == str(out.resolve() / ".numba" / "survivor"), caches
    assert caches.get("doomed") in (None, str(out.resolve() / ".numba" / "doomed")), caches


def test_a_sweep_of_the_pipeline_lists_what_is_missing_before_starting_workers(tmp_path, monkeypatch):
    from emostyle.preflight import MissingRequirementsError

    monkeypatch.setenv("EMOSTYLE_HOME", str(tmp_path / "home"))  # an empty cache
    monkeypatch.delenv("EMOSTYLE_MIRROR", raising=False)
    grid = {**_grid(tmp_path), "profiles": ["offline", "paper-lhq"]}
    with pytest.raises(MissingRequirementsError, match=r"emostyle sweep \(profile offline\).*fetch --profile offline"):
        run_sweep(grid, tmp_path / "out", workers=2)
    assert not (tmp_path / "out").exists()  # no task started


def test_a_sweep_of_the_pipeline_names_missing_songs_and_a_file_as_out_before_any_task(tmp_path):
    grid = _grid(tmp_path)
    grid["songs"].append(str(tmp_path / "nope.wav"))
    with pytest.raises(FileNotFoundError, match=r"songs not found: .*nope\.wav"):
        run_sweep(grid, tmp_path / "out", profile="tiny")
    assert not (tmp_path / "out").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        run_sweep(_grid(tmp_path), tmp_path / "afile", profile="tiny")
