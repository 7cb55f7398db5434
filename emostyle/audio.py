"""Reading audio files once, with clear errors, for every stage that listens.

Every encoder has its own reference preprocessing (SoundCLIP: librosa at 44.1 kHz,
ImageBind: 16 kHz kaldi fbank, Whisper: 16 kHz); they all start from `read_audio`,
which decodes and checks the file, so that a bad file fails here, with its name,
rather than deep inside an encoder.
"""

from __future__ import annotations

import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["AudioError", "read_audio", "load_audio", "at_rate", "numba_cache_dir", "same_in_every_process", "MIN_SECONDS",
           "MAX_SECONDS"]

MIN_SECONDS = 0.5
# Longer files are analysed on their first MAX_SECONDS (a warning says so): a song's
# opening carries its lyrics and mood, and a 10-minute file would stall every encoder.
MAX_SECONDS = 300.0
_SILENCE_PEAK = 1e-4


class AudioError(ValueError):
    """An audio file that cannot be used: unreadable, too short, silent."""


def read_audio(path: str | Path, max_seconds: float | None = MAX_SECONDS) -> tuple[np.ndarray, int]:
    """Decode `path` into float32 samples (channels, samples) at the file's own rate.

    Raises FileNotFoundError for a missing file and AudioError for a file that cannot be
    decoded, lasts under MIN_SECONDS, or is silent. Longer than `max_seconds`: truncated,
    with a warning.
    """
    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path} is a folder, not an audio file: give one song (WAV, FLAC, OGG or MP3); "
                         "`emostyle sweep` runs many")
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file {path} is empty (0 bytes)")
    try:
        import soundfile as sf

        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        data = data.T
    except Exception as sf_error:  # not a format libsndfile knows (e.g. MP3 on old builds, M4A)
        try:
            import librosa

            with warnings.catch_warnings():  # librosa's notices about its audioread fallback precede our error
                warnings.simplefilter("ignore")
                data, sr = librosa.load(str(path), sr=None, mono=False)
            data = np.atleast_2d(data).astype(np.float32)
        except Exception:
            raise AudioError(
                f"cannot decode audio file {path} ({sf_error}); use WAV, FLAC, OGG or MP3"
            ) from None
    if data.size == 0 or data.shape[1] == 0:
        raise AudioError(f"audio file {path} holds no samples")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"audio file {path} holds NaN or infinite samples")
    seconds = data.shape[1] / sr
    if seconds < MIN_SECONDS:
        raise AudioError(f"audio file {path} lasts {seconds:.2f} s; at least {MIN_SECONDS} s is needed")
    # about its own mean: a constant offset (DC) is inaudible, and music models read it as something
    if float(np.abs(data - data.mean(axis=1, keepdims=True)).max()) < _SILENCE_PEAK:
        raise AudioError(f"audio file {path} is silent (peak below {_SILENCE_PEAK:g} about its mean); "
                         "nothing to listen to")
    cut = _wav_cut_short(path)
    if cut is not None:
        warnings.warn(f"{path.name} is cut short: its header declares {cut[0]:.1f} s, the file holds {cut[1]:.1f} s; "
                      "only those are used (re-export or re-download it for the whole song)", stacklevel=2)
    if max_seconds is not None and seconds > max_seconds:
        warnings.warn(
            f"{path.name} lasts {seconds:.0f} s; only its first {max_seconds:.0f} s are used",
            stacklevel=2,
        )
        data = data[:, : int(max_seconds * sr)]
    return np.ascontiguousarray(data), int(sr)


