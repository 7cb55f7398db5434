"""Image grids read at page width: text sized for the page, wrapped or shrunk to its image, never overlapping."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from emostyle.figures import GRID_WIDTH, PAGE_HEIGHT, PAGE_WIDTH, file_stem, image_grid  # noqa: E402


@pytest.mark.parametrize("n_cols", [4, 10])
def test_image_grid_text_reads_at_page_width_and_never_overlaps(n_cols):
    """A grid as wide as Figure 4's (ten columns, two dataset groups) and a narrow one: the grid
    is at most `GRID_WIDTH` wide, every text reads at 6 points or more once the figure is shrunk
    to a page's width, and no caption, column label or group label runs into its neighbour's."""
    half = n_cols // 2
    rows = [[torch.zeros(3, 8, 8)] * n_cols for _ in range(3)]
    fig = image_grid(rows, row_labels=["FFHQ-style faces\nhappy_sunshine\npositive (+0.93)"] * 3,
                     col_labels=["EmoStyle w/o Music"] * n_cols, captions=[["judge +0.71\nspace +1.99"] * n_cols] * 3,
                     title="Figure 4: ablations of EmoStyle", note="profile offline · generator dcgan-faces " * 12,
                     groups=[("FFHQ-style faces", half), ("LHQ-style scenes", n_cols - half)])
    width = fig.get_size_inches()[0]
    assert width <= GRID_WIDTH + 1e-9
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
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
    assert file_stem("start_study_faces", "FFHQ-style faces") == "start_study_faces_ffhq-style_faces"
    assert file_stem("fig", "LHQ / scenes (128 px)") == "fig_lhq_scenes_128_px"
