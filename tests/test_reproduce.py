"""The papermill runner: parameters injected, figures staged in the run and published with the
manifest, unchanged notebooks reused from the cache, failures named without stopping the run,
Ctrl-C stopping the kernel at once with nothing published."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import nbformat
import pytest

from emostyle import registry
from emostyle import reproduce as runner
from emostyle.reproduce import NOTEBOOKS, Notebook, ReproduceError, check_parameters_cell, notebook_dir
from emostyle.samples import SONGS_DIR

# Each fake notebook writes `<name>.txt` (its parameters and the kernel's OpenMP wait policy) into
# the figures folder it is given, and beside the runs a counter of how often it really ran and
# the numba cache folder its kernel was given.
_WRITE = """from pathlib import Path
import os
count = Path(figures_dir).parents[2] / "count-{name}"
count.write_text(str(int(count.read_text()) + 1 if count.exists() else 1))
(count.parent / "numba-{name}").write_text(os.environ.get("NUMBA_CACHE_DIR", ""))
with open(count.parent / "order", "a") as order:
    order.write("{name}")
Path(figures_dir, "{name}.txt").write_text(f"{{profile}} {{overrides}} {{os.environ.get('OMP_WAIT_POLICY')}}")
"""


def _notebook(path, body, parameters=True):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "x"\noverrides = {}\nfigures_dir = "."\nrun_dir = "."')
    if parameters:
        params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def kit(tmp_path, monkeypatch):
    """Two fake notebooks a and b (figures a.txt, b.txt) in place of the kit's."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name in "ab":
        _notebook(folder / f"{name}.ipynb", _WRITE.format(name=name))
    monkeypatch.setattr(runner, "notebook_dir", lambda: folder)
    monkeypatch.setattr(runner, "NOTEBOOKS", (Notebook("a", ("figa",), ("a",)), Notebook("b", ("figb",), ("b",))))
    return tmp_path


def _run(root, run, **kwargs):
    return runner.reproduce("tiny", out=root / "figs", run_dir=root / "runs" / run, progress=False, **kwargs)


def _count(root, name):
    return int((root / "runs" / f"count-{name}").read_text())


