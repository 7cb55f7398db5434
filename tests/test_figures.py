"""Image grids read at page width: text sized for the page, wrapped or shrunk to its image, never overlapping."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from emostyle import figures  # noqa: E402
from emostyle.figures import GRID_WIDTH, PAGE_HEIGHT, PAGE_WIDTH, file_stem, image_grid  # noqa: E402


@pytest.mark.parametrize("row_label", ["FFHQ-style faces\nhappy_sunshine\npositive (+0.93)",
                                       "sobbing\nneutral (+0.00)\naudio P -0.30 (Crying, sobbing)"])
@pytest.mark.parametrize("n_cols", [4, 8, 10])
def test_image_grid_text_reads_at_page_width_and_never_overlaps(n_cols, row_label):
    """A grid as wide as Figure 4's (ten columns, two dataset groups) and a narrow one, with row
    labels of Figure 4's and of Figure 3's (a sound, its polarity, what its audio read: six lines
    once wrapped to an image's height): the grid as saved (its labels included) is at most
    `GRID_WIDTH` wide, every text reads at 6 points or more once the figure is shrunk to a page's
    width, and no caption, column label or group label runs into its neighbour's."""
    half = n_cols // 2
    rows = [[torch.zeros(3, 8, 8)] * n_cols for _ in range(3)]
    fig = image_grid(rows, row_labels=[row_label] * 3,
                     col_labels=["EmoStyle w/o Music"] * n_cols, captions=[["judge +0.71\nspace +1.99"] * n_cols] * 3,
                     title="Figure 4: ablations of EmoStyle", note="profile offline · generator dcgan-faces " * 12,
                     groups=[("FFHQ-style faces", half), ("LHQ-style scenes", n_cols - half)])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width = fig.get_tightbbox(renderer).width  # inches, as savefig(bbox_inches="tight") writes it
    assert width <= GRID_WIDTH + 0.05, width  # the tight box's own padding: a few hundredths
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip() and t.get_visible()]
    assert min(t.get_fontsize() for t in texts) * min(1.0, PAGE_WIDTH / width) >= 6 - 1e-9

    def side_by_side(boxes):
        return all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:]))

    grid = [ax for ax in fig.axes if ax.images]
    top_row = [ax for ax in grid if ax.get_title()]
    assert len(top_row) == n_cols and side_by_side([ax.title.get_window_extent(renderer) for ax in top_row])
    for i in range(3):
        row = grid[i * n_cols:(i + 1) * n_cols]
        assert side_by_side([ax.xaxis.label.get_window_extent(renderer) for ax in row])
    groups = [t for t in fig.texts if t.get_text() in ("FFHQ-style faces", "LHQ-style scenes")]
    assert [t.get_text() for t in groups] == ["FFHQ-style faces", "LHQ-style scenes"]
    first, last = top_row[0].get_window_extent(renderer), top_row[half - 1].get_window_extent(renderer)
    centre = groups[0].get_window_extent(renderer)
    assert first.x0 <= (centre.x0 + centre.x1) / 2 <= last.x1 and side_by_side([t.get_window_extent(renderer) for t in groups])
    plt.close(fig)


