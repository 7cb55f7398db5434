"""MIDI to WAV, so the music M reaches the audio encoders as sound.

Renderers, best first ("auto" takes the first that works here):
- "fluidsynth": `pretty_midi.PrettyMIDI.fluidsynth` (needs pyfluidsynth and libfluidsynth);
- "tinysoundfont": TinySoundFont (`pip install --no-deps tinysoundfont`; its pyaudio
  dependency only serves live playback) with a General MIDI SoundFont, by default the
  `TimGM6mb.sf2` that pretty_midi ships;
- "additive": a built-in additive synthesiser (harmonics under an ADSR envelope), always there.
The renderer used is returned and recorded in the run's manifest.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pretty_midi

__all__ = ["RENDERERS", "render_midi", "default_soundfont"]

RENDERERS = ("auto", "fluidsynth", "tinysoundfont", "additive")
_PEAK = 0.9  # normalise to this peak so that renderers compare and nothing clips
_TAIL_S = 1.0  # room for the release of the last notes


def default_soundfont() -> Path:
    """The General MIDI SoundFont: the registry's `soundfont-timgm6mb`, else pretty_midi's own."""
    try:
        from emostyle import registry

        return Path(registry.path("soundfont-timgm6mb"))
    except (ImportError, AttributeError, FileNotFoundError):
        return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def _fluidsynth(pm: pretty_midi.PrettyMIDI, sr: int, soundfont: Path) -> np.ndarray:
    try:
        import fluidsynth  # noqa: F401  (pretty_midi imports it lazily and would only warn)
    except ImportError:
        raise ImportError("renderer 'fluidsynth' needs pyfluidsynth and the FluidSynth library "
                          "(apt install fluidsynth; pip install pyfluidsynth); or use 'tinysoundfont' "
                          "or 'additive'") from None

    return pm.fluidsynth(fs=sr, sf2_path=str(soundfont))


def _tinysoundfont(pm: pretty_midi.PrettyMIDI, sr: int, soundfont: Path) -> np.ndarray:
    try:
        import tinysoundfont
    except ImportError:
        raise ImportError("renderer 'tinysoundfont' needs `pip install --no-deps tinysoundfont` "
                          "(its pyaudio dependency only serves live playback); or use 'additive'") from None

    synth = tinysoundfont.Synth(samplerate=sr)
    sfid = synth.sfload(str(soundfont))
    events = []  # (time s, order, kind, channel, pitch, velocity): note-offs sort before note-ons
    for channel, inst in enumerate(pm.instruments[:16]):
        channel = 9 if inst.is_drum else (channel if channel < 9 else channel + 1) % 16
        synth.program_select(channel, sfid, 128 if inst.is_drum else 0, 0 if inst.is_drum else inst.program)
        for note in inst.notes:
            events += [(note.start, 1, channel, note.pitch, note.velocity), (note.end, 0, channel, note.pitch, 0)]
    events.sort()
    total = int((pm.get_end_time() + _TAIL_S) * sr)
    out = np.zeros((total, 2), np.float32)
    done = 0
    for time, is_on, channel, pitch_, velocity in events + [(total / sr, 0, 0, 0, 0)]:
        upto = min(int(time * sr), total)
        if upto > done:
            buffer = synth.generate_simple(upto - done)
            out[done:upto] = np.frombuffer(buffer, np.float32).reshape(-1, 2)
            done = upto
        if is_on:
            synth.noteon(channel, pitch_, velocity)
        elif velocity == 0 and time < total / sr:
            synth.noteoff(channel, pitch_)
    return out.mean(axis=1)


def _additive(pm: pretty_midi.PrettyMIDI, sr: int, soundfont: Path | None = None) -> np.ndarray:
    """Sum of six harmonics (amplitude 1/k) per note, 10 ms attack, exponential decay, 80 ms release."""
    out = np.zeros(int((pm.get_end_time() + _TAIL_S) * sr), np.float64)
    release = int(0.08 * sr)
    for inst in pm.instruments:
        if inst.is_drum:
            continue
        for note in inst.notes:
            n = max(int((note.end - note.start) * sr), 1)
            t = np.arange(n + release) / sr
            f0 = pretty_midi.note_number_to_hz(note.pitch)
            tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 7) if k * f0 < sr / 2)
            env = np.minimum(1.0, t / 0.01) * np.exp(-1.5 * t)
            env[n:] *= np.linspace(1.0, 0.0, release)
            start = int(note.start * sr)
            seg = (note.velocity / 127.0) * env * tone
            out[start:start + len(seg)] += seg[: len(out) - start]
    return out.astype(np.float32)


_IMPLEMENTATIONS = {"fluidsynth": _fluidsynth, "tinysoundfont": _tinysoundfont, "additive": _additive}


def render_midi(pm: pretty_midi.PrettyMIDI, wav_path: str | Path, renderer: str = "auto",
                sr: int = 44100, soundfont: str | Path | None = None) -> str:
    """Render `pm` to a mono 16-bit WAV at `sr` Hz, peak-normalised; returns the renderer used.

    renderer: one of RENDERERS. "auto" tries fluidsynth, tinysoundfont, additive in turn;
    a renderer named explicitly that cannot run raises its error.
    """
    import soundfile as sf

    if renderer not in RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r}; choose one of {RENDERERS}")
    if not any(inst.notes for inst in pm.instruments):
        raise ValueError("the MIDI holds no notes; nothing to render")
    soundfont = Path(soundfont) if soundfont is not None else default_soundfont()
    if renderer != "additive" and not soundfont.is_file():
        if renderer != "auto":
            raise FileNotFoundError(f"SoundFont {soundfont} not found; run `emostyle weights fetch soundfont-timgm6mb`")
        warnings.warn(f"SoundFont {soundfont} not found; using the additive synthesiser", stacklevel=2)
    order = ("fluidsynth", "tinysoundfont", "additive") if renderer == "auto" else (renderer,)
    for name in order:
        if renderer == "auto" and name != "additive":
            if not soundfont.is_file():
                continue
            try:
                audio = _IMPLEMENTATIONS[name](pm, sr, soundfont)
            except (ImportError, OSError):  # not installed, or its native library is missing
                continue
        else:
            audio = _IMPLEMENTATIONS[name](pm, sr, soundfont)
        peak = float(np.abs(audio).max())
        if peak > 0:
            break
        if renderer != "auto":
            raise RuntimeError(f"renderer {name} produced silence")
        warnings.warn(f"renderer {name} produced silence; trying the next one", stacklevel=2)
    audio = np.asarray(audio, np.float32) * (_PEAK / peak)
    Path(wav_path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(wav_path), audio, sr, subtype="PCM_16")
    return name
