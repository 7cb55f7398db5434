"""Every notebook runs through papermill on the offline profile (a few steps) and writes its
figures and tables; each file is checked to be real, not an empty placeholder. The run is on a
folder of "your" songs (`reproduce --songs`), one of them without lyrics, as a user brings them."""

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from emostyle import samples
from emostyle.reproduce import NOTEBOOKS, reproduce

TABLES = {"affective_music", "table1"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce")
    mine = root / "songs"
    mine.mkdir()
    for song in samples.songs():  # lonely_night without its lyrics: it is transcribed
        shutil.copy(song.path, mine / f"my_{song.path.name}")
        if song.name != "lonely_night":
            (mine / f"my_{song.name}.txt").write_text(song.lyrics)
    overrides = {"guidance.steps": 3, "retrieval.candidates": 3, "guidance.frame_every": 1}
    manifest = reproduce("offline", out=root / "figures", run_dir=root / "runs", overrides=overrides, progress=False,
                         songs=mine)
    return root, manifest


@pytest.mark.slow
def test_every_notebook_ran_and_is_in_the_manifest(run):
    root, manifest = run
    assert list(manifest["notebooks"]) == [nb.name for nb in NOTEBOOKS]
    assert {e["status"] for e in manifest["notebooks"].values()} == {"ran"} and not manifest["failed"]
    assert not manifest["not_made"]
    for nb in NOTEBOOKS:
        assert (root / "runs" / f"{nb.name}.ipynb").exists()
        results = json.loads((root / "runs" / nb.name / "results.json").read_text())
        assert results, nb.name


@pytest.mark.slow
def test_the_tables_of_songs_are_of_your_songs(run):
    root, manifest = run
    mine = [f"my_{s.name}" for s in samples.songs()]
    assert sorted(manifest["songs"]["files"]) == sorted([f"{n}.wav" for n in mine] + [
        f"{n}.txt" for n in mine if n != "my_lonely_night"])
    for table in ("affective_music", "start_study"):
        with open(root / "figures" / f"{table}.csv") as f:
            named = {row["song"] for row in csv.DictReader(f)} - {"all songs"}
        assert named == set(mine), table
    quickstart = json.loads((root / "runs" / "00_quickstart" / "quickstart" / "manifest.json").read_text())
    assert quickstart["song"].endswith(f"{mine[0]}.wav")


@pytest.mark.slow
def test_an_instrumental_read_by_its_txt_and_songs_that_all_read_one_way(tmp_path):
    """An instrumental is read by the .txt beside it (no speech to transcribe) in the quickstart and the
    music table; and notebook 02's try-this, which swaps in the words of a song of the other polarity,
    gets a line of the other feeling where every song reads one way (here two happy ones)."""
    import soundfile as sf

    mine = tmp_path / "songs"
    mine.mkdir()
    t = np.arange(4 * 22050) / 22050
    chords = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) / 3
    sf.write(mine / "a_tune.wav", (0.3 * chords).astype(np.float32), 22050)
    (mine / "a_tune.txt").write_text("What a happy sunny day, I love you so!")
    happy = next(s for s in samples.songs() if s.emotion == "positive")
    shutil.copy(happy.path, mine / happy.path.name)
    (mine / f"{happy.name}.txt").write_text(happy.lyrics)
    manifest = reproduce("offline", only="music,quickstart", out=tmp_path / "figures", run_dir=tmp_path / "runs",
                         progress=False, songs=mine, overrides={"guidance.steps": 3, "retrieval.candidates": 3})
    assert not manifest["failed"]
    music = json.loads((tmp_path / "runs" / "02_affective_music" / "results.json").read_text())
    assert music["a_tune"]["lyrics"] == "What a happy sunny day, I love you so!"
    assert music["try_swapped_lyrics"]["polarity"] == "negative"
    quickstart = json.loads((tmp_path / "runs" / "00_quickstart" / "quickstart" / "manifest.json").read_text())
    assert quickstart["song"].endswith("a_tune.wav") and quickstart["lyrics"]["source"] == "label"


