"""The `emostyle` command as a user types it."""

import json
import subprocess
import sys
import time

import pytest

from emostyle.cli import main


def test_config_prints_the_resolved_profile_with_overrides(capsys):
    assert main(["config", "--profile", "tiny", "--set", "guidance.steps=3", "--set", "seed=9"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["profile"] == "tiny" and config["guidance"]["steps"] == 3 and config["seed"] == 9


def test_a_bad_override_is_a_one_line_error(capsys):
    assert main(["config", "--profile", "tiny", "--set", "guidance.stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'guidance.stepz'" in err and "Traceback" not in err


def test_manipulate_refuses_a_missing_song(capsys, tmp_path):
    assert main(["manipulate", str(tmp_path / "nope.wav"), "--profile", "tiny", "--out", str(tmp_path / "o")]) == 2
    assert "audio file not found" in capsys.readouterr().err


def test_lyrics_may_be_given_as_a_txt_file_and_a_bad_one_is_refused(capsys, tmp_path, repo_root):
    """`--lyrics song.txt` (or any existing file) reads the file (its path is not the lyrics); a
    missing or empty .txt, a file that is not text, or a missing path of another name (one word
    with a folder or an extension in it) is refused in one line before any work; plain text is
    passed through."""
    from emostyle.cli import _lyrics_argument

    known = repo_root / "data" / "songs" / "happy_sunshine.txt"
    assert _lyrics_argument(str(known)) == known  # a file: manipulate reads it and keeps it out of --out
    assert _lyrics_argument("we laugh and sing") == "we laugh and sing" and _lyrics_argument(None) is None
    assert _lyrics_argument("la " * 200) == "la " * 200  # longer than any file name: lyrics, not a path
    (tmp_path / "words.md").write_text("we laugh and sing\n")  # any existing file is read, not taken as lyrics
    assert _lyrics_argument(str(tmp_path / "words.md")) == tmp_path / "words.md"
    song = str(repo_root / "data" / "songs" / "happy_sunshine.wav")
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "song.mp3").write_bytes(b"\xff\xfb\x90\x00" * 64)
    assert _lyrics_argument("Hallelujah!") == "Hallelujah!"  # one word is lyrics unless it reads as a path
    assert _lyrics_argument("~ la la la ~") == "~ la la la ~"  # a tilde, not a home folder
    for blank in ("", "   "):
        with pytest.raises(ValueError, match="--lyrics is empty"):
            _lyrics_argument(blank)
    for given, message in ((tmp_path / "nope.txt", "does not exist"), (tmp_path / "empty.txt", "are empty"),
                           (tmp_path / "song.mp3", "not UTF-8 text"),
                           (tmp_path / "happy.tx", "does not exist"),  # a .txt mistyped: once read as the lyrics
                           (tmp_path / "lyrics" / "happy", "does not exist")):
        assert main(["manipulate", song, "--profile", "tiny", "--lyrics", str(given), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_manipulate_refuses_a_silent_song(capsys, tmp_path):
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "silence.wav", np.zeros(44100, np.float32), 44100)
    assert main(["manipulate", str(tmp_path / "silence.wav"), "--profile", "tiny", "--out", str(tmp_path / "o")]) == 2
    assert "is silent" in capsys.readouterr().err


def test_doctor_is_short_grouped_and_its_commands_work_from_the_repository_root(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("EMOSTYLE_HOME", str(tmp_path))  # an empty cache: every profile lacks files
    monkeypatch.delenv("EMOSTYLE_MIRROR", raising=False)
    monkeypatch.setitem(sys.modules, "gdown", None)  # an optional package that is not installed
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) < 20
    for profile in ("paper-lhq", "paper-ffhq", "offline"):
        block = out.split(f"-- {profile} profile lacks ")[1].split("\n--")[0]  # its line and continuation lines
        assert "`bash kit.sh emostyle weights fetch " in block
    assert "bash kit.sh emostyle weights fetch --profile offline" in out
    # once for each profile whose reproduce guides FFHQ faces (paper-lhq's datasets hold both), never twice in one
    assert out.count("stylegan2-ffhq-1024") == 2
    (gdown,) = [ln for ln in out.splitlines() if ln.startswith("-- optional gdown")]
    assert "-m pip install -e '.[gdrive]'`" in gdown
    # pip through this interpreter: works without an activated virtual environment
    assert out.count("pip install") == out.count(" -m pip install") > 0


def test_manipulate_lists_every_missing_file_and_package_before_loading(capsys, tmp_path, monkeypatch):
    import numpy as np
    import soundfile as sf

    monkeypatch.setenv("EMOSTYLE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EMOSTYLE_MIRROR", raising=False)
    monkeypatch.setitem(sys.modules, "whisper_at", None)  # the paper extra is not installed
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    sf.write(tmp_path / "song.wav", 0.3 * np.sin(np.arange(44100) / 10).astype(np.float32), 44100)
    begun = time.perf_counter()
    assert main(["manipulate", str(tmp_path / "song.wav"), "--profile", "paper-lhq", "--out", str(tmp_path / "o")]) == 2
    assert time.perf_counter() - begun < 10  # no model was loaded
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for part in ("whisper_at, tiktoken", "-m pip install -e '.[paper]'", "--no-deps whisper-at==0.5",
                 "stylegan2-lhq-256", "clip-vit-b-32", "whisper-at-large-v1-at-head", "bash kit.sh emostyle weights fetch",
                 "gru-ebs-generator", "weights list --long"):
        assert part in err, part
    assert not (tmp_path / "o").exists()
    # given lyrics need no speech recogniser
    assert main(["manipulate", str(tmp_path / "song.wav"), "--profile", "paper-lhq", "--lyrics", "la la",
                 "--out", str(tmp_path / "o")]) == 2
    assert "whisper" not in capsys.readouterr().err


@pytest.mark.parametrize("args, match", [
    (["--seed", "-1"], "seed must be >= 0; got -1"),
    (["--set", "seed=4294967296"], "seed must be <= 4294967295"),
    (["--out", "{file}"], "is a file, not a folder"),
])
def test_bad_values_fail_at_once_naming_the_option(capsys, tmp_path, args, match):
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "song.wav", 0.3 * np.sin(np.arange(44100) / 10).astype(np.float32), 44100)
    (tmp_path / "file").write_text("x")
    args = [a.replace("{file}", str(tmp_path / "file")) for a in args]
    assert main(["manipulate", str(tmp_path / "song.wav"), "--profile", "tiny", *args]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1


def test_a_folder_as_the_song_is_named_so(capsys, tmp_path):
    assert main(["manipulate", str(tmp_path), "--profile", "tiny", "--out", str(tmp_path / "o")]) == 2
    assert "is a folder, not an audio file" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", bytes(range(256)) * 40, b"these are lyrics, not audio\n" * 20])
def test_unreadable_songs_give_only_the_real_error(tmp_path, capsys, content):
    """No librosa notices (audioread fallback, deprecation) before the one-line error."""
    import warnings

    (tmp_path / "song.wav").write_bytes(content)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["manipulate", str(tmp_path / "song.wav"), "--profile", "tiny", "--out", str(tmp_path / "o")]) == 2
    assert [str(w.message) for w in caught] == []
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and ("is empty" in err or "cannot decode" in err)


@pytest.mark.parametrize("command", ["weights", "doctor", "config", "reproduce", "manipulate", "sweep"])
def test_every_command_has_help(command):
    run = subprocess.run([sys.executable, "-m", "emostyle", command, "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "usage: emostyle" in run.stdout


def test_manipulate_names_every_file_it_wrote(capsys, tmp_path, repo_root):
    """The summary's first line listed four images of a hand-kept list, not the PDFs and latents
    the folder also holds (a new user's trial)."""
    out = tmp_path / "o"
    assert main(["manipulate", str(repo_root / "data/songs/sad_rain.wav"), "--profile", "tiny", "--out", str(out),
                 "--set", "guidance.steps=2"]) == 0
    wrote = capsys.readouterr().out.splitlines()[0]
    assert wrote == f"wrote {out}: " + ", ".join(sorted(p.name + "/" * p.is_dir() for p in out.iterdir()))
    assert all(name in wrote for name in ("before.png", "after.png", "loss.pdf", "latents.pt", "music/"))


def test_ctrl_c_during_a_command_is_one_line_and_leaves_nothing(capsys, tmp_path, repo_root, monkeypatch):
    """Ctrl-C while `manipulate` guides: exit status 130, one line instead of a traceback, and neither
    the output folder nor its staging folder left behind. The interrupt is raised where a signal would
    land, inside the guidance (a real SIGINT in a subprocess depended on when it arrived)."""
    import emostyle.pipeline as pipeline

    def interrupted(*args, **kwargs):
        assert list(tmp_path.glob(".o.partial-*"))  # mid-run: its staging folder exists
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.Pipeline, "guide", interrupted)
    out = tmp_path / "o"
    assert main(["manipulate", str(repo_root / "data/songs/sad_rain.wav"), "--profile", "tiny", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "emostyle manipulate: interrupted; nothing half-done was put in place"
    assert not out.exists() and not list(tmp_path.glob(".o.partial-*"))


@pytest.mark.parametrize("where", ["before the loop's first step", "in the bar's __init__, after it drew"])
def test_ctrl_c_clears_an_open_progress_bar_before_the_one_line(capsys, tmp_path, repo_root, monkeypatch, where):
    """A Ctrl-C that lands after the guidance's bar is drawn and before its loop steps leaves the bar
    open: the one line was printed on the bar's line ("guidance:   0%| ... emostyle manipulate:
    interrupted"), which the shell-loop test below met on a loaded machine. It most often lands in the
    bar's __init__ right after its first drawing, where tqdm has not yet recorded the bar's start and
    its close() clears nothing."""
    from tqdm.auto import tqdm

    import emostyle.pipeline as pipeline

    left_open = []

    def interrupted(*args, **kwargs):
        bar = tqdm(range(60), desc="guidance", leave=False)  # drawn, and held as a traceback holds it
        if where.startswith("in the bar's __init__"):
            del bar.last_print_t  # the state an __init__ interrupted after its first drawing leaves
        left_open.append(bar)
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.Pipeline, "guide", interrupted)
    song = str(repo_root / "data/songs/sad_rain.wav")
    assert main(["manipulate", song, "--profile", "tiny", "--out", str(tmp_path / "o")]) == 130
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert "emostyle manipulate: interrupted; nothing half-done was put in place" in lines
    assert left_open and left_open[0].disable is True  # closed (a closed bar is disabled)


def test_ctrl_c_while_the_command_starts_waits_for_torchs_imports_and_is_one_line(capsys, monkeypatch):
    """Building the parser imports torch, whose C code imports numpy and clears any error raised
    meanwhile: a Ctrl-C there was lost or left numpy half imported. It now takes effect once the
    imports are done, as one line."""
    import signal

    import emostyle.cli as cli

    build_parser, finished = cli.build_parser, []

    def importing_torch():
        signal.raise_signal(signal.SIGINT)  # Ctrl-C (a handler runs before raise_signal returns)
        finished.append("imports")  # ... and the imports go on to their end
        return build_parser()

    monkeypatch.setattr(cli, "build_parser", importing_torch)
    # As in a terminal: a shell's background job (`pytest &`) starts with Ctrl-C ignored, and the command leaves it so.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert main(["manipulate", "song.wav"]) == 130
        assert finished == ["imports"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert capsys.readouterr().err == "emostyle: interrupted; nothing half-done was put in place\n"


def test_ctrl_c_stops_a_shell_loop_that_runs_the_command(tmp_path, repo_root):
    """A terminal's Ctrl-C reaches the shell and the command; a shell goes on after a child that
    handled it and exited with 130, so `for song in *.wav; do emostyle manipulate ...; done` went on
    to the next song. The command now ends by SIGINT itself after its one line, and the loop stops."""
    import os
    import signal

    command = (f"{sys.executable} -m emostyle manipulate {repo_root / 'data/songs/sad_rain.wav'} --profile tiny "
               f"--set guidance.steps=100000 --out {tmp_path / 'o'}")
    loop = subprocess.Popen(["bash", "-c", f"for song in 1 2; do {command}; echo next-song; done"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            # the shell of a terminal hears Ctrl-C, even where pytest runs as a background job
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    heard, deadline = b"", time.time() + 180
    while b"guidance" not in heard and time.time() < deadline:  # the first song is being guided
        chunk = os.read(loop.stderr.fileno(), 4096)
        if not chunk:
            break
        heard += chunk
    os.killpg(loop.pid, signal.SIGINT)  # as a terminal sends it: to the shell and the command
    try:
        out, err = loop.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(loop.pid, signal.SIGKILL)
        pytest.fail("the loop went on to the next song after Ctrl-C")
    assert b"next-song" not in out and loop.returncode in (-signal.SIGINT, 130), (out, loop.returncode)
    lines = [line for line in (heard + err).decode().replace("\r", "\n").splitlines() if "interrupted" in line]
    assert lines == ["emostyle manipulate: interrupted; nothing half-done was put in place"]
    assert "Traceback" not in err.decode() and not (tmp_path / "o").exists()


def test_a_device_the_machine_lacks_is_a_one_line_error_before_any_work(capsys, tmp_path, repo_root):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    song = str(repo_root / "data/songs/sad_rain.wav")
    assert main(["manipulate", song, "--profile", "tiny", "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "device cuda:" in err and "--device cpu" in err and not (tmp_path / "o").exists()
    assert main(["reproduce", "--only", "retrieval", "--device", "cuda", "--out", str(tmp_path / "f"),
                 "--run-dir", str(tmp_path / "runs")]) == 2
    assert "device cuda:" in capsys.readouterr().err and not (tmp_path / "runs").exists()


def _hum(path):
    """A 3 s, 220 Hz tone: a song in which no lyrics are heard."""
    import numpy as np
    import soundfile as sf

    t = np.arange(3 * 16000) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)


def test_manipulate_reads_the_lyrics_beside_the_song_where_none_are_heard(capsys, tmp_path):
    """As `reproduce --songs` does: the song is transcribed, and the .txt of its name stands in where
    no lyrics are read from it (manipulate refused such a song, asking for lyrics it had beside it)."""
    _hum(tmp_path / "hum.wav")
    args = ["manipulate", str(tmp_path / "hum.wav"), "--profile", "tiny", "--set", "guidance.steps=2"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 2  # no lyrics heard, none beside it
    assert "--lyrics" in capsys.readouterr().err
    (tmp_path / "hum.txt").write_text("we laugh and sing in the sun\n")
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "  lyrics (from hum.txt: none were read from the song): 'we laugh and sing in the sun'" in out.splitlines()
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["lyrics"]["source"] == "label" and manifest["polarity"]["label"] == "positive"


def test_manipulate_says_it_transcribed_a_song_that_has_a_txt_beside_it(capsys, tmp_path, repo_root):
    """A new user's .txt beside a song that Whisper heard was not read, and nothing said so."""
    import shutil

    shutil.copy(repo_root / "data/songs/sad_rain.wav", tmp_path / "rain.wav")
    (tmp_path / "rain.txt").write_text("Cold rain is falling and I cry alone\n")
    assert main(["manipulate", str(tmp_path / "rain.wav"), "--profile", "tiny", "--set", "guidance.steps=2",
                 "--out", str(tmp_path / "o")]) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  lyrics")]
    # the path as the shell takes it, wherever the command was run from
    assert line.startswith(f"  lyrics (heard by faster-whisper, as the paper transcribes; --lyrics {tmp_path / 'rain.txt'} "
                           "reads the .txt beside the song instead): 'Cold rain")
    # Without a .txt the summary still says the lyrics were heard (a new user found only the manifest said so).
    (tmp_path / "rain.txt").unlink()
    assert main(["manipulate", str(tmp_path / "rain.wav"), "--profile", "tiny", "--set", "guidance.steps=2",
                 "--out", str(tmp_path / "o")]) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  lyrics")]
    assert line.startswith("  lyrics (heard by faster-whisper, as the paper transcribes): 'Cold rain")


def test_manipulate_summary_shortens_a_whole_songs_lyrics(capsys, tmp_path):
    """A 3.5-minute song printed its 240 words of lyrics into the summary's second line."""
    _hum(tmp_path / "hum.wav")
    verse = "there is an empty chair beside the window where you used to sit and smile"
    assert main(["manipulate", str(tmp_path / "hum.wav"), "--profile", "tiny", "--set", "guidance.steps=2",
                 "--lyrics", " ".join([verse] * 12), "--out", str(tmp_path / "o")]) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  lyrics")]
    assert line.startswith(f"  lyrics (given with --lyrics): '{verse} ")
    assert line.endswith(" ...' (180 words, all in manifest.json)")
    assert len(line) <= len("  lyrics (given with --lyrics): ''") + 200 + len(" (180 words, all in manifest.json)")


def test_manipulate_summary_says_which_way_the_judge_saw_the_image_move():
    """A new user had to work out that -0.18 -> -0.29 beside a resolution of 0.08 meant "sadder, the
    lyrics' way"; the summary now says it, and "no move beyond that resolution" where the change is no larger."""
    from emostyle.cli import _judged_move

    def move(before, after, emotion, resolution=0.08):
        return _judged_move({"before": before, "after": after, "resolution": resolution}, emotion)

    assert move(-0.18, -0.29, "negative") == ": sadder, the lyrics' way"
    assert move(-0.18, -0.29, "positive") == ": sadder, against the lyrics' way"
    assert move(0.10, 0.30, "positive") == ": happier, the lyrics' way"
    assert move(0.10, 0.18, "positive") == ": no move beyond that resolution"  # exactly the resolution is no move
    assert move(0.10, 0.30, "neutral") == ": happier"
    assert move(None, 0.30, "positive") == "" and move(0.1, 0.3, "positive", resolution=None) == ""
    # A photo the judge reads at the top of its scale: no pixel shift moves it, nor the guidance
    assert "saturated" in move(0.81, 0.81, "positive", resolution=0.0)
    assert "saturated" not in move(0.10, 0.18, "positive")
    # The colour judge averages every pixel: a fine judge, not a saturated one (it printed as "0.00: ... saturated")
    assert move(-0.36, -0.53, "negative", resolution=0.00044) == ": sadder, the lyrics' way"
    assert "saturated" not in move(-0.36, -0.3602, "negative", resolution=0.00044)
    from emostyle.cli import _resolution_text

    assert (_resolution_text(0.00044), _resolution_text(0.083), _resolution_text(0.0)) == ("0.0004", "0.08", "0.00")


def test_progress_bars_in_a_log_are_redrawn_seldom(tmp_path, repo_root):
    """Piped into a log, every redraw of a bar (ten a second) was a line of it: a new user's log of one
    `manipulate` held 120 lines of the guidance's bar. Outside a terminal a bar is redrawn every 10 s,
    and ends as one complete line: cleared, as in a terminal, it left its first drawing's fragment
    ("retrieval: 0%| ...") in front of the next line."""
    command = [sys.executable, "-m", "emostyle", "manipulate", str(repo_root / "data/songs/sad_rain.wav"),
               "--profile", "tiny", "--set", "guidance.steps=300", "--out", str(tmp_path / "o")]
    begun = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - begun
    assert run.returncode == 0, run.stderr
    redraws = [line for line in run.stderr.replace("\r", "\n").splitlines() if line.startswith("guidance:")]
    assert 2 <= len(redraws) <= 2 + seconds / 10, redraws  # its first drawing and its last, at most one per 10 s between
    assert "guidance: 100%" in redraws[-1] and "300/300" in redraws[-1], redraws
    # A cleared bar left a line of spaces behind it (text mode reads its carriage returns as line ends)
    assert not [line for line in run.stderr.splitlines() if line and not line.strip()], run.stderr


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_during_a_command_leaves_nothing(tmp_path, repo_root, signum):
    """`timeout`, a scheduler or CI cancelling sends SIGTERM, a closed terminal SIGHUP: Python's
    default ends the process at once, and a half-written staging folder stayed beside --out. They
    now stop the command as Ctrl-C does: one line, nothing left, and the process ends by the signal."""
    import os
    import select
    import signal

    signum = getattr(signal, signum)
    command = [sys.executable, "-m", "emostyle", "manipulate", str(repo_root / "data/songs/sad_rain.wav"),
               "--profile", "tiny", "--set", "guidance.steps=100000", "--out", str(tmp_path / "o")]
    # as a terminal's shell starts it: where pytest runs under nohup, SIGHUP is ignored and stays so
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL))
    heard, deadline = b"", time.time() + 180
    while b"guidance" not in heard and time.time() < deadline:
        if select.select([run.stderr], [], [], 5)[0]:  # never blocked past the deadline by a silent process
            chunk = os.read(run.stderr.fileno(), 4096)
            if not chunk:
                break
            heard += chunk
    assert list(tmp_path.glob(".o.partial-*")), heard.decode()  # mid-run: its staging folder exists
    run.send_signal(signum)
    try:
        _, err = run.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        run.kill()
        pytest.fail(f"{signal.Signals(signum).name} did not stop the command")
    assert run.returncode == -signum, run.returncode
    lines = [line for line in (heard + err).decode().replace("\r", "\n").splitlines() if "stopped" in line]
    assert lines == [f"emostyle manipulate: stopped by {signal.Signals(signum).name}; nothing half-done was put in place"]
    assert "Traceback" not in err.decode()
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.*"))


@pytest.mark.parametrize("args, match", [
    (["manipulate", "song.wav", "--method", "emostlye"], "argument --method: invalid choice: 'emostlye'"),
    (["manipulate", "song.wav", "--profile", "ofline"], "argument --profile: invalid choice: 'ofline'"),
    (["manipulate"], "the following arguments are required: song"),
])
def test_a_mistyped_option_is_one_line(capsys, args, match):
    """argparse printed its usage block, then the error: now one line, as every other error."""
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2 and match in err and len(err.strip().splitlines()) == 1, err
    assert "--help" in err


def test_a_folder_as_lyrics_and_no_names_to_fetch_are_one_line_errors(capsys, tmp_path):
    (tmp_path / "My Lyrics").mkdir()
    assert main(["manipulate", "song.wav", "--lyrics", str(tmp_path / "My Lyrics")]) == 2  # a space: still a path
    assert main(["manipulate", "song.wav", "--lyrics", str(tmp_path)]) == 2
    assert main(["weights", "fetch"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith(f"emostyle manipulate: error: --lyrics names a folder: {tmp_path / 'My Lyrics'} (")
    assert lines[1] == f"emostyle manipulate: error: --lyrics names a folder: {tmp_path} (give the lyrics " \
                       "themselves in quotes, or the path of a text file)"
    assert lines[2].startswith("emostyle weights: error: give entry names or --profile P") and len(lines) == 3


def test_manipulate_never_replaces_a_folder_that_holds_its_song(capsys, tmp_path, repo_root):
    """--out the songs folder with --force replaced the songs, the input among them, with the result."""
    import shutil

    songs = tmp_path / "my songs"
    songs.mkdir()
    shutil.copy(repo_root / "data/songs/sad_rain.wav", songs / "rain.wav")
    assert main(["manipulate", str(songs / "rain.wav"), "--profile", "tiny", "--out", str(songs), "--force"]) == 2
    err = capsys.readouterr().err
    assert "rain.wav, an input of this run" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in songs.iterdir()) == ["rain.wav"]


def test_manipulate_never_replaces_a_folder_that_holds_its_lyrics_file(capsys, tmp_path, repo_root):
    """--lyrics naming a file inside --out, with --force: the file was read, then deleted with the
    folder it lay in."""
    out = tmp_path / "result"
    out.mkdir()
    (out / "words.txt").write_text("we laugh and sing\n")
    song = str(repo_root / "data/songs/sad_rain.wav")
    argv = ["manipulate", song, "--profile", "tiny", "--lyrics", str(out / "words.txt"), "--out", str(out), "--force"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "words.txt, an input of this run" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["words.txt"]


def test_a_signal_the_process_ignores_stays_ignored(tmp_path, repo_root):
    """Under `nohup` SIGHUP is ignored, so that closing the terminal leaves a long run going: the
    command must not take it over (a first version of the SIGTERM handling did)."""
    import os
    import select
    import signal

    command = [sys.executable, "-m", "emostyle", "manipulate", str(repo_root / "data/songs/sad_rain.wav"),
               "--profile", "tiny", "--set", "guidance.steps=300", "--out", str(tmp_path / "o")]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))  # as nohup starts it
    heard, deadline = b"", time.time() + 180
    while b"guidance" not in heard and time.time() < deadline:
        if select.select([run.stderr], [], [], 5)[0]:
            chunk = os.read(run.stderr.fileno(), 4096)
            if not chunk:
                break
            heard += chunk
    run.send_signal(signal.SIGHUP)
    try:
        out, err = run.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        run.kill()
        pytest.fail("the run did not finish")
    assert run.returncode == 0, (heard + err).decode()[-2000:]
    assert (tmp_path / "o" / "manifest.json").exists()


def test_manipulate_says_how_the_audio_was_heard(capsys, tmp_path, monkeypatch):
    """The summary names what the audio reader heard (a sound and its classes, or music), from the
    manifest, and says nothing of it where the space reads no audio of its own."""
    from pathlib import Path

    import emostyle.pipeline

    out = tmp_path / "o"
    result = {"lyrics": {"text": "giggling", "source": "given", "backend": "given"},
              "polarity": {"label": "positive", "emotion": "positive", "score": 0.36, "backend": "vader"},
              "valence": {"judge": "a judge", "before": 0.1, "after": 0.3, "resolution": 0.01,
                          "in_guidance_space": {"before": 0.2, "after": 0.9, "targets": {"audio": 1.9}}},
              "audio": {"reader": "yamnet+musicnn+mode", "heard_as": "sound", "pad": [0.44, 0.18, 0.24],
                        "classes": [["Laughter", 0.39], ["Giggle", 0.22]]}}

    def fake(song, out, **kwargs):
        Path(out).mkdir(exist_ok=True)
        return result

    monkeypatch.setattr(emostyle.pipeline, "manipulate", fake)
    song = tmp_path / "giggling.wav"
    song.write_bytes(b"")
    assert main(["manipulate", str(song), "--lyrics", "giggling", "--out", str(out)]) == 0
    assert "the audio, heard as sound, speech and silence aside (Laughter 0.39, Giggle 0.22): pleasure +0.44" in capsys.readouterr().out
    result["audio"] = None
    assert main(["manipulate", str(song), "--lyrics", "giggling", "--out", str(out), "--force"]) == 0
    assert "heard as" not in capsys.readouterr().out


def test_manipulate_refuses_a_dataset_the_profile_lacks(capsys, tmp_path, repo_root):
    """Before anything of --out is looked at: a folder holding another file says so only after."""
    song = str(repo_root / "data/songs/sad_rain.wav")
    assert main(["manipulate", song, "--dataset", "lake", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'lake' is none of profile offline's datasets" in err[0], err
    assert not (tmp_path / "o").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["manipulate", song, "--dataset", "lake", "--out", str(tmp_path / "busy")]) == 2
    assert "'lake' is none of profile offline's datasets" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]


@pytest.mark.slow
def test_manipulate_edits_a_scene_of_the_offline_profile(capsys, tmp_path, repo_root):
    """`--dataset scenes`: the offline profile's LHQ-style scenes, as the figures run them; a sad song
    darkens the retrieved photo by the colour judge, and the summary names that judge."""
    song = repo_root / "data/songs/sad_rain.wav"
    out = tmp_path / "o"
    assert main(["manipulate", str(song), "--dataset", "scenes", "--lyrics", str(song.with_suffix(".txt")),
                 "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["config"]["domain"], manifest["config"]["generator"]["kind"]) == ("scene", "grader")
    assert manifest["dataset"] == "LHQ-style scenes"
    v = manifest["valence"]
    assert v["after"] < v["before"] - v["resolution"], v
    printed = capsys.readouterr().out
    assert "valence by the judge (colour emotion" in printed and "dataset: LHQ-style scenes of profile offline" in printed


@pytest.mark.slow
def test_a_scene_photos_manifest_is_strict_json(capsys, tmp_path, repo_root):
    """The photo grader starts from the photo itself, so its reconstruction is exact and its PSNR
    infinite: the manifest had `Infinity`, which is not JSON (jq and browsers refuse the file); it is
    null there, and the summary says "identical"."""
    import numpy as np
    from PIL import Image

    song, photo, out = repo_root / "data/songs/sad_rain.wav", tmp_path / "field.png", tmp_path / "o"
    ramp = np.linspace(40, 220, 96, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(ramp, (72, 1))] * 3, axis=-1)).save(photo)
    assert main(["manipulate", str(song), "--dataset", "scenes", "--image", str(photo), "--lyrics",
                 str(song.with_suffix(".txt")), "--out", str(out)]) == 0
    refuse = lambda constant: pytest.fail(f"manifest.json holds {constant}, which is not JSON")  # noqa: E731
    manifest = json.loads((out / "manifest.json").read_text(), parse_constant=refuse)
    assert manifest["inversion"]["error"] == {"mae_levels": 0.0, "psnr_db": None}
    assert "your photo: reconstruction error 0.0 levels, identical (" in capsys.readouterr().out