def _wav_cut_short(path: Path) -> tuple[float, float] | None:
    """(declared, held) seconds of a RIFF WAVE file whose data chunk holds less than its header
    declares (a copy or download cut off; libsndfile reads what is there without a word); None
    otherwise, for other formats (RF64 among them), for a header it cannot follow, and for the
    sizes that writers streaming to a pipe leave (0, and 2 GiB or more: 0xFFFFFFFF, SoX's near
    0x7FFFFFFF)."""
    import struct

    size_on_disk = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            offset, byte_rate = 12, None
            while offset + 8 <= size_on_disk:  # the chunks' headers, one after another
                f.seek(offset)
                chunk, size = struct.unpack("<4sI", f.read(8))
                if chunk == b"fmt ":
                    byte_rate = struct.unpack("<8xI", f.read(12))[0]
                if chunk == b"data":
                    held = size_on_disk - (offset + 8)
                    if not byte_rate or size == 0 or size >= 1 << 31 or held >= size:
                        return None
                    return size / byte_rate, held / byte_rate
                offset += 8 + size + (size & 1)  # chunks are padded to an even size
    except (OSError, struct.error):
        return None
    return None


def load_audio(path: str | Path, sr: int | None, mono: bool = True) -> np.ndarray:
    """`librosa.load(path, sr=sr, mono=mono)` after `read_audio`'s checks (see `at_rate`)."""
    return at_rate(*read_audio(path), sr, mono)


def at_rate(data: np.ndarray, native_sr: int, sr: int | None, mono: bool = True) -> np.ndarray:
    """`read_audio`'s samples (channels, samples) as librosa.load gives them at `sr` (None: the
    file's own rate).

    Same arithmetic as librosa.load (channel mean, soxr_hq resampling), so encoders that
    the reference feeds through librosa.load see identical samples. Returns (samples,)
    when mono, else (channels, samples).
    """
    import librosa

    y = librosa.to_mono(data) if mono else data
    if mono and y.ndim > 1:
        y = y[0]
    if sr is not None and sr != native_sr:
        y = librosa.resample(y, orig_sr=native_sr, target_sr=sr, res_type="soxr_hq")
    return np.ascontiguousarray(y, dtype=np.float32)


def classifier_input(audio, sample_rate: int | None, sr: int) -> np.ndarray:
    """Mono float32 samples at `sr` for an audio classifier (musicnn, YAMNet), from a file path or
    a waveform (samples,) with its `sample_rate`; audio over full scale (|x| > 1, e.g. a float
    WAV) is peak-normalised to 1, as the decoded audio the classifiers were trained on cannot
    exceed it. A waveform that is not mono, empty or not finite is refused, naming why."""
    if isinstance(audio, (str, Path)):
        y = load_audio(audio, sr=sr)
    else:
        y = np.asarray(audio, dtype=np.float32)
        if sample_rate is None or sample_rate <= 0:
            raise ValueError(f"a waveform needs its sample_rate, a positive number of Hz (got {sample_rate}); or pass "
                             "the path of an audio file")
        if y.ndim != 1 or y.size == 0:
            raise ValueError(f"a waveform must be mono, shape (samples,); got shape {y.shape} "
                             "(average the channels first)")
        if not np.all(np.isfinite(y)):
            raise ValueError("the waveform holds NaN or infinite samples")
        y = at_rate(y, sample_rate, sr)
    peak = float(np.abs(y).max(initial=0.0))
    return y / peak if peak > 1.0 else y  # over full scale: read it as if played at full scale


def numba_cache_dir(root: str | Path, name: str) -> str:
    """A folder under `root` for one process's compiled librosa functions (numba's cache, the
    value of NUMBA_CACHE_DIR), named after the process (`name`, made safe for a path).

    numba's cache is not safe for processes that write it at once: two processes compiling the
    same function into the shared `__pycache__` left files that crashed every later load
    (numba 0.68). So every process the kit runs side by side (reproduce's kernels, a sweep's
    worker processes) gets a folder of its own, kept between runs."""
    return str(Path(root) / re.sub(r"[^\w.-]", "_", name))


@contextmanager
def same_in_every_process():
    """numpy's BLAS on one thread inside the block. Its sums (the mel filterbanks of Whisper and of the
    audio reading) round by its thread count: kit.sh's kernels run one, a test or a shell two, and a
    reading kept for every process was whichever process made it first, a word or 1e-8 apart, which
    the guidance amplified. One thread reads the same everywhere."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