def test_runs_notebooks_with_injected_parameters_and_publishes_with_the_manifest(kit):
    manifest = _run(kit, "r1", overrides={"guidance.steps": 2})
    figs = kit / "figs"
    assert (figs / "a.txt").read_text() == "tiny {'guidance.steps': 2} PASSIVE"  # the kernel got the policy
    assert (kit / "runs" / "r1" / "a.ipynb").exists()
    saved = json.loads((figs / "manifest.json").read_text())
    assert saved == json.loads((kit / "runs" / "r1" / "manifest.json").read_text())
    assert saved["profile"] == "tiny" and saved["config"]["guidance"]["steps"] == 2
    assert saved["outputs"] == ["a.txt", "b.txt"] and saved["notebooks"]["a"]["outputs"] == ["a.txt"]
    assert {e["status"] for e in manifest["notebooks"].values()} == {"ran"}
    assert saved["environment"]["packages"]["torch"]
    assert not [p for p in figs.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    # Kernels run at once never share a numba cache (concurrent writers corrupt it); each keeps its
    # own in the run cache, so that the next run loads what this one compiled.
    numba = {name: (kit / "runs" / f"numba-{name}").read_text() for name in "ab"}
    assert numba["a"] != numba["b"], numba
    assert all(os.path.dirname(d) == str(kit / "runs" / ".cache" / "numba") for d in numba.values()), numba


def test_the_manifest_lists_the_weight_files_the_kernels_used_also_when_reused(kit):
    """The notebooks read their weights in their kernels, other processes: the manifest must still
    name each file and its sha256, and a reused notebook's files too."""
    _notebook(runner.notebook_dir() / "a.ipynb", "from emostyle import registry\nregistry.path('audio-fire')")
    first = _run(kit, "r1")
    fire = [w for w in first["weights"] if w["name"] == "audio-fire"]
    assert len(fire) == 1 and fire[0]["sha256"] == registry.entry("audio-fire").sha256
    again = _run(kit, "r2")
    assert again["notebooks"]["a"]["status"] == "reused" and again["weights"] == first["weights"]
    # A notebook left out by --only keeps its figures, made by an earlier run: its files stay listed.
    kept = _run(kit, "r3", only="figb", force=True)
    assert kept["notebooks"]["a"]["status"] == "kept" and fire[0] in kept["weights"]


def test_a_run_folder_that_holds_a_run_is_refused(kit):
    """A run's files are hard links into the cache: run again in the same folder, a notebook would
    write through them into another run's cache entry (or a reuse would fail on a link to itself)."""
    _run(kit, "r1")
    cached = {p: p.read_bytes() for p in (kit / "runs" / ".cache").rglob("*") if p.is_file()}
    with pytest.raises(ReproduceError, match="already holds a run; give a new"):
        _run(kit, "r1", force=True)
    assert {p: p.read_bytes() for p in (kit / "runs" / ".cache").rglob("*") if p.is_file()} == cached
    (kit / "runs" / "empty").mkdir()
    assert _run(kit, "empty")["notebooks"]["a"]["status"] == "reused"


def test_a_run_leaves_no_event_loop_for_the_garbage_collector(kit):
    """nbclient left each worker thread's loop open; collected later, its ResourceWarning landed in
    whatever ran then (a manifest's warnings, another test's)."""
    import gc
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        _run(kit, "r1", jobs=2)
        gc.collect()
    assert [str(w.message)[:40] for w in caught if w.category is ResourceWarning] == []


def test_runs_started_in_one_second_get_folders_of_their_own(tmp_path):
    """A run's folder is claimed by making it: runs started at once never share one (its files are
    hard links into the cache)."""
    made = [runner._new_run_dir(tmp_path / "runs", "tiny") for _ in range(3)]
    assert len(set(made)) == 3 and all(p.is_dir() and not any(p.iterdir()) for p in made)
    assert made[1].name == f"{made[0].name}-2" or made[1].name[:15] != made[0].name[:15]  # the next second


def test_a_run_of_some_notebooks_gets_the_thread_count_of_a_whole_run(kit, monkeypatch):
    """A notebook's numbers depend on its kernel's thread count: run alone (`--only`) it must get
    the count it gets beside the others, not every core (4 cores here, two notebooks: two each)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))
    assert _run(kit, "r1", only="figa")["notebooks"]["a"]["torch_threads"] == 2
    assert {e["torch_threads"] for e in _run(kit, "r2", force=True)["notebooks"].values()} == {2}
    assert "JUPYTER_PATH" not in os.environ or str(kit / "runs") not in os.environ["JUPYTER_PATH"]


def test_only_that_names_nothing_is_refused_and_keeps_the_figures(kit):
    _run(kit, "r1")
    for only in (",", " , "):
        with pytest.raises(ValueError, match="names no figure or notebook"):
            _run(kit, "r2", only=only)
    assert (kit / "figs" / "a.txt").exists() and (kit / "figs" / "b.txt").exists()


def test_a_notebook_the_cache_cannot_keep_is_published_and_said(kit, monkeypatch, capsys):
    """A full disk under the cache (or another run storing the same entry) must not cost the run
    its figures: the notebook is published and the next run executes it again."""
    real_link = runner._link

    def full(src, dst):
        if ".partial-" in str(dst):
            raise OSError(28, "No space left on device")
        return real_link(src, dst)

    monkeypatch.setattr(runner, "_link", full)
    manifest = runner.reproduce("tiny", out=kit / "figs", run_dir=kit / "runs" / "r1")
    assert {e["status"] for e in manifest["notebooks"].values()} == {"ran"} and (kit / "figs" / "a.txt").exists()
    assert "not kept in the cache" in capsys.readouterr().err
    assert not list((kit / "runs" / ".cache").glob("*.partial-*"))
    monkeypatch.setattr(runner, "_link", real_link)
    assert {e["status"] for e in _run(kit, "r2")["notebooks"].values()} == {"ran"}


def test_a_figures_folder_without_locks_is_published_to_unlocked(kit, monkeypatch):
    """Runs publish under a lock on --out; a file system that has none (ENOLCK) still gets the run."""
    import fcntl

    def no_locks(fd, op):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert _run(kit, "r1")["outputs"] and (kit / "figs" / "a.txt").exists()


def test_the_figures_folder_may_be_given_with_a_tilde(kit, monkeypatch):
    monkeypatch.setenv("HOME", str(kit / "home"))
    monkeypatch.chdir(kit)  # where a literal "~" folder would go
    manifest = runner.reproduce("tiny", out="~/figs", run_dir="~/r2", progress=False)
    assert (kit / "home" / "figs" / "a.txt").exists() and manifest["run_dir"] == str(kit / "home" / "r2")
    assert not (kit / "~").exists()


def test_jobs_must_be_one_or_more(kit):
    with pytest.raises(ValueError, match="--jobs must be 1 or more notebooks at once, got 0"):
        _run(kit, "r1", jobs=0)
    assert not (kit / "runs" / "r1").exists()


def test_a_first_run_starts_the_longest_notebook_first(kit, monkeypatch):
    """With no timings in the cache yet, a notebook's `seconds` orders the run (the longest
    first, so that the short ones fill the cores at the end)."""
    monkeypatch.setattr(runner, "NOTEBOOKS", (Notebook("a", ("figa",), ("a",), 1), Notebook("b", ("figb",), ("b",), 5)))
    manifest = _run(kit, "r1", jobs=1)
    assert (kit / "runs" / "order").read_text() == "ba"
    assert list(manifest["notebooks"]) == ["a", "b"]  # the manifest keeps the kit's order
    # one notebook at a time: each kernel had every core; the manifest says so, not this process's count
    cores = len(os.sched_getaffinity(0))
    assert {e["torch_threads"] for e in manifest["notebooks"].values()} == {cores}
    assert "torch_threads" not in manifest["environment"]
    again = _run(kit, "r2", jobs=2)  # reused notebooks keep the count they were made with
    assert {e["status"] for e in again["notebooks"].values()} == {"reused"}
    assert {e["torch_threads"] for e in again["notebooks"].values()} == {cores}


@pytest.mark.slow
def test_unchanged_inputs_are_reused_and_a_change_reruns_only_what_depends_on_it(kit):
    _run(kit, "r1")
    second = _run(kit, "r2")
    assert {n: e["status"] for n, e in second["notebooks"].items()} == {"a": "reused", "b": "reused"}
    assert second["notebooks"]["a"]["made_by"] == str(kit / "runs" / "r1")
    # the manifest's timings are what the published figures took to make, in the run that made them
    first = json.loads((kit / "runs" / "r1" / "manifest.json").read_text())
    assert second["timings_s"] == first["timings_s"] and all(t > 0 for t in second["timings_s"].values())
    assert {e["seconds"] for e in second["notebooks"].values()} == {0.0}
    assert (_count(kit, "a"), _count(kit, "b")) == (1, 1)
    assert (kit / "runs" / "r2" / "a.ipynb").exists() and (kit / "figs" / "b.txt").exists()
    # A reused notebook's files are the first run's bytes, linked, not copies (78 MB a run for the kit's);
    # the published figures are copies, which a user may change without touching the cache.
    assert (kit / "runs" / "r2" / "a.ipynb").stat().st_ino == (kit / "runs" / "r1" / "a.ipynb").stat().st_ino
    cached, = (kit / "runs" / ".cache").glob("a-*/figures/a.txt")
    assert (kit / "figs" / "a.txt").read_text() == cached.read_text()
    assert (kit / "figs" / "a.txt").stat().st_ino != cached.stat().st_ino

    path = runner.notebook_dir() / "b.ipynb"  # editing one notebook reruns that one only
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("1 + 1"))
    nbformat.write(nb, path)
    third = _run(kit, "r3")
    assert {n: e["status"] for n, e in third["notebooks"].items()} == {"a": "reused", "b": "ran"}

    with pytest.MonkeyPatch.context() as env:  # Whisper's kernels forced to another instruction set round otherwise
        env.setenv("CT2_FORCE_CPU_ISA", "GENERIC")
        assert {e["status"] for e in _run(kit, "r3b")["notebooks"].values()} == {"ran"}

    fourth = _run(kit, "r4", overrides={"guidance.steps": 2})  # a parameter reaches every notebook
    assert {e["status"] for e in fourth["notebooks"].values()} == {"ran"}
    assert (kit / "figs" / "a.txt").read_text() == "tiny {'guidance.steps': 2} PASSIVE"

    _run(kit, "r5", force=True)
    assert (_count(kit, "a"), _count(kit, "b")) == (4, 5)


def test_tensorflow_installed_for_the_tests_reruns_only_a_profile_that_scores_with_vila(kit, monkeypatch):
    """`kit.sh test` installs TensorFlow (the VILA test's extra) into the environment `reproduce`
    uses. A profile whose Table 1 has no VILA (the offline one) reuses its notebooks after it; a
    profile that scores with VILA runs them again, as TensorFlow may add VILA's column."""
    import importlib.util

    real_environment, real_find_spec = runner.environment, importlib.util.find_spec

    def tensorflow(version):  # this environment as it would be with TensorFlow `version` (None: without)
        def environment(device=None):
            env = real_environment(device)
            return {**env, "packages": {**env["packages"], "tensorflow": None, "tensorflow-cpu": version}}

        monkeypatch.setattr(runner, "environment", environment)
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (object() if version else None)
                            if name == "tensorflow" else real_find_spec(name, *a))

    vila = {"scoring.scorers": ["vila-r", "brisque"]}
    tensorflow(None)
    _run(kit, "r1"), _run(kit, "r2", overrides=vila)
    tensorflow("2.21.0")
    assert {e["status"] for e in _run(kit, "r3")["notebooks"].values()} == {"reused"}
    assert {e["status"] for e in _run(kit, "r4", overrides=vila)["notebooks"].values()} == {"ran"}


