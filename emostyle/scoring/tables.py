"""Tables of scores (Table 1 and beyond): mean, standard deviation and a bootstrap 95% interval
per scorer, method and dataset, over seeds and inputs; CSV, Markdown, LaTeX and a bar chart.

Input is a long-format table, one score per row: {"scorer", "method", "dataset", "score", ...}
(a list of dicts, or a CSV/Parquet file); `long_format` turns a sweep's wide table (one row per
run, one column per scorer) into it. Intervals are percentile bootstraps of the mean, seeded by
the group's scores, so a table rebuilds identically and two groups of the same scores (methods that
gave the same images) get the same interval.
"""

from __future__ import annotations

import csv
import math
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["DIRECTIONS", "read_table", "long_format", "summary_table", "write_table", "write_rows", "interval_chart"]

# How to read each scorer's number; tables print it beside the scorer's name.
DIRECTIONS = {
    "vila-r": "VILA-R aesthetics in [0, 1], higher is better",
    "laion-aesthetic": "LAION aesthetics, about 1-10, higher is better",
    "brisque": "BRISQUE quality (not aesthetics), lower is better",
    "align-audio": "similarity to the song in the guidance space, higher is closer",
    "align-music": "similarity to the generated music in the guidance space, higher is closer",
    "align-text": "similarity to the lyrics in the guidance space, higher is closer",
    "identity": "identity similarity to the retrieved input (1 - L_ID), higher keeps the identity",
    "face-distance": "distance of dlib's face-recognition descriptors from the input's (a network in no loss; "
                     "dlib puts two photos of one person within 0.6), lower keeps the person",
    "latent-distance": "||w - w0||, lower stays closer to the input",
    "pixel-change": "mean absolute change of the saved image from the input, in 8-bit grey levels",
    "valence-shift": "valence change read by the judge (not the guiding model), signed by the song's polarity: "
                     "> 0 moved the song's way",
    "emotion-agreement": "share of results whose valence, read by the judge, moved the way the song's polarity says "
                         "by more than the judge's one-pixel resolution",
    "judge-resolution": "the largest valence change the judge reads when the inputs shift by one pixel: "
                        "emotion-agreement counts no smaller move",
    "valence-shift-space": "valence-shift in the guidance space (the model that was optimised)",
    "emotion-agreement-space": "emotion-agreement in the guidance space (the model that was optimised)",
    # EmoGen's metrics (emostyle.scoring.emogen), by its classifier: a judge that guided no image.
    "emo-a": "EmoGen emotion accuracy over 8 categories (%), by EmoGen's CLIP ViT-L/14 classifier, higher is better",
    "emo-a-2": "EmoGen emotion accuracy, positive/negative (%), by EmoGen's classifier, higher is better",
    "sem-c": "EmoGen semantic clarity (top Places365/ImageNet probability), higher is clearer",
    "sem-d": "EmoGen semantic diversity (1 - cos of CLIP ViT-L/14 features of image pairs), higher is more diverse",
}
_KEYS = ("scorer", "method", "dataset")