@pytest.mark.parametrize("n_rows, n_cols", [(4, 8), (4, 10), (4, 6)])
def test_the_kits_image_grids_fit_a_page(n_rows, n_cols):
    """Figures 2 and 3 (four songs or sounds, faces and scenes side by side), Figure 4 and a start
    study's faces (four songs, three before/after pairs), shrunk to the page's width, fit its height."""
    rows = [[torch.zeros(3, 8, 8)] * n_cols for _ in range(n_rows)]
    fig = image_grid(rows, row_labels=["happy_sunshine\npositive (+0.93)"] * n_rows, col_labels=["Lee et al."] * n_cols,
                     captions=[["judge +0.71\nlowest: -0.20 against"] * n_cols] * n_rows, title="Figure 2: songs",
                     note="profile offline · generator dcgan-faces " * 12, cell=1.3 if n_cols == 6 else 1.7,
                     groups=[("FFHQ-style faces", n_cols // 2), ("LHQ-style scenes", n_cols - n_cols // 2)])
    width, height = fig.get_size_inches()
    assert height * min(1.0, PAGE_WIDTH / width) <= PAGE_HEIGHT
    plt.close(fig)


def test_file_stems_are_plain_names():
    assert file_stem("start_study_examples", "FFHQ-style faces") == "start_study_examples_ffhq-style_faces"
    assert file_stem("fig", "LHQ / scenes (128 px)") == "fig_lhq_scenes_128_px"


def test_a_wrapped_title_keeps_a_reading_with_its_name_and_a_number_with_its_unit():
    """Wherever a run's title wraps, "audio P -0.21" and "64 px" stay on one line: a line that
    ends in "P" and a line that starts with "-0.21" read as two things."""
    title = "EmoStyle, step by step: lonely_night, lyrics negative (-0.91), audio P -0.21 (music), 64 px"
    for width in [x / 4 for x in range(8, 60)]:
        lines = figures.fit(title, width, 12).split("\n")
        assert not any(line.endswith((" P", "P\u00a0", "64")) for line in lines), (width, lines)
        assert not any(line.startswith(("-0.21", "px")) for line in lines), (width, lines)


def test_a_grid_with_a_long_title_and_a_claims_table_stays_within_its_width():
    """Figure 4's shape (ten columns and the claims table under them) and a start study's faces
    (a title longer than the grid is wide): saved with a tight box, neither grows wider than it
    was laid out, so the text keeps the size it was given for the page; every table cell holds
    its text."""
    from emostyle.figures import add_table

    claims = [dict(dataset="FFHQ-style faces", claim="w/o Text agrees with the polarity less often (beyond the "
                   "judge's resolution)", measure="agreement", n=3, emostyle="0.000", ablation="0.000",
                   interval="[-23.950, +22.741]", verdict="no clear difference (95% interval holds 0)")] * 6
    wide = image_grid([[torch.zeros(3, 8, 8)] * 10] * 4, row_labels=["happy_sunshine\npositive\n(+0.93)"] * 4,
                      col_labels=["EmoStyle w/o Audio"] * 10, captions=[["judge +0.71\nspace +1.99"] * 10] * 4,
                      title="Figure 4: ablations of EmoStyle", note="profile offline · generator dcgan-faces " * 12)
    add_table(wide, claims, list(claims[0]))
    long = image_grid([[torch.zeros(3, 8, 8)] * 6] * 4, row_labels=["sad_rain\nnegative"] * 4, cell=1.3,
                      captions=[["judge -0.01\nlowest: -0.19\nagainst"] * 6] * 4,
                      title="FFHQ-style faces: each song's lowest, median and highest shift toward it (judge), "
                            "before and after")
    for fig in (wide, long):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        tight = fig.get_tightbbox(renderer)
        assert tight.x0 >= -1e-6 and tight.x1 <= fig.get_size_inches()[0] + 1e-6, (tight, fig.get_size_inches())
    wide.canvas.draw()
    renderer = wide.canvas.get_renderer()
    table = [t for ax in wide.axes for t in ax.tables][0]
    for cell in table.get_celld().values():  # each text inside its own cell, as drawn
        text, box = cell.get_text().get_window_extent(renderer), cell.get_window_extent(renderer)
        assert box.x0 - 1e-6 <= text.x0 and text.x1 <= box.x1 + 1e-6, (cell.get_text().get_text(), text, box)
    assert table.get_celld()[0, 0].get_text().get_fontsize() * PAGE_WIDTH / wide.get_size_inches()[0] >= 6 - 1e-9
    plt.close(wide), plt.close(long)


def test_before_after_titles_name_the_lyrics_emotion_and_unread_valences(tmp_path):
    """A lyric inside VADER's neutral band is titled "neutral", not by the composer's binary label,
    and a valence the judge could not read (no face found) is "n/a", never a number."""
    import numpy as np
    from PIL import Image

    from emostyle.panel import before_after_figure

    for name in ("before.png", "after.png"):
        Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / name)
    manifest = {"song": "s/quiet.wav", "method": "emostyle", "inversion": None,
                "polarity": {"label": "positive", "emotion": "neutral", "score": 0.01},
                "valence": {"judge": "a judge", "before": None, "after": 0.3,
                            "in_guidance_space": {"before": -0.004, "after": 1.2}}}
    fig = before_after_figure(manifest, tmp_path)
    texts = [fig._suptitle.get_text()] + [ax.get_title() for ax in fig.axes]
    assert "lyrics neutral (+0.01)" in texts[0]
    assert "judge n/a · space -0.00" not in texts[1] and "judge n/a · space +0.00" in texts[1], texts
    assert "judge +0.30 · space +1.20" in texts[2], texts
    # The note says what "n/a" means where a caption reads it, and only there (a scene's judge
    # reads every image: its figures had said "n/a: it found no face" under every number)
    notes = lambda fig: " ".join(t.get_text() for t in fig.texts).replace("\n", " ")  # noqa: E731
    assert "n/a: not read (no judge, or it found no face)" in notes(fig)
    read = before_after_figure({**manifest, "valence": {**manifest["valence"], "before": -0.1}}, tmp_path)
    assert "judge" in notes(read) and "n/a" not in notes(read), notes(read)
    plt.close(read)
    plt.close(fig)
    assert "audio" not in texts[0]  # a space that reads no audio of its own (CLIP's) says nothing
    heard = {"reader": "yamnet+musicnn+mode", "heard_as": "sound", "pad": [0.44, 0.18, 0.24],
             "classes": [["Laughter", 0.39], ["Speech", 0.26]]}
    fig = before_after_figure({**manifest, "audio": heard}, tmp_path)
    assert fig._suptitle.get_text().endswith("lyrics neutral (+0.01) · audio P +0.44 (Laughter)")
    plt.close(fig)
    fig = before_after_figure({**manifest, "audio": {**heard, "heard_as": "music"}}, tmp_path)
    assert fig._suptitle.get_text().endswith("· audio P +0.44 (music)")
    plt.close(fig)


def test_a_runs_page_plays_what_it_finds_and_says_what_it_does_not(tmp_path, monkeypatch):
    """`show_run` from another folder than the run's: the manifest's relative song path is not
    found from there, which had failed inside IPython's Audio ("rate must be specified"); the page
    says so and shows the rest."""
    import IPython.display
    import numpy as np
    import soundfile as sf
    from PIL import Image

    from emostyle.panel import show_run

    for name in ("before.png", "after.png", "frames.png", "loss.png"):
        Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / name)
    sf.write(tmp_path / "music.wav", np.zeros(800, np.float32), 8000)
    manifest = {"song": "data/songs/not_here.wav", "method": "emostyle", "inversion": None,
                "lyrics": {"source": "speech", "text": "la"}, "music": {"renderer": "tinysoundfont",
                                                                       "wav": str(tmp_path / "music.wav")},
                "polarity": {"label": "negative", "emotion": "negative", "score": -0.5, "backend": "vader"},
                "valence": {"judge": "a judge", "before": -0.1, "after": -0.2,
                            "in_guidance_space": {"before": -1.0, "after": -1.2}}}
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objects: shown.extend(objects))
    monkeypatch.chdir(tmp_path)
    plt.close(show_run(manifest, tmp_path))
    kinds = [type(o).__name__ for o in shown]
    assert kinds.count("Audio") == 1, kinds  # the composed music, found
    texts = [o.data for o in shown if isinstance(o, IPython.display.Markdown)]
    assert any("no player: `data/songs/not_here.wav` is not found from here" in t for t in texts), texts


