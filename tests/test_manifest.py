"""Manifests: as readable as the outputs beside them, and every warning of a run recorded once."""

import json
import os
import subprocess
import sys
import warnings

import pytest

from emostyle.manifest import collected_warnings, write_json


def test_manifest_has_the_mode_of_the_other_outputs(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "manifest.json", {"a": 1})
        (tmp_path / "after.png").write_bytes(b"png")
    finally:
        os.umask(old)
    assert (tmp_path / "manifest.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "manifest.json").stat().st_mode & 0o777 == (tmp_path / "after.png").stat().st_mode & 0o777


def test_a_manifest_is_strict_json_with_null_where_a_number_is_not_finite(tmp_path):
    """jq and browsers refuse NaN and Infinity (RFC 8259): an unread judge (NaN, from numpy or
    torch too) and an exact reconstruction's PSNR (inf) are null."""
    import numpy as np
    import torch

    data = {"judge": float("nan"), "psnr_db": float("inf"), "low": -np.inf, "valences": torch.tensor([0.5, np.nan]),
            "mean": np.float32("nan"), "text": "NaN stays a word", "kept": [1, 2.5]}
    path = write_json(tmp_path / "manifest.json", data)
    refuse = lambda constant: pytest.fail(f"{constant} is not JSON")  # noqa: E731
    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "judge": None, "psnr_db": None, "low": None, "valences": [0.5, None], "mean": None,
        "text": "NaN stays a word", "kept": [1, 2.5]}


def test_each_warning_is_shown_once_and_recorded_as_it_comes(recwarn):
    def read_song():  # three stages re-read the same long song
        warnings.warn("song.wav lasts 412 s; only its first 300 s are used", UserWarning, stacklevel=2)

    with collected_warnings() as caught:
        read_song()
        assert caught == ["UserWarning: song.wav lasts 412 s; only its first 300 s are used"]
        read_song()
        read_song()
        warnings.warn("VADER reads English only", RuntimeWarning)
        warnings.warn("unclosed file <_io.BufferedReader>", ResourceWarning)  # the collector's, not the run's
    assert caught == ["UserWarning: song.wav lasts 412 s; only its first 300 s are used",
                      "RuntimeWarning: VADER reads English only"]
    assert [str(w.message) for w in recwarn] == ["song.wav lasts 412 s; only its first 300 s are used",
                                                 "VADER reads English only"]


def test_environment_records_torchs_thread_count():
    import torch

    from emostyle.manifest import environment

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert environment()["torch_threads"] == 1  # the thread count changes float sums, and results
        torch.set_num_threads(2)
        assert environment()["torch_threads"] == 2
    finally:
        torch.set_num_threads(threads)


def test_environment_records_the_cpu_kernels_that_ran():
    """Kernels chosen for the CPU's instruction set round differently (FINDINGS.md): the manifest names
    the CPU and the kernels torch and CTranslate2 run, as forced by their environment variables."""
    code = "import json; from emostyle.manifest import environment; e = environment(); print(json.dumps([e['cpu'], e['cpu_kernels']]))"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "CT2_FORCE_CPU_ISA": "GENERIC"}
    cpu, kernels = json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                             check=True).stdout)
    assert kernels == {"torch": "DEFAULT", "ctranslate2": "GENERIC"} and cpu
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "CT2_FORCE_CPU_ISA")}
    _, kernels = json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                           check=True).stdout)
    assert kernels["ctranslate2"] == "chosen for the CPU" and kernels["torch"] != ""
