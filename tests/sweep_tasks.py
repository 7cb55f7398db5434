"""Tasks for the sweep tests, importable by separate `dask worker` processes (PYTHONPATH=tests)."""

import os
import time
from pathlib import Path


def slow(song, profile, method, seed, out, overrides):
    """A stand-in for `manipulate` that takes long enough to be interrupted; `broken` + `lee` fails."""
    from distributed import get_worker

    Path(out, "started").write_text(str(get_worker().name))  # which worker ran it
    Path(out, "numba").write_text(os.environ.get("NUMBA_CACHE_DIR", ""))
    time.sleep(overrides.get("sleep", 0.5))
    if Path(song).stem == "broken" and method == "lee":
        raise RuntimeError("this song cannot be guided")
    score = len(Path(song).stem) + 10 * seed + {"emostyle": 0.5, "lee": 0.25}[method]
    Path(out, "after.txt").write_text(f"{score}\n")
    return {"score": score}