_NOTE = ("profile offline · generator dcgan-faces (64 px) · retrieval in affect-pad (face blendshapes) · guidance in "
         "affect-pad (face blendshapes) (audio read by musicnn+mode) · lyrics by faster-whisper unless given · polarity "
         "vader · music composer")


def _stages():
    parts = ["generator: dcgan-faces (64 px)", "joint space: affect-pad (face blendshapes)", "softmax over N candidates"]
    return [dict(title=t, section="3.1", equation="Eq. 1-2", module="emostyle.retrieval", parts=parts)
            for t in ("Retrieval", "Affective music", "Guidance")]


def _roll(velocity=90):
    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes.append(pretty_midi.Note(velocity, 60, 0.0, 1.0))
    midi.instruments.append(piano)
    return midi


def test_piano_rolls_share_one_labelled_colour_scale_beside_them():
    """The colour is the notes' loudness (a sad song's composed music is softer): each row had its
    own scale, and no legend said what the colour meant (a new user's trial)."""
    fig = figures.piano_roll([(_roll(40), "a sad song"), (_roll(120), "a happy song")], note=_NOTE)
    fig.canvas.draw()
    rolls = [ax for ax in fig.axes if ax.images and ax.get_ylabel() == "MIDI pitch"]
    bar, = (ax for ax in fig.axes if ax not in rolls)
    assert [ax.images[0].get_clim() for ax in rolls] == [(0, 120)] * 2
    assert "velocity" in bar.get_ylabel()
    renderer = fig.canvas.get_renderer()
    assert all(ax.get_tightbbox(renderer).x1 < bar.get_window_extent(renderer).x0 for ax in rolls)
    plt.close(fig)


