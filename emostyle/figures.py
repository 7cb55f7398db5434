"""The kit's pictures: image grids, loss curves, frame strips, piano rolls, Figure 1.

Every figure is saved as PNG and PDF with a stable name, and carries on its face a note
of the profile and the spaces that made it (a figure of the offline profile must never
pass for one of the paper's models).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Iterable, Sequence

# No backend is forced here: a kernel keeps its inline backend (figures show in the page), and a
# script without a display gets matplotlib's own fallback (Agg).
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

from .parts import to_uint8

__all__ = ["file_stem", "to_image", "save_image", "image_grid", "loss_figure", "loss_curves", "frames_figure",
           "shown_frames", "piano_roll", "architecture_figure", "add_table", "photo_figure", "save_figure", "stamp",
           "note_height", "fit", "page_points", "judge_note", "signed", "unread", "PAGE_WIDTH"]


def to_image(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8, exactly as saved."""
    return to_uint8(image[None])[0]


def save_image(image: torch.Tensor, path: str | Path, min_size: int = 256) -> Path:
    """Save (3, H, W) in [-1, 1] as PNG, upscaled by an integer factor (nearest) to >= min_size."""
    from PIL import Image

    array = to_image(image)
    factor = max(1, -(-min_size // array.shape[0]))
    if factor > 1:
        array = array.repeat(factor, axis=0).repeat(factor, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


PAGE_WIDTH = 7.0  # inches: a page's text width; a figure shrunk to it must stay readable
GRID_WIDTH = 9.5  # inches: the widest an image grid is drawn (wider, its text would not fit its images)
PAGE_HEIGHT = 9.0  # inches: a page's text height; a figure shrunk to the page's width must fit in it
_NOTE_PT = 7  # the note's font size at page width; a line takes about 1.25 of it
_CHAR_EM = 0.6  # a character's width in DejaVu Sans, in ems (digits: 0.64, lower case about 0.55)


def page_points(width_in: float, points: float) -> float:
    """The font size for a figure `width_in` inches wide that reads as `points` once the figure
    is shrunk to a page's width (`PAGE_WIDTH`); narrower figures keep `points`."""
    return points * max(1.0, width_in / PAGE_WIDTH)


def fit(text: str, width_in: float, points: float, least: int = 1) -> str:
    """`text` broken at spaces into lines that fit `width_in` inches at `points` (at least
    `least` characters a line; a word longer than a line stays whole)."""
    import textwrap

    chars = max(least, int(width_in * 72 / (points * _CHAR_EM)))
    return "\n".join(textwrap.fill(part, chars, break_long_words=False) for part in _unbroken(text).split("\n"))


def _unbroken(text: str) -> str:
    """`text` with no-break spaces where a wrapped line must not break: before a phrase separator,
    between a number and its unit, and between a one-letter name and its signed value ("P -0.21")."""
    text = re.sub(r"\b([A-Z]) ([+-]\d)", "\\1\u00a0\\2", text.replace(" · ", "\u00a0· "))
    return re.sub(r"(\d) (px|in|pt|s|min)\b", "\\1\u00a0\\2", text)


def unread(value) -> bool:
    """Whether a reading is missing: None or NaN (no judge, or a face judge that found no face)."""
    return value is None or bool(np.isnan(float(value)))


def signed(value) -> str:
    """A valence for a caption, "+0.27"; "n/a" where the reader could not read the image (`unread`)."""
    if unread(value):
        return "n/a"
    return f"{round(float(value), 2) + 0.0:+.2f}"  # + 0.0: no "-0.00"


def judge_note(judges: str, values: Iterable, space: bool = True) -> str:
    """The lines under figures whose captions read "judge" (and "space", unless `space` is False):
    what each number is, and what "n/a" means where one of the judge's captioned `values` is `unread`."""
    note = f"judge = valence read on the saved PNG by a model that did not guide it · {judges}" + \
        (" · n/a: not read (no judge, or it found no face)" if any(map(unread, values)) else "")
    return note + ("\nspace = valence as the guidance space, the guiding model, reads it (similarity to happy "
                   "minus sad: not the loss the guidance lowers, so it can dip as a face gains the song's emotion)"
                   if space else "")


def _note(fig: plt.Figure, note: str) -> tuple[str, float]:
    """`note` wrapped to the figure's width, and its font size."""
    width = fig.get_size_inches()[0]
    points = page_points(width, _NOTE_PT)
    return fit(note, width, points, least=40), points


def note_height(fig: plt.Figure, note: str | None) -> float:
    """The fraction of the figure's height that `stamp` needs for `note` (0 without one)."""
    if not note:
        return 0.0
    text, points = _note(fig, note)
    return ((text.count("\n") + 1) * points * 1.25 / 72 + 0.08) / fig.get_size_inches()[1]


def stamp(fig: plt.Figure, note: str | None) -> None:
    """The profile note, small, at the figure's bottom edge, wrapped to its width (reserve
    `note_height` below the axes so it covers nothing)."""
    if note:
        text, points = _note(fig, note)
        fig.text(0.5, 0.005, text, ha="center", va="bottom", fontsize=points, color="0.35")


def image_grid(rows: Sequence[Sequence[torch.Tensor]], row_labels: Sequence[str] = (),
               col_labels: Sequence[str] = (), captions: Sequence[Sequence[str]] | None = None,
               title: str | None = None, note: str | None = None, cell: float = 1.7,
               groups: Sequence[tuple[str, int]] = ()) -> plt.Figure:
    """A grid of images (rows x columns) with labels, per-image captions and a profile note;
    `groups`: (label, number of columns) spanning the columns from the left, above their labels.
    Images are `cell` inches wide, less where the columns would make the grid wider than
    `GRID_WIDTH`; the text is sized to read at page width and wrapped to its image's size
    (a caption whose lines, or a label whose words, do not fit shrinks, down to 6 points at page
    width)."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)

    def points(texts, size, parts):  # `size` at page width, less where the longest part would not fit a cell
        longest = max((len(part) for t in texts for part in parts(t)), default=1)
        return max(page_points(width, 6), min(page_points(width, size), cell * 72 / ((longest + 0.5) * _CHAR_EM)))

    def lines(texts, points):  # inches of the tallest of `texts`
        return max((t.count("\n") + 1 for t in texts if t), default=0) * points * 1.25 / 72

    # The row labels stand sideways left of the images, in as many lines as their wrapping takes:
    # their margin grows to hold them (a label beyond the figure's edge widened the saved file
    # past `GRID_WIDTH`, and so shrank every text on a page), and the images narrow to keep the width.
    left, wanted = 0.8, cell
    for attempt in range(3):  # narrower images wrap the labels into more lines: a few passes settle it
        cell = min(wanted, (GRID_WIDTH - left - 0.1) / n_cols)
        width = cell * n_cols + left + 0.1  # a margin on the right
        row_pt = points(row_labels, 8, str.split)  # words kept whole
        fitted = [fit(r, cell, row_pt) for r in row_labels]
        needed = lines(fitted, row_pt) + 0.12  # and matplotlib's pad between label and image
        if needed <= left or attempt == 2:
            break
        left = needed
    row_labels = fitted
    group_pt = page_points(width, 9)
    caption_pt = points([c for row in captions or [] for c in row], 7, lambda t: t.split("\n"))  # lines kept whole
    col_pt = points(col_labels, 8.5, str.split)
    captions = [[fit(c, cell, caption_pt) for c in row] for row in captions] if captions else None
    col_labels = [fit(c, cell, col_pt) for c in col_labels]

    # Laid out in inches, from the top: title, groups, column labels, then per row an image
    # (`cell` square less a gap) above its caption; the note below. Each part has the room its
    # text needs, so nothing overlaps however the fonts were sized.
    title_pt = page_points(width, 11)
    title = fit(title, width - 0.2, title_pt) if title else title  # a long title wraps, never widens the figure
    title_in = (title.count("\n") + 2) * title_pt / 72 if title else 0.1
    group_in = group_pt * 1.8 / 72 if groups else 0
    col_in = lines(col_labels, col_pt) + 8 / 72  # and the title's pad
    per_row = cell + lines([c for row in captions or [] for c in row], caption_pt) + 8 / 72  # and the label's pad
    height = title_in + group_in + col_in + n_rows * per_row
    fig = plt.figure(figsize=(width, height))
    height += note_height(fig, note) * height  # the note's lines, below
    fig.set_size_inches(width, height)
    gap = 0.06
    axes = [[fig.add_axes(((left + j * cell + gap / 2) / width,
                           (height - title_in - group_in - col_in - i * per_row - cell + gap / 2) / height,
                           (cell - gap) / width, (cell - gap) / height)) for j in range(n_cols)] for i in range(n_rows)]
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([]), ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(row) and row[j] is not None:
                ax.imshow(to_image(row[j]), interpolation="nearest")
            if captions and j < len(captions[i]) and captions[i][j]:
                ax.set_xlabel(captions[i][j], fontsize=caption_pt)
            if i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=col_pt)
            if j == 0 and i < len(row_labels):
                ax.set_ylabel(row_labels[i], fontsize=row_pt, rotation=90)
    if title:
        fig.suptitle(title, fontsize=title_pt, y=1 - 0.06 / height, va="top")
    rule, first = (height - title_in - group_in + 0.06) / height, 0
    for label, n in groups:  # a label and a rule over its columns
        x0, x1 = (left + first * cell) / width, (left + (first + n) * cell) / width
        fig.text((x0 + x1) / 2, rule + 0.04 / height, label, ha="center", va="bottom", fontsize=group_pt)
        fig.add_artist(plt.Line2D([x0 + gap / 2 / width, x1 - gap / 2 / width], [rule] * 2, color="0.3", lw=0.8))
        first += n
    stamp(fig, note)
    return fig


def loss_figure(history: dict[str, list[list[float]]], title: str = "guidance loss",
                note: str | None = None, weights: dict[str, float] | None = None) -> plt.Figure:
    """Loss terms per step (mean over the batch); step k is the loss of the image
    before the k-th update. The terms differ by orders of magnitude (the latent regulariser
    against cosine-like distances), so the axis is logarithmic above 0.01 and linear below.
    Each term is drawn as it is, unweighted; `weights` (term -> its weight in the total) names
    each one's weight in the legend. The total is dashed and underneath, and the guidance terms
    differ in their dashes, so that equal curves (a song read alike by its branches) show."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    dashes = iter(["-", (0, (5, 2)), ":", "-."])
    for name, values in history.items():
        arr = np.asarray(values, dtype=float)
        curve = arr.mean(axis=1)
        weight = (weights or {}).get(name)
        label = ("total (weighted sum)" if name == "total" else
                 f"{name} \u00d7{weight:g}" if weight is not None else name)
        if name == "total":
            style = "--"
        elif name in ("id", "reg", "coarse"):  # the colours tell these apart; they seldom meet
            style = "-"
        else:
            style = next(dashes, "-")
        ax.plot(curve, label=label, lw=2.2 if name == "total" else 1.4, ls=style, zorder=1 if name == "total" else 2)
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # steps are whole
    ax.set_xlabel("step")
    ax.set_ylabel("loss term, unweighted (symlog)" if weights else "loss (symlog)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, note_height(fig, note), 1, 1))
    stamp(fig, note)
    return fig


def loss_curves(histories: dict[str, dict[str, list[list[float]]]], subtitle: str = "",
                note: str | None = None) -> plt.Figure:
    """The loss terms of several methods, three to a row (mean over the batch), log-scaled since
    the regulariser and the guidance terms differ by orders; a term keeps its colour in every
    panel, and one legend under the curves names them."""
    from .guidance import METHODS, TERMS

    present = {name for history in histories.values() for name in history}
    order = (*TERMS, "id", "reg", "coarse", "total")
    names = [n for n in order if n in present] + sorted(present - set(order))
    colours = {name: f"C{i}" for i, name in enumerate(names)}
    cols = min(3, len(histories))  # three to a row: a page wide
    n_rows = -(-len(histories) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(2.3 * cols + 0.4, 2.4 * n_rows + 0.9), squeeze=False)
    for ax in axes.flat[len(histories):]:
        ax.axis("off")
    for ax, (method, history) in zip(axes.flat, histories.items()):
        for name, values in history.items():  # the total dashed and underneath, so no term hides under it
            ax.plot(np.asarray(values, dtype=float).mean(axis=1), color=colours[name],
                    lw=2.2 if name == "total" else 1.2, ls="--" if name == "total" else "-",
                    zorder=1 if name == "total" else 2)
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_title(fit(f"{METHODS[method].title} ({subtitle})" if subtitle else METHODS[method].title, 2.2, 9),
                     fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=9)  # the log axis's exponents are set at 70 %: 6.3 pt, 6 at page width
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("loss (symlog)", fontsize=8)
    handles = [plt.Line2D([], [], color=colours[n], lw=2.2 if n == "total" else 1.2, ls="--" if n == "total" else "-",
                          label="total (weighted sum)" if n == "total" else n) for n in names]
    legend = fig.legend(handles=handles, loc="lower center", ncol=len(names) if cols == 3 else cols + 1, fontsize=8,
                        title=fit("a panel draws the terms its method weighs; equal curves lie on each other",
                                  fig.get_size_inches()[0], 8), title_fontsize=8, frameon=False,
                        bbox_to_anchor=(0.5, note_height(fig, note)))
    below = legend.get_window_extent(fig.canvas.get_renderer()).height / fig.dpi + 0.05  # inches
    fig.tight_layout(rect=(0, note_height(fig, note) + below / fig.get_size_inches()[1], 1, 1))
    stamp(fig, note)
    return fig


def add_table(fig: plt.Figure, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Print `rows` as a table under the figure's axes (e.g. Figure 4's check of the paper's
    claims), its text sized to read at page width and its widest columns wrapped to the figure's
    width; the figure grows by the table's height so nothing overlaps."""
    import textwrap

    if not rows:
        return
    w, h = fig.get_size_inches()
    points = page_points(w, 7.5)
    cells = [list(columns)] + [[str(r[c]) for c in columns] for r in rows]
    widths = [max(len(row[k]) for row in cells) for k in range(len(columns))]
    budget = int(0.96 * w * 72 / (points * 0.52)) - 2 * len(columns)  # characters across (mostly lower case), less padding
    while sum(widths) > budget and max(widths) > 12:  # narrow the widest column, no narrower than the next
        k = widths.index(max(widths))
        widths[k] = max(12, sorted(widths)[-2], widths[k] - (sum(widths) - budget)) if widths.count(widths[k]) == 1 \
            else widths[k] - 1
    cells = [[textwrap.fill(t, widths[k], break_long_words=False) for k, t in enumerate(row)] for row in cells]
    heights = [max(t.count("\n") + 1 for t in row) for row in cells]  # lines per row
    extra = sum(heights) * points * 1.5 / 72 + 0.3
    notes = [t for t in fig.texts if t.get_position()[1] < 0.02]  # the stamp stays at the bottom edge
    bottom = max((note_height(fig, t.get_text()) for t in notes), default=0.0) * h  # inches under the table
    for ax in fig.axes:  # keep the axes where they were, in inches, and add room below them
        x0, y0, bw, bh = ax.get_position().bounds
        ax.set_position([x0, (y0 * h + extra) / (h + extra), bw, bh * h / (h + extra)])
    for text in fig.texts:
        x, y = text.get_position()
        text.set_position((x, y * h / (h + extra) if text in notes else (y * h + extra) / (h + extra)))
    for line in fig.artists:  # rules drawn in the figure's coordinates (an image grid's groups)
        if isinstance(line, matplotlib.lines.Line2D):
            line.set_ydata([(y * h + extra) / (h + extra) for y in line.get_ydata()])
    fig.set_size_inches(w, h + extra)
    ax = fig.add_axes([0.02, (bottom + 0.1) / (h + extra), 0.96, (extra - 0.2) / (h + extra)])
    ax.axis("off")
    table = ax.table(cellText=cells[1:], colLabels=cells[0], loc="center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(points)
    # Columns as wide as their widest wrapped text as drawn, plus an em and the cell's padding on both
    # sides (the padding is a fraction of the cell: alone it leaves a one-letter column's text on its
    # borders); where they add up to more than the table's width, the text shrinks (no smaller than
    # 6 points at page width) rather than spill over its cell or past the figure.
    renderer = fig.canvas.get_renderer()
    need = [0.0] * len(columns)
    for (row, column), cell in table.get_celld().items():
        need[column] = max(need[column], cell.get_text().get_window_extent(renderer).width)
    em = renderer.points_to_pixels(points)
    need = [(n + em) / (1 - 2 * matplotlib.table.Cell.PAD) / (ax.get_window_extent(renderer).width) for n in need]
    if sum(need) > 1:
        table.set_fontsize(max(page_points(w, 6), points / sum(need)))
    for (row, column), cell in table.get_celld().items():
        cell.set_width(need[column] / sum(need))
        cell.set_height(heights[row] / sum(heights))
        if row > 0 and "DIFFERS" in cell.get_text().get_text():
            cell.get_text().set_color("#b00020")


MAX_FRAMES = 8  # a strip of frames fits a page at this many


def shown_frames(frames: list[tuple[int, torch.Tensor]], max_frames: int = MAX_FRAMES) -> list[tuple[int, torch.Tensor]]:
    """The frames a strip shows: all of them, or `max_frames` evenly spaced, the first and last among them."""
    if len(frames) <= max_frames:
        return list(frames)
    return [frames[k] for k in np.linspace(0, len(frames) - 1, max_frames).round().astype(int)]


def frames_figure(frames: list[tuple[int, torch.Tensor]], item: int = 0, note: str | None = None,
                  max_frames: int = MAX_FRAMES, title: str | None = None,
                  caption: Sequence[str] | None = None) -> plt.Figure:
    """A strip of intermediate images of one item: the optimisation as it went (`shown_frames`). A
    frame taken at step k shows the image before the k-th update (the one whose loss is plotted at
    k); the last frame is the result, after all the updates. `caption`: a line under each frame
    shown (the judge's reading of `item`, so that the emotion is seen to move)."""
    frames = shown_frames(frames, max_frames)
    if caption is not None and len(caption) != len(frames):
        raise ValueError(f"{len(caption)} captions for the {len(frames)} frames shown (shown_frames)")
    last = len(frames) - 1
    labels = [f"result\n(after {s} updates)" if k == last else "start" if s == 0 else f"step {s}"
              for k, (s, _) in enumerate(frames)]
    images = [f[item] for _, f in frames]
    return image_grid([images], col_labels=labels, captions=[list(caption)] if caption is not None else None,
                      title=title, note=note)


def piano_roll(rolls: Sequence[tuple], note: str | None = None, fs: int = 50) -> plt.Figure:
    """Piano rolls, pitch against time, one row per (pretty_midi.PrettyMIDI, title) in `rolls`
    (all of a MIDI's instruments), over one pitch range and one colour scale of velocity, so that
    rows compare (a happy song's melody above a sad one's, and louder)."""
    grids = [midi.get_piano_roll(fs=fs) for midi, _ in rolls]
    pitched = np.nonzero(sum(g.sum(axis=1) for g in grids))[0]
    low, high = (pitched.min() - 2, pitched.max() + 3) if len(pitched) else (48, 84)
    loudest = max((g.max() for g in grids), default=0) or 1  # one colour scale, so that rows compare
    fig, axes = plt.subplots(len(rolls), 1, figsize=(8, 0.8 + 2.0 * len(rolls)), squeeze=False)
    for ax, grid, (_, title) in zip(axes[:, 0], grids, rolls):
        shown = ax.imshow(grid[low:high], aspect="auto", origin="lower", cmap="magma", vmin=0, vmax=loudest,
                          extent=(0, max(grid.shape[1], 1) / fs, low, high), interpolation="nearest")
        ax.set_ylabel("MIDI pitch")
        ax.set_title(title, fontsize=10)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout(rect=(0, note_height(fig, note), 0.9, 1))
    bar = fig.add_axes((0.91, axes[-1, 0].get_position().y0, 0.015, axes[0, 0].get_position().y1
                        - axes[-1, 0].get_position().y0))
    fig.colorbar(shown, cax=bar).set_label("MIDI velocity", fontsize=9)
    stamp(fig, note)
    return fig


def architecture_figure(stages: Sequence[dict], title: str = "EmoStyle: the pipeline of the kit",
                        note: str | None = None) -> plt.Figure:
    """Figure 1, drawn from the kit's own stage list: the song feeds retrieval and affective
    music side by side; both feed the guidance, which outputs the manipulated image."""
    by_title = {s["title"]: s for s in stages}
    fig, ax = plt.subplots(figsize=(8.5, 6.2 * 8.5 / 13))  # drawn in units of a 13 x 6.2 board, shown a page wide
    width, height = fig.get_size_inches()
    below = note_height(fig, note) * height  # the note's inches, added under the board, which keeps its size
    fig.set_size_inches(width, height + below)
    fig.subplots_adjust(bottom=(0.05 * height + below) / (height + below), top=1 - 0.12 * height / (height + below))
    ax.set_xlim(0, 13)
    ax.set_ylim(0, 6.2)
    ax.axis("off")
    unit_pt = ax.get_position().height * (height + below) * 72 / 6.2  # points per board unit, upright

    def box(x, y, w, h, colour, stage=None, text=None):
        ax.add_patch(matplotlib.patches.FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.06", fc=colour, ec="0.3"))
        if stage is None:
            ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=10, weight="bold")
            return
        ax.text(x + w / 2, y + h - 0.2, stage["title"], ha="center", va="top", fontsize=12, weight="bold")
        ax.text(x + w / 2, y + h - 0.58, f"paper {stage['section']} · {stage['equation']}\n{stage['module']}",
                ha="center", va="top", fontsize=7.5, color="0.3")
        # wrapped to the box (about 9 characters of 8 pt text per board unit at this size), and
        # smaller where a profile's long part names take more lines than the box holds at 8 pt
        lines = [textwrap.fill(_unbroken(p), width=int((w - 0.3) * 9), initial_indent="• ", subsequent_indent="   ")
                 for p in stage["parts"]]
        rows = sum(line.count("\n") + 1 for line in lines)
        ax.text(x + 0.15, y + h - 1.05, "\n".join(lines), ha="left", va="top",
                fontsize=min(8.0, (h - 1.15) * unit_pt / (rows * 1.2)))  # 1.2: matplotlib's line spacing

    def arrow(a, b, label="", offset=(0.0, 0.0)):  # the label beside the arrow's middle, off its line
        ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="-|>", lw=1.6, color="0.2"))
        if label:
            ax.text((a[0] + b[0]) / 2 + offset[0], (a[1] + b[1]) / 2 + offset[1], label, ha="center", va="bottom",
                    fontsize=8.5, color="0.15", style="italic")

    box(0.2, 2.6, 1.5, 1.0, "#f2f2f2", text="song A")
    box(2.6, 3.5, 4.2, 2.2, "#dbe9f6", by_title["Retrieval"])
    box(2.6, 0.5, 4.2, 2.2, "#fde3cf", by_title["Affective music"])
    box(7.9, 1.5, 3.3, 3.0, "#dff2df", by_title["Guidance"])
    box(11.9, 2.6, 1.0, 1.0, "#f2f2f2", text="G(w_a)")
    arrow((1.7, 3.3), (2.55, 4.5), "A", (-0.2, 0.1))
    arrow((1.7, 2.9), (2.55, 1.7), "A", (-0.2, -0.35))
    arrow((6.85, 4.5), (7.85, 3.7), "w*", (0.15, 0.15))
    arrow((6.85, 1.6), (7.85, 2.5), "L, P, M", (0.1, -0.9))  # under the arrow, between the boxes
    ax.plot([1.1, 1.1], [2.55, 0.25], lw=1.2, color="0.45")
    ax.annotate("", xy=(9.5, 1.45), xytext=(1.1, 0.25),
                arrowprops=dict(arrowstyle="-|>", lw=1.2, color="0.45", connectionstyle="angle,angleA=0,angleB=90"))
    ax.text(5.2, 0.18, "A (audio guidance)", fontsize=8.5, color="0.3", style="italic", va="top")  # under its line
    arrow((11.28, 3.1), (11.85, 3.1))
    ax.set_title(title, fontsize=13)
    stamp(fig, note)
    return fig


def photo_figure(photo: torch.Tensor, reconstruction: torch.Tensor, result: torch.Tensor,
                 error: dict[str, float], valence: Sequence[float | None] = (), judge: str | None = None,
                 title: str | None = None, note: str | None = None) -> plt.Figure:
    """The user's photo, its reconstruction by the generator, and the manipulated result, side by
    side (each (1 or none, 3, H, W) in [-1, 1]), captioned with the reconstruction error
    (8-bit levels, PSNR) and the judge's valence of each image."""
    from .inversion import error_text

    def reading(i: int) -> str:
        return f"valence {signed(valence[i] if i < len(valence) else None)}"

    fit = "reconstruction\nMAE " + error_text(error, "\n")
    captions = [[reading(0), reading(1), reading(2)]]
    images = [x[0] if x.ndim == 4 else x for x in (photo, reconstruction, result)]
    judged = f"valence by {judge}" if judge else "no judge: valence not read"
    return image_grid([images], col_labels=["your photo", fit, "manipulated"], captions=captions,
                      title=f"{title}\n{judged}" if title else judged, note=note, cell=2.2)


def file_stem(*parts: str) -> str:
    """A file stem from names: lower case, each run of other characters than letters, digits
    and "-" one "_" (("start_study_examples", "FFHQ-style faces") -> "start_study_examples_ffhq-style_faces")."""
    return "_".join(re.sub(r"[^a-z0-9-]+", "_", p.lower()).strip("_") for p in parts)


def save_figure(fig: plt.Figure, stem: str, out_dir: str | Path, close: bool = True) -> list[Path]:
    """Save `fig` as out_dir/stem.png and .pdf; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    if close:
        plt.close(fig)
    return paths
