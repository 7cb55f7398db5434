"""Time the affective music branch (paper 3.2) for one song on the CPU, offline defaults.

    python benchmarks/bench_affective.py [AUDIO] [--threads 2] [--repeat 3]

Cold: first call in the process (loads Whisper); warm: later calls with the models loaded
(no cache). Target: cold under 30 s on 2 cores for jfk.flac (11 s of speech).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "audio" / "speech" / "jfk.flac"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", nargs="?", default=str(DEFAULT))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--renderer", default="auto")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    start = time.perf_counter()
    from emostyle.affective import affective_music
    from emostyle.affective.lyrics import FasterWhisperLyrics

    imported = time.perf_counter() - start
    lyrics = FasterWhisperLyrics(cpu_threads=args.threads)
    with tempfile.TemporaryDirectory() as out:
        runs = []
        for i in range(args.repeat):
            t = time.perf_counter()
            r = affective_music(args.audio, lyrics_backend=lyrics, renderer=args.renderer, seed=i, out_dir=out)
            runs.append((time.perf_counter() - t, r))
    cold = time.perf_counter() - start - sum(t for t, _ in runs[1:])
    print(f"audio: {args.audio}")
    print(f"lyrics: {runs[0][1].transcript.text!r}")
    print(f"polarity: {runs[0][1].polarity.label} {runs[0][1].polarity.score:+.3f}; renderer: {runs[0][1].renderer}")
    print(f"import {imported:.2f} s; cold (import + model load + first run) {cold:.2f} s")
    for i, (t, r) in enumerate(runs):
        steps = ", ".join(f"{k} {v:.2f}" for k, v in r.timings.items())
        print(f"run {i}: {t:.2f} s ({steps})")


if __name__ == "__main__":
    main()