@pytest.mark.parametrize("draw", [
    lambda: figures.loss_figure({"audio": [[1.0]] * 60, "reg": [[0.1 * i] for i in range(60)]}, "loss terms", note=_NOTE),
    lambda: figures.piano_roll([(_roll(), "happy_sunshine: positive (+0.93), 160 bpm")], note=_NOTE),
    lambda: figures.piano_roll([(_roll(), "a song"), (_roll(), "another")], note=_NOTE),
    lambda: figures.architecture_figure(_stages(), note=_NOTE),
], ids=["loss", "piano roll", "two piano rolls", "architecture"])
def test_the_profile_note_sits_below_everything_else(draw):
    """The profile note under a figure (three lines at page width) covered the loss figure's axis
    label and Figure 1's "A (audio guidance)" (a new user's trial): space for it was a fixed share.
    So it did under the piano rolls of two songs, which notebook 02 drew itself."""
    fig = draw()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    note = next(t for t in fig.texts if t.get_text().startswith("profile offline"))
    assert note.get_text().count("\n") >= 1  # wrapped: the case that overlapped
    top_of_note = note.get_window_extent(renderer).y1
    assert all(ax.get_tightbbox(renderer).y0 >= top_of_note for ax in fig.axes)
    plt.close(fig)


def test_figure_1_keeps_each_text_in_its_box_and_the_arrow_labels_out_of_them():
    """Figure 1 with the longest parts a profile gives: its "L, P, M" straddled a box's edge and a
    part's line ran past its box (a new user's trial); the output arrow had no shaft."""
    parts = [["generator: stylegan2-ffhq (1024 px)", "joint space: imagebind-huge (vision, audio, text)",
              "softmax over N candidates"],
             ["lyrics: whisper-at", "polarity: chatglm", "music: gru-ebs", "MIDI -> WAV renderer"],
             ["space: clip-vit-b-32 + soundclip-resnet18", "identity: arcface-ir-se50 (FFHQ faces)",
              "Adam, 7 emotion directions", "adaptive layer masking g"]]
    stages = [dict(title=t, section="3.1", equation="Eq. 1-2", module="emostyle.retrieval", parts=p)
              for t, p in zip(("Retrieval", "Affective music", "Guidance"), parts)]
    fig = figures.architecture_figure(stages, note=_NOTE)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = [p.get_window_extent(renderer) for p in ax.patches]
    for text in ax.texts:
        if not text.get_text():  # an arrow (an annotation without text)
            continue
        extent = text.get_window_extent(renderer)
        if text.get_style() == "italic":  # an arrow's label
            assert not any(extent.overlaps(b) for b in boxes), text.get_text()
        else:
            x, y = ax.transData.transform(text.get_position())
            box, = [b for b in boxes if b.contains(x, y)]
            assert box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0, text.get_text()
    arrows = [t.arrow_patch.get_window_extent(renderer) for t in ax.texts if getattr(t, "arrow_patch", None)]
    assert len(arrows) == 6 and all(max(a.width, a.height) >= 2.5 * min(a.width, a.height) for a in arrows
                                    if min(a.width, a.height) < 10)  # a level arrow: longer than its head is wide
    plt.close(fig)
