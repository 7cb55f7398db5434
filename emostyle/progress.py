"""The kit's progress bars: tqdm's, cleared when done in a terminal or a notebook, and ended as one
complete line in a log."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """`tqdm(iterable, **kwargs)` that a terminal or a notebook clears when it is done. Written to a
    log (stderr no terminal), a cleared bar left its first drawing's fragment ("retrieval: 0%| ...")
    in front of the next line; there it ends as one line with its count and time instead."""
    kwargs.setdefault("leave", not sys.stderr.isatty() and "ipykernel" not in sys.modules)  # in a log
    return tqdm(iterable, **kwargs)
