"""Remake the kit's songs with emotional lyrics (data/songs/*.wav and their lyrics *.txt).

The paper's songs are not public, so the kit makes its own: each lyric is spoken by
espeak-ng (a livelier, higher voice for the happy ones, a slower, lower one for the sad)
over music that the kit's affective composer writes for the lyric's mood, and `emotions.csv`
states each song's mood (what the studies count toward). Needs espeak-ng
(`apt-get install espeak-ng`) only when remaking; the WAVs are committed.

    python data/make_songs.py [--out data/songs]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from emostyle.affective.composer import AffectiveComposer
from emostyle.affective.music import Polarity
from emostyle.affective.render import render_midi

SR = 22050
SECONDS = 9.0
# name: (lyrics, mood, espeak speed in words/min, espeak pitch 0-99)
SONGS = {
    "happy_sunshine": ("Sunshine in the morning, I am dancing with my friends, "
                       "we laugh and sing together, what a happy lovely day", "positive", 165, 70),
    "joyful_love": ("I love you and I feel so glad, your smile is bright and wonderful, "
                    "my heart is full of joy tonight", "positive", 160, 65),
    "sad_rain": ("Cold rain is falling and I cry alone, my heart is broken, "
                 "I miss you and I feel so sad", "negative", 115, 30),
    "lonely_night": ("The night is dark and empty, I am lonely and afraid, "
                     "tears and sorrow, everything is lost", "negative", 110, 25),
}


def speak(text: str, speed: int, pitch: int, path: Path) -> np.ndarray:
    """espeak-ng's voice for `text`, mono at SR."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed to remake the songs: apt-get install espeak-ng")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(speed), "-p", str(pitch), "-w", str(path), text], check=True)
    voice, sr = sf.read(path, dtype="float32")
    return librosa.resample(voice, orig_sr=sr, target_sr=SR)


def make_song(name: str, out: Path, work: Path) -> Path:
    lyrics, mood, speed, pitch = SONGS[name]
    voice = speak(lyrics, speed, pitch, work / f"{name}_voice.wav")
    midi = AffectiveComposer().compose(lyrics, Polarity(mood, 0.8 if mood == "positive" else -0.8, "label"), seed=7)
    render_midi(midi, work / f"{name}_music.wav", renderer="auto", sr=SR)
    music, _ = sf.read(work / f"{name}_music.wav", dtype="float32")
    n = int(SECONDS * SR)
    mix = np.zeros(n, np.float32)
    start = int(0.4 * SR)  # a short intro before the voice
    mix[: min(n, len(music))] += 0.45 * music[:n] / (np.abs(music).max() + 1e-9)
    v = voice[: n - start]
    mix[start : start + len(v)] += 0.9 * v / (np.abs(v).max() + 1e-9)
    fade = int(0.3 * SR)
    mix[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    mix *= 0.89 / np.abs(mix).max()
    path = out / f"{name}.wav"
    sf.write(path, mix, SR, subtype="PCM_16")
    path.with_suffix(".txt").write_text(lyrics + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "songs"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        for name in SONGS:
            print("made", make_song(name, out, Path(work)))
    # the emotion each song was made with: the studies count its results toward it (emostyle.samples)
    rows = "".join(f"{name},{mood}\n" for name, (_, mood, _, _) in sorted(SONGS.items()))
    (out / "emotions.csv").write_text("song,emotion\n" + rows)


if __name__ == "__main__":
    main()
