"""Time GRU-EBS music generation (paper Eq. 3) for a 20-word lyric at the full-size architecture.

Random weights at the real sizes (speed does not depend on them): generator encoder GRU 4 x 256
over 2 x 128-d skip-gram vectors, attention GRU decoder 4 x 256 over 5954 music tokens; classifier
bidirectional LSTM 6 x 256. Needs the vocabularies (../shared/data/gru-ebs, or EMOSTYLE_MIRROR).
From the repository root, with the kit installed:
    python benchmarks/bench_gru_ebs.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from emostyle.affective.gru_ebs import GruEbsComposer, SkipGram, read_vocabulary
from emostyle.affective.music import Polarity
from emostyle.models.gru_ebs import GruEbsGenerator
from emostyle.models.gru_ebs_classifier import EmotionClassifier

LYRICS = ("I walked along the empty road tonight and the city lights were shining "
          "on your face while we sang together")  # 20 words


def build(vocabularies: Path, device: str, **options) -> GruEbsComposer:
    """A full-size composer with random weights and random skip-gram tables at the real vocabularies."""
    syllables = read_vocabulary(vocabularies / "syllable_vocabulary.json")
    words = read_vocabulary(vocabularies / "word_vocabulary.json")
    music = read_vocabulary(vocabularies / "music_vocabulary_50.json")
    torch.manual_seed(0)
    return GruEbsComposer(
        GruEbsGenerator(256, 256, 4, len(syllables), len(music), 100), EmotionClassifier(len(syllables), len(music)),
        SkipGram(sorted(syllables, key=syllables.get), torch.randn(len(syllables), 128)),
        SkipGram(sorted(words, key=words.get), torch.randn(len(words), 128)),
        music, syllables, device=device, **options)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads on CPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vocabularies", type=Path, default=Path(os.environ.get(
        "EMOSTYLE_MIRROR", Path(__file__).resolve().parents[2] / "shared" / "data")) / "gru-ebs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    composer = build(args.vocabularies, args.device)
    times, cpu = [], []
    for seed in range(args.repeats + 1):  # the first run warms up allocators
        start, start_cpu = time.perf_counter(), time.process_time()
        melody = composer.melody(LYRICS, Polarity("positive", 1.0, "bench"), seed=seed)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    print(f"{len(LYRICS.split())} words -> {melody.n_seed} seed syllables, {len(melody.notes)} notes; "
          f"threads {args.threads}, device {args.device}: median {sorted(times[1:])[len(times[1:]) // 2]:.2f} s "
          f"(runs {', '.join(f'{t:.2f}' for t in times[1:])}; CPU seconds {', '.join(f'{t:.2f}' for t in cpu[1:])})")


if __name__ == "__main__":
    main()