def test_your_songs_reach_every_notebook_and_a_changed_song_reruns_them(kit):
    for name in "ab":  # each fake notebook writes the songs folder it was given
        _notebook(runner.notebook_dir() / f"{name}.ipynb",
                  f"from pathlib import Path\nPath(figures_dir, '{name}.txt').write_text(str(globals().get('songs_dir')))")
    mine = kit / "my songs"
    mine.mkdir()
    shutil.copy(SONGS_DIR / "sad_rain.wav", mine / "blue.wav")
    first = _run(kit, "r1", songs=mine)
    assert (kit / "figs" / "a.txt").read_text() == (kit / "figs" / "b.txt").read_text() == str(mine)
    saved = json.loads((kit / "figs" / "manifest.json").read_text())
    assert saved["songs"] == first["songs"] == {
        "folder": str(mine), "files": {"blue.wav": hashlib.sha256((mine / "blue.wav").read_bytes()).hexdigest()}}

    assert {e["status"] for e in _run(kit, "r2", songs=mine)["notebooks"].values()} == {"reused"}
    (mine / "blue.txt").write_text("my lyrics\n")  # lyrics added: a song's input changed
    assert {e["status"] for e in _run(kit, "r3", songs=mine)["notebooks"].values()} == {"ran"}
    kits = _run(kit, "r4")  # without --songs: the kit's own songs again, not a reuse of the run on mine
    assert {e["status"] for e in kits["notebooks"].values()} == {"ran"} and kits["songs"] is None
    assert (kit / "figs" / "a.txt").read_text() == "None"
    # --only on the kit's songs does not keep a figure made from other songs
    _run(kit, "r5", songs=mine)
    assert list(_run(kit, "r6", only="figb")["notebooks"]) == ["b"]
    assert sorted(p.name for p in (kit / "figs").iterdir()) == ["b.txt", "manifest.json"]


