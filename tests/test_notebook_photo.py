"""Notebook 06 (your photo and your song) runs through papermill on the offline profile, with a
few steps, and writes its comparison figures and results."""

import json

import numpy as np
import pytest
from PIL import Image

from emostyle import reproduce

NOTEBOOK = reproduce.Notebook("06_your_photo", ("photo",), ("your_photo_face_0", "your_photo_face_1",
                                                            "your_photo_scene_0", "your_photo_scene_1"))


@pytest.mark.slow
def test_your_photo_notebook(tmp_path, monkeypatch):
    pytest.importorskip("emostyle.judges.face", reason="the face landmarks (dlib) align the photo")
    monkeypatch.setattr(reproduce, "NOTEBOOKS", (*reproduce.NOTEBOOKS, NOTEBOOK))
    overrides = {"inversion.steps": 4, "inversion.starts": 2, "guidance.steps": 3}
    reproduce.reproduce("offline", only="photo", out=tmp_path / "figures", run_dir=tmp_path / "runs",
                        overrides=overrides, progress=False)
    for stem in NOTEBOOK.outputs:
        pixels = np.asarray(Image.open(tmp_path / "figures" / f"{stem}.png").convert("L"), dtype=float)
        assert min(pixels.shape) > 200 and pixels.std() > 10, stem
    results = json.loads((tmp_path / "runs" / "06_your_photo" / "results.json").read_text())
    assert set(results["face"]) == {"happy_sunshine", "sad_rain"} == set(results["scene"])
    for run in results["scene"].values():  # the grader redraws the photo exactly
        assert run["reconstruction_error"]["mae_levels"] == 0
    for run in results["face"].values():  # a 64 px DCGAN does not redraw a real face exactly, and says so
        assert 0 < run["reconstruction_error"]["mae_levels"] < 255