@pytest.mark.slow
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.name)
def test_executed_notebooks_keep_their_figures_as_outputs(run, nb):
    """The notebooks papermill executed show their figures (inline PNGs), not only files on disk."""
    root, _ = run
    executed = json.loads((root / "runs" / f"{nb.name}.ipynb").read_text())
    pictures = [o for c in executed["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pictures) >= len([s for s in nb.outputs if s not in TABLES or s == "table1"]), nb.name


@pytest.mark.slow
@pytest.mark.parametrize("stem", [s for nb in NOTEBOOKS for s in nb.outputs])
def test_every_figure_is_a_real_picture(run, stem):
    root, _ = run
    # "stem_*": a figure per dataset (offline: two)
    pngs = sorted((root / "figures").glob(f"{stem[:-1]}*.png")) if stem.endswith("_*") else \
        [root / "figures" / f"{stem}.png"]
    assert len(pngs) == (2 if stem.endswith("_*") else 1)
    for png in pngs:
        assert png.with_suffix(".pdf").stat().st_size > 2000
        pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
        assert min(pixels.shape) > 200 and pixels.std() > 10  # not blank
    if stem in TABLES:
        for suffix in (".csv", ".md"):
            assert len((root / "figures" / f"{stem}{suffix}").read_text().splitlines()) >= 3


@pytest.mark.slow
def test_table1_names_its_scorers_and_methods(run):
    root, _ = run
    table = (root / "figures" / "table1.md").read_text()
    assert "brisque" in table and "lower is better" in table
    for method in ("input", "styleclip", "lee", "emostyle"):
        assert method in table
    assert "FFHQ-style faces" in table and "LHQ-style scenes" in table
    metrics = (root / "figures" / "metrics.md").read_text()
    for metric in ("align-audio", "latent-distance", "emotion-agreement", "identity", "face-distance"):
        assert metric in metrics


def test_figures_show_in_a_kernel_page():
    """Importing the kit's figures keeps the kernel's inline backend: plt.show() puts a PNG in the
    page (the kit once forced Agg on import and every notebook figure vanished)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import matplotlib.pyplot as plt\nfrom emostyle import figures\n"
        "fig = figures.loss_figure({'total': [[1.0], [0.5], [0.25]]})\nplt.show()")]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    kinds = [k for out in nb.cells[0].outputs for k in out.get("data", {})]
    assert "image/png" in kinds, nb.cells[0].outputs


def test_frames_are_labelled_by_the_updates_behind_them_and_losses_on_a_log_axis():
    import torch
    from emostyle import figures

    frames = [(0, torch.zeros(1, 3, 8, 8)), (30, torch.zeros(1, 3, 8, 8)), (60, torch.zeros(1, 3, 8, 8))]
    fig = figures.frames_figure(frames)
    assert [ax.get_title() for ax in fig.axes] == ["start", "step 30", "result\n(after 60 updates)"]
    many = [(10 * k, torch.full((1, 3, 8, 8), k / 10)) for k in range(11)]
    shown = figures.shown_frames(many, 4)
    fig = figures.frames_figure(many, max_frames=4, title="EmoStyle, step by step",
                                caption=[f"mean {float(images.mean()):.1f}" for _, images in shown])
    assert [ax.get_title() for ax in fig.axes] == ["start", "step 30", "step 70", "result\n(after 100 updates)"]
    assert [ax.get_xlabel() for ax in fig.axes] == ["mean 0.0", "mean 0.3", "mean 0.7", "mean 1.0"]
    assert fig._suptitle.get_text() == "EmoStyle, step by step"
    with pytest.raises(ValueError, match="^11 captions for the 4 frames shown"):  # one per frame taken: not shown
        figures.frames_figure(many, max_frames=4, caption=[f"mean {k / 10:.1f}" for k in range(11)])
    history = {"reg": [[5.0]] * 3, "audio": [[0.02], [0.01], [0.005]]}
    ax = figures.loss_figure(history).axes[0]
    assert ax.get_yscale() == "symlog"  # a regulariser of 5 no longer flattens a distance of 0.01
    # A song read alike by its branches: equal curves, told apart by their dashes; weights in the legend
    alike = {"audio": [[0.9]] * 3, "music": [[0.9]] * 3, "text": [[0.9]] * 3, "reg": [[5.0]] * 3, "total": [[0.9]] * 3}
    ax = figures.loss_figure(alike, weights={"audio": 0.6, "music": 0.2, "text": 0.2, "reg": 0.004}).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "audio \u00d70.6", "music \u00d70.2", "text \u00d70.2", "reg \u00d70.004", "total (weighted sum)"]
    assert len({str(line.get_linestyle()) for line in ax.lines[:3]}) == 3 and ax.lines[4].get_zorder() < 2