@pytest.mark.parametrize("content", [None, "notes.txt"], ids=["missing", "no audio"])
def test_a_songs_folder_without_songs_fails_before_running(kit, content):
    folder = kit / "mine"
    if content:
        folder.mkdir()
        (folder / content).write_text("not a song")
    with pytest.raises(ReproduceError, match=r"^--songs: no songs"):
        _run(kit, "r1", songs=folder)
    assert not (kit / "runs" / "count-a").exists()


def test_a_song_that_does_not_decode_fails_before_running(kit, repo_root):
    folder = kit / "mine"
    folder.mkdir()
    shutil.copy(repo_root / "data/songs/sad_rain.wav", folder / "sad_rain.wav")
    (folder / "notes.wav").write_text("not a song")
    with pytest.raises(ReproduceError, match=r"^--songs: cannot decode audio file .*notes\.wav.*use WAV, FLAC, OGG or MP3"):
        _run(kit, "r1", songs=folder)
    assert not (kit / "runs" / "count-a").exists() and not (kit / "figs").exists()


def test_a_song_without_speech_or_lyrics_fails_before_running_and_keeps_the_published_figures(kit, repo_root):
    """An instrumental without a .txt failed in six notebooks, and the run published only what the
    others made; it is now read before any notebook runs, and the lyrics it needs are asked for."""
    import numpy as np
    import soundfile as sf

    _run(kit, "r1")
    published = {p.name: p.read_bytes() for p in (kit / "figs").iterdir()}
    folder = kit / "mine"
    folder.mkdir()
    shutil.copy(repo_root / "data/songs/sad_rain.wav", folder / "sad_rain.wav")  # heard: no .txt needed
    t = np.arange(4 * 16000) / 16000
    sf.write(folder / "hum.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 16000)
    with pytest.raises(ReproduceError, match=r"^--songs: no lyrics could be read from hum\.wav \(.*\): put each song's lyrics in a \.txt"):
        _run(kit, "r2", songs=folder)
    assert _count(kit, "a") == 1 and not (kit / "runs" / "r2").exists()
    assert {p.name: p.read_bytes() for p in (kit / "figs").iterdir()} == published


def test_a_failing_notebook_is_named_and_every_figure_that_could_be_made_is_published(kit):
    _run(kit, "r1")
    # Notebook a makes its first figure, then fails on a missing file (as Figure 3 without the network).
    _notebook(runner.notebook_dir() / "a.ipynb", "from pathlib import Path\nPath(figures_dir, 'a1.txt').write_text('ok')\n"
              "raise FileNotFoundError('missing file drill.wav; run X')")
    runner.NOTEBOOKS = (Notebook("a", ("figa",), ("a1", "a")), Notebook("b", ("figb",), ("b",)))
    manifest = _run(kit, "r2")
    assert manifest["notebooks"]["a"]["status"] == "failed" and manifest["notebooks"]["b"]["status"] == "reused"
    assert manifest["failed"] == {"a": "cell In [3]: FileNotFoundError: missing file drill.wav; run X"}  # [3]: after
    # the parameters cell and the one papermill injects
    assert manifest["not_made"] == {"a": ["a"]}
    # a.txt of the old run is gone from figs/: nothing there is left undescribed by the manifest.
    assert sorted(p.name for p in (kit / "figs").iterdir()) == ["a1.txt", "b.txt", "manifest.json"]


def test_only_keeps_the_other_notebooks_figures_and_says_where_they_came_from(kit):
    _run(kit, "r1")
    manifest = _run(kit, "r2", only="figb", force=True)
    assert manifest["notebooks"]["a"]["status"] == "kept"
    assert manifest["notebooks"]["a"]["made_by"] == str(kit / "runs" / "r1")
    assert manifest["outputs"] == ["a.txt", "b.txt"] and (kit / "figs" / "a.txt").exists()
    # made with another seed, a's figure is not described by a manifest of seed 0: it goes
    _run(kit, "r3", overrides={"seed": 1})
    again = _run(kit, "r4", only="figb")
    assert list(again["notebooks"]) == ["b"] and again["outputs"] == ["b.txt"]
    assert not (kit / "figs" / "a.txt").exists()


def test_ctrl_c_stops_the_kernel_at_once_and_publishes_nothing(kit):
    """A real SIGINT to a real run whose notebook is busy in a long cell."""
    _notebook(runner.notebook_dir() / "b.ipynb", "import time\nfor _ in range(600):\n    time.sleep(0.1)")
    script = textwrap.dedent(f"""
        import sys
        from emostyle import reproduce as r
        from emostyle.cli import main
        r.notebook_dir = lambda: __import__("pathlib").Path({str(runner.notebook_dir())!r})
        r.NOTEBOOKS = (r.Notebook("a", ("figa",), ("a",)), r.Notebook("b", ("figb",), ("b",)))
        sys.exit(main(["reproduce", "--profile", "tiny", "--out", {str(kit / "figs")!r},
                       "--run-dir", {str(kit / "runs" / "r1")!r}]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
                            env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})
    busy = kit / "runs" / "r1" / "b.ipynb"
    deadline = time.time() + 120
    while time.time() < deadline and not busy.exists():
        time.sleep(0.2)
    time.sleep(3)  # the kernel is inside the long cell
    proc.send_signal(signal.SIGINT)
    sent = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - sent < 15  # 1 s for nbclient to notice the dead kernel, the rest start-up noise
    assert proc.returncode == 130
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith(f"emostyle reproduce: interrupted: nothing published to {kit / 'figs'};")
    assert "runs/r1" in lines[-1]
    assert not any("Traceback" in line for line in lines), err
    assert not (kit / "figs").exists()
    marked = nbformat.read(busy, as_version=4)
    assert marked.metadata["papermill"]["interrupted"]
    assert marked.cells[-1].metadata["papermill"]["status"] == "interrupted"  # papermill says "completed"


@pytest.mark.parametrize("copy_fails", [False, True], ids=["copied", "disk full"])
def test_a_signal_while_publishing_lets_the_run_land_whole_and_says_so(kit, monkeypatch, capsys, copy_fails):
    """SIGTERM in the middle of copying the figures into place: the copy and the renames finish,
    then the signal stops the command, and its message says the run was published. Where the copy
    fails as well (a full disk), its error is what the command says, and nothing was published."""
    from emostyle import cli

    copy = shutil.copytree

    def copy_then_signal(src, dst, **kwargs):
        if os.path.basename(dst).startswith(".incoming"):  # the copy into the figures folder
            signal.raise_signal(signal.SIGTERM)  # as if `timeout` fired now
            if copy_fails:
                raise OSError(28, "No space left on device")
        return copy(src, dst, **kwargs)

    monkeypatch.setattr(shutil, "copytree", copy_then_signal)
    argv = ["reproduce", "--profile", "tiny", "--out", str(kit / "figs"), "--run-dir", str(kit / "runs" / "r1")]
    previous = signal.getsignal(signal.SIGTERM)
    try:
        status = cli.main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    if copy_fails:
        assert status == 2 and last == "emostyle reproduce: error: [Errno 28] No space left on device"
        assert list((kit / "figs").iterdir()) == []  # no figure, no manifest, no staging folder
        return
    assert status == 128 + signal.SIGTERM
    assert last == f"emostyle reproduce: interrupted after the run was published to {kit / 'figs'} (run in {kit / 'runs' / 'r1'})"
    published = json.loads((kit / "figs" / "manifest.json").read_text())
    assert published["outputs"] == ["a.txt", "b.txt"]
    assert sorted(p.name for p in (kit / "figs").iterdir()) == ["a.txt", "b.txt", "manifest.json"]


@pytest.mark.parametrize("trouble", ["disk full", "a folder in the way"])
def test_a_publish_that_cannot_finish_leaves_the_previous_figures_as_they_were(kit, monkeypatch, trouble):
    """What can fail while publishing (the manifest's write on a full disk, a folder where a figure
    goes) fails before any file of the figures folder changes: never new figures beside an old
    manifest."""
    _run(kit, "r1")
    before = {p.name: p.read_bytes() for p in (kit / "figs").iterdir()}
    _notebook(runner.notebook_dir() / "a.ipynb", _WRITE.format(name="a") + "\nPath(figures_dir, 'a.txt').write_text('new')")
    if trouble == "disk full":
        write = runner.write_json

        def full(path, data):
            if path.parent.name.startswith(".incoming"):
                raise OSError(28, "No space left on device")
            return write(path, data)

        monkeypatch.setattr(runner, "write_json", full)
        with pytest.raises(OSError, match="No space left"):
            _run(kit, "r2")
    else:
        (kit / "figs" / "b.txt").unlink()
        (kit / "figs" / "b.txt").mkdir()
        del before["b.txt"]
        with pytest.raises(ReproduceError, match="b.txt is a folder where the run puts a file"):
            _run(kit, "r2")
    after = {p.name: p.read_bytes() for p in (kit / "figs").iterdir() if p.is_file()}
    assert after == before and not list((kit / "figs").glob(".incoming-*"))


@pytest.mark.parametrize("what", ["a file", "a manipulation"])
def test_an_out_that_cannot_take_the_figures_is_refused_before_any_notebook_runs(kit, what):
    out = kit / "figs"
    if what == "a file":
        out.write_text("x")
    else:
        out.mkdir()
        (out / "manifest.json").write_text(json.dumps({"song": "s.wav", "method": "emostyle", "files": []}))
    with pytest.raises(ReproduceError, match="is a file" if what == "a file" else "holds a manipulation's result"):
        _run(kit, "r1")
    assert not (kit / "runs" / "count-a").exists()  # no notebook ran


def test_the_staging_folder_of_a_run_killed_while_publishing_is_cleared(kit):
    """A run killed (SIGKILL) while publishing leaves its staging folder in the figures folder; the
    next run clears it, as its process is gone."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = kit / "figs" / f".incoming-{dead.pid}"
    left.mkdir(parents=True)
    (left / "a.txt").write_text("half")
    _run(kit, "r1")
    assert not left.exists() and (kit / "figs" / "a.txt").read_text() != "half"


def test_a_notebook_without_parameters_cell_is_refused(tmp_path):
    _notebook(tmp_path / "n.ipynb", "1", parameters=False)
    with pytest.raises(ReproduceError, match="exactly one cell tagged 'parameters'"):
        check_parameters_cell(tmp_path / "n.ipynb")


def test_only_takes_any_output_of_a_notebook():
    """A figure's file name, as the README's table of them lists it, runs the notebook that makes it."""
    assert [nb.name for nb in runner._select("retrieval_sets")] == ["01_retrieval"]
    assert [nb.name for nb in runner._select("fig2,start_study_examples_ffhq-style_faces")] == ["03_guidance",
                                                                                             "07_start_study"]
    assert [nb.name for nb in runner._select("04_ablations")] == ["04_ablations"]
    with pytest.raises(ValueError, match=r"unknown --only entries \['start_studies'\]"):
        runner._select("study,start_studies")


def test_bad_profile_or_only_fails_before_running(tmp_path):
    with pytest.raises(ValueError, match="valid: "):
        runner.reproduce("tiny", only="fig9", out=tmp_path, run_dir=tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="unknown config key"):
        runner.reproduce("tiny", overrides={"guidance.nope": 1}, out=tmp_path, run_dir=tmp_path / "r", progress=False)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.name)
def test_committed_notebooks_have_one_parameters_cell_and_no_outputs(nb):
    import papermill

    path = notebook_dir() / f"{nb.name}.ipynb"
    check_parameters_cell(path)
    assert "songs_dir" in papermill.inspect_notebook(str(path))  # `reproduce --songs` reaches it
    cells = nbformat.read(path, as_version=4).cells
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells if c.cell_type == "code")


def test_kernels_are_interrupted_when_asked_but_not_on_their_way_out(monkeypatch):
    """jupyter_client interrupts every kernel before shutting it down; an idle kernel then logs
    "KeyboardInterrupt caught in kernel" into the run's output."""
    import asyncio

    from jupyter_client.manager import AsyncKernelManager

    sent = []

    async def interrupt(self):
        sent.append(self.shutting_down)

    monkeypatch.setattr(AsyncKernelManager, "_async_interrupt_kernel", interrupt)
    manager = runner._local_kernel_manager()()
    try:
        asyncio.run(manager._async_interrupt_kernel())
        manager.shutting_down = True
        asyncio.run(manager._async_interrupt_kernel())
    finally:
        runner._LIVE_KERNELS.discard(manager)
        shutil.rmtree(manager.socket_dir, ignore_errors=True)
    assert sent == [False]