def read_table(path: str | Path) -> list[dict]:
    """Rows of a CSV or Parquet file as dicts (CSV numbers parsed as floats where they parse)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix != ".csv":
        raise ValueError(f"{path}: expected a .csv or .parquet table")
    with open(path, newline="") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _parse(v: str):
    if v == "":
        return None
    try:
        return float(v)
    except ValueError:
        return v


def long_format(rows: Iterable[dict], scorers: dict[str, str] | Sequence[str],
                keep: Sequence[str] = ("method", "dataset", "song", "seed")) -> list[dict]:
    """Wide rows (one per run) -> long rows (one per score). `scorers` maps a column to a scorer
    name (or lists columns that are their own names); rows without a value for a column are skipped."""
    scorers = dict(scorers) if isinstance(scorers, dict) else {m: m for m in scorers}
    out = []
    for row in rows:
        for column, name in scorers.items():
            value = row.get(column)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                out.append({**{k: row.get(k) for k in keep}, "scorer": name, "score": float(value)})
    return out


def _bootstrap_mean(x: np.ndarray, n_boot: int, level: float, rng: np.random.Generator) -> tuple[float, float]:
    means = np.concatenate([x[rng.integers(0, len(x), (min(1000, n_boot - i), len(x)))].mean(1)
                            for i in range(0, n_boot, 1000)])
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def summary_table(records: Iterable[dict] | str | Path, n_boot: int = 10000, level: float = 0.95,
                  seed: int = 0) -> list[dict]:
    """One row per (scorer, method, dataset), in order of first appearance: n, mean, std (ddof 1),
    ci_low, ci_high (percentile bootstrap of the mean, `n_boot` resamples, seeded by `seed` and the
    group's scores)."""
    if isinstance(records, (str, Path)):
        records = read_table(records)
    groups: dict[tuple, list[float]] = {}
    for r in records:
        missing = [k for k in (*_KEYS, "score") if k not in r]
        if missing:
            raise ValueError(f"long-format rows need {', '.join((*_KEYS, 'score'))}; a row lacks {missing} "
                             "(turn a wide table into long rows with long_format)")
        if r["score"] is None or (isinstance(r["score"], float) and math.isnan(r["score"])):
            continue
        groups.setdefault(tuple(str(r[k]) for k in _KEYS), []).append(float(r["score"]))
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    summary = []
    for key, values in groups.items():
        x = np.asarray(values)
        rng = np.random.default_rng([seed, zlib.crc32(x.tobytes())])
        lo, hi = _bootstrap_mean(x, n_boot, level, rng)
        summary.append({**dict(zip(_KEYS, key)), "n": len(x), "mean": float(x.mean()),
                        "std": float(x.std(ddof=1)) if len(x) > 1 else float("nan"),
                        "ci_low": lo, "ci_high": hi, "level": level})
    return summary


def _ordered(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _cell(row: dict | None, digits: int, sep: str, n: bool = False) -> str:
    """"mean ± std [CI]", and its number of values when the block's cells differ in it (`n`)."""
    if row is None:
        return "-"
    std = "" if math.isnan(row["std"]) else f" {sep} {row['std']:.{digits}f}"
    size = f" (n = {int(row['n'])})" if n else ""
    return f"{row['mean']:.{digits}f}{std} [{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}]{size}"


def _sizes(rows, per: str = "cell") -> str | None:
    """"n = K per cell" (or per `per`) where every cell of a block holds K values; None where they differ."""
    sizes = {int(c["n"]) for _, cells in rows for c in cells if c is not None}
    return f"n = {sizes.pop()} per {per}" if len(sizes) == 1 else None


def _blocks(summary: list[dict]):
    """Per scorer: its title, the datasets (columns) and, per method, its cells by dataset."""
    for scorer in _ordered(r["scorer"] for r in summary):
        rows = [r for r in summary if r["scorer"] == scorer]
        datasets = _ordered(r["dataset"] for r in rows)
        methods = _ordered(r["method"] for r in rows)
        cells = {(r["method"], r["dataset"]): r for r in rows}
        level = round(rows[0]["level"] * 100)
        title = f"{scorer} ({DIRECTIONS[scorer]})" if scorer in DIRECTIONS else scorer
        yield title, level, datasets, [(m, [cells.get((m, d)) for d in datasets]) for m in methods]


def _latex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
        s = s.replace(a, b)
    return s


def _plain_cell(value) -> str:
    """A Markdown table's cell: a missing number (None, NaN) reads "n/a"; a text stays as written."""
    from emostyle.figures import unread

    return "n/a" if (value is None or isinstance(value, (int, float, np.number))) and unread(value) else str(value)


def write_rows(rows: list[dict], stem: str | Path) -> dict[str, Path]:
    """Write plain rows (e.g. Figure 4's claims) as `stem`.csv and a Markdown table `stem`.md, which
    shows a missing value (None, NaN: a mean over no results, no face to compare) as "n/a"."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {f: stem.with_name(f"{stem.name}.{f}") for f in ("csv", "md")}
    columns = list(rows[0]) if rows else []
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    lines += ["| " + " | ".join(_plain_cell(r[c]) for c in columns) + " |" for r in rows]
    paths["md"].write_text("\n".join(lines) + "\n")
    return paths


def write_table(summary: list[dict], stem: str | Path, digits: int = 3, note: str | None = None) -> dict[str, Path]:
    """Write `stem`.csv (every number), `stem`.md and `stem`.tex (methods x datasets per scorer,
    cells "mean ± std [CI]"), e.g. stem = figures/table1; returns the paths by format. `note`
    (e.g. which judge read the emotion) closes the Markdown and heads the LaTeX as a comment."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {f: stem.with_name(f"{stem.name}.{f}") for f in ("csv", "md", "tex")}
    columns = [*_KEYS, "n", "mean", "std", "ci_low", "ci_high", "level"]
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(summary)
    md, tex = [], []
    for title, level, datasets, rows in _blocks(summary):
        sizes = _sizes(rows)
        md += [f"**{title}**: mean ± std [{level}% bootstrap interval of the mean], {sizes or 'n in each cell'}", "",
               "| method | " + " | ".join(datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
        md += [f"| {m} | " + " | ".join(_cell(c, digits, "±", not sizes) for c in cells) + " |" for m, cells in rows]
        md.append("")
        tex += [r"\begin{table}[t]", r"\centering",
                rf"\caption{{{_latex_escape(title)}: mean $\pm$ std [{level}\% bootstrap interval of the mean], "
                rf"{sizes or 'n in each cell'}.}}",
                r"\begin{tabular}{l" + "c" * len(datasets) + "}", r"\toprule",
                "Method & " + " & ".join(_latex_escape(d) for d in datasets) + r" \\", r"\midrule"]
        tex += [_latex_escape(m) + " & " + " & ".join(_cell(c, digits, r"$\pm$", not sizes) for c in cells) + r" \\"
                for m, cells in rows]
        tex += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    if note:
        md.append(note)
        tex.insert(0, "% " + note.replace("\n", " "))
    paths["md"].write_text("\n".join(md) + "\n")
    paths["tex"].write_text("\n".join(tex) + "\n")
    return paths


def interval_chart(summary: list[dict], title: str | None = None, note: str | None = None,
                   names: dict[str, str] | None = None):
    """A pyplot figure of the means with their bootstrap intervals: one panel per scorer, methods
    on the x axis (`names` maps a method's key to the name shown), one bar per dataset; `note` is
    printed under it (e.g. the profile's note). Save it with `emostyle.figures.save_figure`."""
    import matplotlib.pyplot as plt

    blocks = list(_blocks(summary))
    if not blocks:
        raise ValueError("nothing to plot: the summary table is empty")
    width_in = max(4.0, 1.2 * max(len(rows) for *_, rows in blocks) + 1.5)
    fig, axes = plt.subplots(len(blocks), 1, figsize=(width_in, 3.2 * len(blocks)), squeeze=False,
                             layout="constrained")
    for ax, (panel, level, datasets, rows) in zip(axes[:, 0], blocks):
        width = 0.8 / len(datasets)
        for j, dataset in enumerate(datasets):
            xs, means, err = [], [], [[], []]
            for i, (_, cells) in enumerate(rows):
                c = cells[j]
                if c is not None:
                    xs.append(i + (j - (len(datasets) - 1) / 2) * width)
                    means.append(c["mean"])
                    err[0].append(c["mean"] - c["ci_low"])
                    err[1].append(c["ci_high"] - c["mean"])
            ax.bar(xs, means, width, yerr=err, capsize=3, label=dataset)
        ax.set_xticks(range(len(rows)), [(names or {}).get(m, m) for m, _ in rows], rotation=20, ha="right")
        ax.set_title(f"{panel}, {_sizes(rows, 'bar') or 'n in the table'}", fontsize=9)
        ax.set_ylabel(f"mean ({level}% CI)")
        if len(datasets) > 1:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    if note:
        from emostyle.figures import fit

        fig.text(0.5, 0, fit(note, width_in - 0.2, 7), ha="center", va="top", fontsize=7)
    return fig
