"""The papermill runner: parameters injected, figures and manifest written, failures named."""

import json

import nbformat
import pytest

from emostyle import reproduce as runner
from emostyle.reproduce import NOTEBOOKS, Notebook, ReproduceError, check_parameters_cell, notebook_dir


def _notebook(path, body, parameters=True):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "x"\noverrides = {}\nfigures_dir = "."\nrun_dir = "."')
    if parameters:
        params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def fake_notebooks(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    monkeypatch.setattr(runner, "notebook_dir", lambda: folder)
    return folder


def test_runs_notebooks_with_injected_parameters_and_writes_a_manifest(fake_notebooks, tmp_path, monkeypatch):
    _notebook(fake_notebooks / "a.ipynb", "from pathlib import Path\n"
              "Path(figures_dir, 'a.txt').write_text(f'{profile} {overrides}')")
    monkeypatch.setattr(runner, "NOTEBOOKS", (Notebook("a", ("figa",), ("a",)),))
    out = tmp_path / "figs"
    manifest = runner.reproduce("tiny", out=out, run_dir=tmp_path / "run", overrides={"guidance.steps": 2},
                                progress=False)
    assert (out / "a.txt").read_text() == "tiny {'guidance.steps': 2}"
    assert (tmp_path / "run" / "a.ipynb").exists()
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["profile"] == "tiny" and saved["config"]["guidance"]["steps"] == 2
    assert set(saved["timings_s"]) == {"a"} and manifest["notebooks"] == ["a"]
    assert saved["environment"]["packages"]["torch"]


def test_a_failing_cell_names_the_notebook_and_the_error(fake_notebooks, tmp_path, monkeypatch):
    _notebook(fake_notebooks / "bad.ipynb", "raise ValueError('broken input')")
    monkeypatch.setattr(runner, "NOTEBOOKS", (Notebook("bad", ("b",), ()),))
    with pytest.raises(ReproduceError, match=r"notebook bad failed in cell .*ValueError: broken input"):
        runner.reproduce("tiny", out=tmp_path / "f", run_dir=tmp_path / "r", progress=False)


def test_a_notebook_without_parameters_cell_is_refused(tmp_path):
    _notebook(tmp_path / "n.ipynb", "1", parameters=False)
    with pytest.raises(ReproduceError, match="exactly one cell tagged 'parameters'"):
        check_parameters_cell(tmp_path / "n.ipynb")


def test_bad_profile_or_only_fails_before_running(tmp_path):
    with pytest.raises(ValueError, match="valid: "):
        runner.reproduce("tiny", only="fig9", out=tmp_path, run_dir=tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="unknown config key"):
        runner.reproduce("tiny", overrides={"guidance.nope": 1}, out=tmp_path, run_dir=tmp_path / "r", progress=False)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.name)
def test_committed_notebooks_have_one_parameters_cell_and_no_outputs(nb):
    path = notebook_dir() / f"{nb.name}.ipynb"
    check_parameters_cell(path)
    cells = nbformat.read(path, as_version=4).cells
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells if c.cell_type == "code")
