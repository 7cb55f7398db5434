"""Output folders appear only complete: staged beside `out`, published by a rename."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emostyle.manifest import write_json
from emostyle.outputs import staged_output


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_complete_run_is_published_with_its_paths(tmp_path):
    out = tmp_path / "out"
    with staged_output(out) as stage:
        assert stage.parent == tmp_path and stage.is_dir() and not out.exists()  # nothing visible yet
        (stage / "music").mkdir()
        (stage / "music" / "song.wav").write_bytes(b"RIFF")
        write_json(stage / "manifest.json", {"music": {"wav": str(stage / "music" / "song.wav")}, "n": 3})
    assert json.loads((out / "manifest.json").read_text()) == {"music": {"wav": str(out / "music" / "song.wav")},
                                                               "n": 3, "files": ["manifest.json", "music/song.wav"]}
    assert (out / "music" / "song.wav").read_bytes() == b"RIFF" and _hidden(tmp_path) == []


def test_a_failed_run_leaves_nothing_and_keeps_the_previous_result(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"), staged_output(out) as stage:
        (stage / "after.png").write_bytes(b"new")
        raise RuntimeError("boom")
    assert not out.exists() and _hidden(tmp_path) == []
    with pytest.raises(RuntimeError, match="boom"), staged_output(tmp_path / "new" / "deep" / "out"):
        raise RuntimeError("boom")  # e.g. a silent song, refused
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # not even the folders made for it

    with staged_output(out) as stage:
        (stage / "after.png").write_bytes(b"first song")
        (stage / "manifest.json").write_text("{}")
    with pytest.raises(KeyboardInterrupt), staged_output(out) as stage:  # stopped by the user
        (stage / "after.png").write_bytes(b"second song, unfinished")
        raise KeyboardInterrupt
    assert (out / "after.png").read_bytes() == b"first song" and _hidden(tmp_path) == []


def test_a_previous_result_is_replaced_whole(tmp_path):
    out = tmp_path / "out"
    with staged_output(out) as stage:
        (stage / "manifest.json").write_text("{}")
        (stage / "frames.png").write_bytes(b"old")
    with staged_output(out) as stage:
        (stage / "manifest.json").write_text('{"second": true}')
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]  # no stale frames.png beside it
    assert _hidden(tmp_path) == []


def test_a_folder_of_other_files_needs_force(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(ValueError, match="holds other files.*--force"):
        with staged_output(out):
            pytest.fail("the block must not run")
    assert (out / "holiday.jpg").exists()
    with staged_output(out, force=True) as stage:
        (stage / "manifest.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
    (tmp_path / "empty").mkdir()
    with staged_output(tmp_path / "empty") as stage:  # an empty folder is fine without --force
        (stage / "manifest.json").write_text("{}")
    assert (tmp_path / "empty" / "manifest.json").exists()


def test_another_commands_results_are_not_a_previous_result(tmp_path):
    """With `result_keys` (manipulate's: a song and a method), a folder whose manifest.json lacks
    them, such as reproduce's published figures, needs force; one of the caller's results is
    replaced."""
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "manifest.json").write_text('{"notebooks": {}}')
    (figures / "fig2_lyrics.png").write_bytes(b"published")
    with pytest.raises(ValueError, match="holds other files.*reproduce.*--force"):
        with staged_output(figures, result_keys=("song", "method")):
            pytest.fail("the block must not run")
    assert (figures / "fig2_lyrics.png").read_bytes() == b"published"
    out = tmp_path / "out"
    with staged_output(out, result_keys=("song", "method")) as stage:
        (stage / "manifest.json").write_text('{"song": "a.wav", "method": "emostyle"}')
        (stage / "after.png").write_bytes(b"first")
    with staged_output(out, result_keys=("song", "method")) as stage:
        (stage / "manifest.json").write_text('{"song": "b.wav", "method": "lee"}')
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"] and _hidden(tmp_path) == []


def _root_read_only(tmp_path):
    if os.geteuid() == 0:  # root writes through file modes; sysfs refuses everyone
        return Path("/sys/emostyle-out")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ro / "out"


@pytest.mark.parametrize("make, match", [
    (lambda t: (t / "file").write_text("x") and t / "file", "is a file, not a folder"),
    (lambda t: (t / "file").write_text("x") and t / "file" / "out", "is a file, so no folder can be made"),
    (_root_read_only, "cannot write in"),
])
def test_bad_out_paths_are_one_line_errors(tmp_path, make, match):
    out = make(tmp_path)
    with pytest.raises(ValueError, match=match) as info:
        with staged_output(out):
            pytest.fail("the block must not run")
    assert "\n" not in str(info.value) and "--out" in str(info.value)


def test_the_current_folder_is_never_replaced(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="holds the current folder"):
        with staged_output(".", force=True):
            pytest.fail("the block must not run")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_killed_run_leaves_a_staging_folder_that_the_next_run_removes(tmp_path):
    out = tmp_path / "out"
    code = ("import os, sys\nfrom emostyle.outputs import staged_output\n"
            f"with staged_output({str(out)!r}) as stage:\n"
            "    (stage / 'after.png').write_bytes(b'half')\n"
            "    os._exit(9)\n")  # no clean-up runs: as after SIGKILL or a power cut
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 9
    assert not out.exists() and len(_hidden(tmp_path)) == 1
    with staged_output(out) as stage:
        (stage / "manifest.json").write_text("{}")
    assert _hidden(tmp_path) == [] and (out / "manifest.json").exists()


def test_a_staging_folder_of_another_host_is_left_to_it(tmp_path):
    """On a folder that hosts share, a pid says nothing about another host's processes: its
    staging folders stay (a run there may be working), while this host's dead writer's go."""
    from emostyle.outputs import process_tag

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = process_tag().partition("@")[2]
    theirs = tmp_path / f".out.partial-{dead.pid}@not-{here}"
    ours = tmp_path / f".out.partial-{dead.pid}@{here}"
    for stage in (theirs, ours):
        stage.mkdir()
        (stage / "after.png").write_bytes(b"half")
    with staged_output(tmp_path / "out") as stage:
        assert stage.name == f".out.partial-{process_tag()}"
        (stage / "manifest.json").write_text("{}")
    assert _hidden(tmp_path) == [theirs.name]


def test_a_non_ascii_out_name_gets_its_paths_rewritten(tmp_path):
    """JSON escapes non-ASCII letters: the staging folder's name was looked for in the file's text and
    not found, so the manifest named the removed staging folder."""
    out = tmp_path / "Ausgabe für 歌"
    with staged_output(out) as stage:
        write_json(stage / "manifest.json", {"music": str(stage / "music" / "song.wav")})
    assert json.loads((out / "manifest.json").read_text())["music"] == str(out / "music" / "song.wav")


def test_a_file_put_beside_a_previous_result_is_not_deleted_without_force(tmp_path):
    """A previous result is replaced whole only if it holds nothing but what it was published with
    (its manifest lists it): a photo put there, or a result of an older kit, needs force."""
    out = tmp_path / "out"
    keys = ("song", "method")
    with staged_output(out, result_keys=keys) as stage:
        write_json(stage / "manifest.json", {"song": "a.wav", "method": "emostyle"})
        (stage / "after.png").write_bytes(b"first")
    (out / "me.jpg").write_bytes(b"my photo")
    with pytest.raises(ValueError, match=r"did not write \(me\.jpg\).*--force") as info:
        with staged_output(out, result_keys=keys):
            pytest.fail("the block must not run")
    assert "\n" not in str(info.value) and (out / "me.jpg").read_bytes() == b"my photo"
    (out / "me.jpg").unlink()
    record = json.loads((out / "manifest.json").read_text())
    write_json(out / "manifest.json", {k: v for k, v in record.items() if k != "files"})  # an older kit's result
    with pytest.raises(ValueError, match="a result of an earlier version of the kit.*--force"):
        with staged_output(out, result_keys=keys):
            pytest.fail("the block must not run")
    with staged_output(out, result_keys=keys, force=True) as stage:
        write_json(stage / "manifest.json", {"song": "b.wav", "method": "lee"})
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_an_out_that_holds_an_input_is_refused_even_with_force(tmp_path):
    songs = tmp_path / "songs"
    (songs / "deep").mkdir(parents=True)
    (songs / "deep" / "sad.wav").write_bytes(b"RIFF")
    for force in (False, True):
        with pytest.raises(ValueError, match="holds .*sad.wav, an input of this run") as info:
            with staged_output(songs, force=force, inputs=(songs / "deep" / "sad.wav",)):
                pytest.fail("the block must not run")
        assert "\n" not in str(info.value)
    assert (songs / "deep" / "sad.wav").read_bytes() == b"RIFF"
    with staged_output(tmp_path / "out", inputs=(songs / "deep" / "sad.wav",)) as stage:  # elsewhere: fine
        (stage / "manifest.json").write_text("{}")
    assert (tmp_path / "out" / "manifest.json").exists()


def test_what_a_desktop_leaves_is_no_ones_work(tmp_path):
    out = tmp_path / "out"
    with staged_output(out, result_keys=("song",)) as stage:
        write_json(stage / "manifest.json", {"song": "a.wav"})
    (out / ".DS_Store").write_bytes(b"finder")
    (out / ".ipynb_checkpoints").mkdir()
    (out / ".ipynb_checkpoints" / "x-checkpoint.ipynb").write_text("{}")
    with staged_output(out, result_keys=("song",)) as stage:  # no --force needed
        write_json(stage / "manifest.json", {"song": "b.wav"})
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_a_previous_result_moved_aside_by_a_killed_run_goes_back(tmp_path):
    """A run killed between its two renames leaves the previous result aside as .out.old-PID and no
    out; the next run puts it back before it starts (and removes an aside one that was replaced)."""
    out = tmp_path / "out"
    with staged_output(out) as stage:
        (stage / "manifest.json").write_text("{}")
    code = ("import os\nos.replace({out!r}, {aside!r})\nos._exit(9)\n")
    aside = tmp_path / ".out.old-999999"
    assert subprocess.run([sys.executable, "-c", code.format(out=str(out), aside=str(aside))]).returncode == 9
    assert not out.exists() and aside.exists()
    with pytest.raises(RuntimeError), staged_output(out):
        raise RuntimeError("a failed run, after the clean-up")
    assert (out / "manifest.json").exists() and _hidden(tmp_path) == []


def test_signals_during_a_held_block_wait_for_its_end_even_with_other_threads(tmp_path):
    """Masking the main thread only sent a signal to another thread (tqdm's monitor, torch's pool),
    and Python raised it in the main thread anyway, between the renames that publish a result."""
    import signal
    import threading

    from emostyle.outputs import signals_held

    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    steps = []
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_held():
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(3):
                    steps.append("renamed")
                    threading.Event().wait(0.05)  # a signal handler, if any, would run here
        assert steps == ["renamed"] * 3 and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
        stop.set()


@pytest.mark.parametrize("target", ["existing", "dangling"])
def test_an_out_that_is_a_link_publishes_into_the_folder_it_names(tmp_path, target):
    """A link (to a folder on another disk, say) stays a link: the result goes where it points, and
    the previous result there is replaced; a link to a folder not made yet gets that folder."""
    real, link = tmp_path / "disk" / "results", tmp_path / "out"
    if target == "existing":
        real.mkdir(parents=True)
        with staged_output(real) as stage:
            (stage / "manifest.json").write_text("{}")
            (stage / "before.png").write_bytes(b"old")
    link.symlink_to(real, target_is_directory=True)
    with staged_output(link) as stage:
        (stage / "manifest.json").write_text("{}")
        (stage / "after.png").write_bytes(b"new")
    assert link.is_symlink() and sorted(p.name for p in real.iterdir()) == ["after.png", "manifest.json"]
    assert _hidden(tmp_path) == [] and _hidden(real.parent) == []


def test_a_file_put_into_out_while_the_run_works_is_not_lost(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="exists and holds"), staged_output(out) as stage:
        (stage / "manifest.json").write_text("{}")
        out.mkdir()
        (out / "my_notes.txt").write_text("mine")  # meanwhile, by hand
    assert (out / "my_notes.txt").read_text() == "mine" and _hidden(tmp_path) == []


def test_a_signal_while_a_result_is_put_in_place_says_it_was_published(tmp_path):
    """The renames finish and the previous result is removed before the signal takes effect; what it
    raises says that the result is in place, which the command's message repeats."""
    import signal

    from emostyle.outputs import Published

    out = tmp_path / "out"
    with staged_output(out) as stage:
        (stage / "manifest.json").write_text("{}")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(Published, match=f"published to {out}") as stop, staged_output(out) as stage:
            (stage / "manifest.json").write_text('{"second": true}')
            replace = os.replace

            def replace_then_signal(src, dst):
                replace(src, dst)
                if Path(dst) == out:
                    os.kill(os.getpid(), signal.SIGINT)

            os.replace = replace_then_signal
    finally:
        os.replace = replace
        signal.signal(signal.SIGINT, previous)
    assert stop.value.signum == signal.SIGINT
    assert json.loads((out / "manifest.json").read_text())["second"] and _hidden(tmp_path) == []


def test_an_out_that_holds_the_kits_home_or_code_is_refused_even_with_force(tmp_path, monkeypatch):
    """--force replaces an out with all it holds: never the weights cache, nor the package."""
    import emostyle

    out = tmp_path / "me"
    (out / "cache" / "weights").mkdir(parents=True)
    monkeypatch.setenv("EMOSTYLE_HOME", str(out / "cache"))
    with pytest.raises(ValueError, match="holds the kit's home"), staged_output(out, force=True):
        pass
    assert (out / "cache" / "weights").is_dir()
    code = Path(emostyle.__file__).resolve().parent.parent
    monkeypatch.chdir(tmp_path)  # not from inside it, which is refused for that reason
    with pytest.raises(ValueError, match="holds the kit's code"), staged_output(code, force=True):
        pass
