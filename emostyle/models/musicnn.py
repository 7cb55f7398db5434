"""musicnn (Pons & Serra 2019), the Million Song Dataset top-50 tagger, in plain PyTorch.

The weights are `musicnn/MSD_musicnn/` of the PyPI wheel `musicnn==0.1.0` (ISC), a TensorFlow 1
checkpoint taken out of the wheel by the registry (entry `musicnn-msd`) and read without
TensorFlow (`emostyle.models.tf_checkpoint`); the package itself (TensorFlow 1) is never
installed. The network, as `musicnn/models.py` builds it (`build_musicnn`):

    input (B, 187 frames, 96 mel bands) -> BatchNorm
    front-end: 5 branches, each conv (ReLU) -> BatchNorm -> max over frequency:
               timbral 7 x 38 and 7 x 67 (204 filters each; time padded to keep 187 frames),
               temporal 128 x 1, 64 x 1, 32 x 1 (51 filters each; TensorFlow "same" padding)
               -> concatenated: 561 channels per frame
    mid-end:   3 conv layers of 7 frames over all channels (64 filters, ReLU -> BatchNorm),
               the 2nd and 3rd with residual connections; front-end and mid-end outputs are
               concatenated (dense connections): 561 + 3 x 64 = 753 channels
    back-end:  max and mean over time, interleaved per channel (1506) -> BatchNorm ->
               dense 200 (ReLU) -> BatchNorm -> dense 50 logits; sigmoid = tag probabilities

Batch norm runs in inference mode with TensorFlow's epsilon 1e-3; dropout is off. Every size
is read from the checkpoint; loading is strict (every model variable used, shapes checked;
only Adam's slots and power accumulators, which are training state, are left out).

Preprocessing (`musicnn/extractor.py`, `batch_data`): audio at 16 kHz mono, librosa power mel
spectrogram (n_fft 512, hop 256, 96 bands), log10(10000 x + 1), cut into consecutive patches
of 187 frames (3 s, no overlap: the extractor's default `input_overlap=False`); a song's tag
probabilities are the mean over its patches (`tagger.top_tags`). Departures, each deliberate:
- the spectrogram stays in float32 (the extractor casts it to float16, where 10000 x overflows
  to inf on loud audio and the network returns NaN);
- audio whose peak exceeds full scale (|x| > 1, e.g. a float WAV) is peak-normalised to 1:
  the model was trained on decoded MP3s, which cannot exceed full scale;
- audio shorter than one patch is repeat-padded to 187 frames (the extractor fails on it; the
  model was trained with `pad_short: repeat-pad`, see its config.json);
- at most `MAX_PATCHES` patches, evenly spaced over the song, so a long song costs a bounded
  time and is still read from beginning to end;
- the STFT pads the signal's ends by reflection, as librosa did when the model was trained
  (librosa 0.10 changed the default to zeros; only the first and last frames differ).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emostyle.audio import classifier_input
from emostyle.models.checkpoint import load_network, load_strict
from emostyle.models.tf_checkpoint import read_tf_checkpoint

__all__ = ["MSD_TAGS", "SAMPLE_RATE", "PATCH_FRAMES", "MAX_PATCHES", "Musicnn", "load_musicnn", "log_mel",
           "tag_probabilities"]

# The 50 outputs, in order (musicnn/configuration.py, MSD_LABELS: the Last.fm tags of the MSD).
MSD_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
    "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental",
    "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist",
    "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy", "catchy", "funk",
    "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy",
)
SAMPLE_RATE = 16000
N_FFT, HOP, N_MELS = 512, 256, 96
PATCH_FRAMES = 187  # 3 s: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
MAX_PATCHES = 20  # 60 s of audio: about 3 s on one CPU thread
_BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default
_N_FRONT, _N_MID = 5, 3  # branches of the front-end, layers of the mid-end
_OPTIMIZER_SLOTS = ("/Adam", "/Adam_1")
_OPTIMIZER_VARIABLES = ("beta1_power", "beta2_power")


def _pad_time_same(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """TensorFlow "same" padding of the last axis (time): the odd frame goes at the end."""
    before = (kernel - 1) // 2
    return F.pad(x, (before, kernel - 1 - before))


class _FrontEndBranch(nn.Module):
    """Conv (kt frames x kf bands, ReLU) -> BatchNorm -> max over frequency: (B, 1, F, T) -> (B, C, T)."""

    def __init__(self, filters: int, kt: int, kf: int):
        super().__init__()
        self.conv = nn.Conv2d(1, filters, (kf, kt))
        self.bn = nn.BatchNorm2d(filters, eps=_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(F.relu(self.conv(_pad_time_same(x, self.conv.kernel_size[1]))))
        return y.amax(dim=2)


class _MidEndLayer(nn.Module):
    """Conv over all channels, 7 frames ("same" in time), ReLU -> BatchNorm: (B, C, T) -> (B, F, T)."""

    def __init__(self, channels: int, filters: int, kt: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, filters, kt)
        self.bn = nn.BatchNorm1d(filters, eps=_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(_pad_time_same(x, self.conv.kernel_size[0]))))


class Musicnn(nn.Module):
    """Log-mel patches (B, T, bands) -> tag logits (B, n_tags); sizes as in the checkpoint.

    front: (filters, frames, bands) of each front-end branch; midend: filters of the mid-end
    layers; midend_frames: their kernel length; dense: units of the penultimate layer.
    """

    def __init__(self, front: tuple[tuple[int, int, int], ...] = ((204, 7, 38), (204, 7, 67), (51, 128, 1),
                                                                   (51, 64, 1), (51, 32, 1)),
                 midend: int = 64, midend_frames: int = 7, dense: int = 200, n_tags: int = 50):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=_BN_EPS)
        self.front = nn.ModuleList(_FrontEndBranch(c, kt, kf) for c, kt, kf in front)
        channels = sum(c for c, _, _ in front)
        self.mid = nn.ModuleList(_MidEndLayer(channels if i == 0 else midend, midend, midend_frames)
                                 for i in range(_N_MID))
        pooled = 2 * (channels + _N_MID * midend)
        self.pool_bn = nn.BatchNorm1d(pooled, eps=_BN_EPS)
        self.dense = nn.Linear(pooled, dense)
        self.dense_bn = nn.BatchNorm1d(dense, eps=_BN_EPS)
        self.logits = nn.Linear(dense, n_tags)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = self.input_bn(patches.transpose(1, 2).unsqueeze(1))  # (B, 1, bands, T)
        front = torch.cat([branch(x) for branch in self.front], dim=1)  # (B, 561, T)
        features, h = [front], front
        for i, layer in enumerate(self.mid):
            h = layer(h) if i == 0 else layer(h) + h  # residual from the 2nd layer on
            features.append(h)
        features = torch.cat(features, dim=1)  # (B, 753, T): dense connections
        pooled = torch.stack([features.amax(dim=2), features.mean(dim=2)], dim=2).flatten(1)
        hidden = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return self.logits(hidden)


# --- the TensorFlow checkpoint ------------------------------------------------------------------


def _tf_name(kind: str, i: int) -> str:
    """tf.compat.v1.layers' automatic names: conv2d, conv2d_1, ..."""
    return kind if i == 0 else f"{kind}_{i}"


def _bn(variables: Mapping[str, np.ndarray], name: str, key: str) -> dict[str, torch.Tensor]:
    parts = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
    state = {f"{key}.{k}": torch.from_numpy(np.array(variables[f"{name}/{v}"])) for k, v in parts.items()}
    state[f"{key}.num_batches_tracked"] = torch.tensor(0)
    return state


def _convert(variables: Mapping[str, np.ndarray], what: str) -> tuple[dict, dict]:
    """The torch state dict and the constructor arguments of a musicnn TF checkpoint.

    Layers are named in creation order: batch_normalization (input), conv2d..conv2d_4 with
    batch_normalization_1.._5 (front-end), conv2d_5.._7 with _6.._8 (mid-end),
    batch_normalization_9 (pooled), dense with _10, dense_1 (logits).
    """
    model_vars = {k for k in variables if k not in _OPTIMIZER_VARIABLES and not k.endswith(_OPTIMIZER_SLOTS)}
    needed = {f"{_tf_name('conv2d', i)}/{p}" for i in range(_N_FRONT + _N_MID) for p in ("kernel", "bias")}
    needed |= {f"{_tf_name('dense', i)}/{p}" for i in range(2) for p in ("kernel", "bias")}
    needed |= {f"{_tf_name('batch_normalization', i)}/{p}" for i in range(_N_FRONT + _N_MID + 3)
               for p in ("gamma", "beta", "moving_mean", "moving_variance")}
    missing, unexpected = sorted(needed - model_vars), sorted(model_vars - needed)
    if missing or unexpected:
        raise ValueError(f"{what} is not a musicnn checkpoint: missing variables {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    state = _bn(variables, "batch_normalization", "input_bn")
    front = []
    for i in range(_N_FRONT):
        kernel = variables[f"{_tf_name('conv2d', i)}/kernel"]  # (kt, kf, 1, filters)
        if kernel.ndim != 4 or kernel.shape[2] != 1:
            raise ValueError(f"{what}: front-end kernel {_tf_name('conv2d', i)} has shape {kernel.shape}, "
                             "not (frames, bands, 1, filters)")
        front.append((kernel.shape[3], kernel.shape[0], kernel.shape[1]))
        # TF (kt, kf, in, out) -> torch (out, in, kf, kt): the torch input is (B, 1, bands, T)
        state[f"front.{i}.conv.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 1, 0)))
        state[f"front.{i}.conv.bias"] = torch.from_numpy(variables[f"{_tf_name('conv2d', i)}/bias"])
        state |= _bn(variables, _tf_name("batch_normalization", i + 1), f"front.{i}.bn")
    mid_kernels = []
    for j in range(_N_MID):
        name = _tf_name("conv2d", _N_FRONT + j)
        kernel = variables[f"{name}/kernel"]  # (kt, channels, 1, filters): a 2-D conv spanning all channels
        if kernel.ndim != 4 or kernel.shape[2] != 1:
            raise ValueError(f"{what}: mid-end kernel {name} has shape {kernel.shape}, not (frames, channels, 1, filters)")
        mid_kernels.append(kernel.shape)
        state[f"mid.{j}.conv.weight"] = torch.from_numpy(np.ascontiguousarray(kernel[:, :, 0, :].transpose(2, 1, 0)))
        state[f"mid.{j}.conv.bias"] = torch.from_numpy(variables[f"{name}/bias"])
        state |= _bn(variables, _tf_name("batch_normalization", _N_FRONT + 1 + j), f"mid.{j}.bn")
    state |= _bn(variables, _tf_name("batch_normalization", _N_FRONT + _N_MID + 1), "pool_bn")
    state |= _bn(variables, _tf_name("batch_normalization", _N_FRONT + _N_MID + 2), "dense_bn")
    for i, key in enumerate(("dense", "logits")):
        state[f"{key}.weight"] = torch.from_numpy(np.ascontiguousarray(variables[f"{_tf_name('dense', i)}/kernel"].T))
        state[f"{key}.bias"] = torch.from_numpy(variables[f"{_tf_name('dense', i)}/bias"])
    config = dict(front=tuple(front), midend=int(mid_kernels[0][3]), midend_frames=int(mid_kernels[0][0]),
                  dense=int(state["dense.weight"].shape[0]), n_tags=int(state["logits.weight"].shape[0]))
    return state, config


def _build(variables: Mapping[str, np.ndarray], what: str) -> Musicnn:
    state, config = _convert(variables, what)
    return load_strict(Musicnn(**config), state, what).eval()


def load_musicnn(path: str | Path | Mapping[str, np.ndarray] | None = None,
                 device: str | torch.device = "cpu") -> Musicnn:
    """The musicnn MSD tagger, in eval mode.

    path: the checkpoint (folder, prefix or `.index` file), a dict of its variables (name ->
    array, as `read_tf_checkpoint` returns), or None for the registry's `musicnn-msd`.
    """
    return load_network(path, device, "musicnn-msd", read_tf_checkpoint, _build)


# --- preprocessing and tagging ---------------------------------------------------------------------


def log_mel(audio: np.ndarray) -> np.ndarray:
    """log10(10000 x + 1) of the power mel spectrogram (frames, 96) of 16 kHz mono audio, float32."""
    import librosa

    mel = librosa.feature.melspectrogram(y=np.asarray(audio, dtype=np.float32), sr=SAMPLE_RATE, n_fft=N_FFT,
                                         hop_length=HOP, n_mels=N_MELS, pad_mode="reflect")
    return np.log10(10000 * mel.T.astype(np.float32) + 1)


def _patches(spectrogram: np.ndarray, max_patches: int) -> np.ndarray:
    """Consecutive 187-frame patches (N, 187, bands), repeat-padded when shorter, at most
    `max_patches` of them, evenly spaced."""
    frames = spectrogram.shape[0]
    if frames < PATCH_FRAMES:
        spectrogram = np.resize(spectrogram, (PATCH_FRAMES, spectrogram.shape[1]))  # repeats its rows
    count = max(frames // PATCH_FRAMES, 1)
    starts = np.arange(count) * PATCH_FRAMES
    if count > max_patches:
        starts = starts[np.round(np.linspace(0, count - 1, max_patches)).astype(int)]
    return np.stack([spectrogram[s:s + PATCH_FRAMES] for s in starts])


def tag_probabilities(audio: str | Path | np.ndarray, sample_rate: int | None = None,
                      network: Musicnn | None = None, max_patches: int = MAX_PATCHES) -> dict[str, float]:
    """Mean tag probabilities of a song over its 3 s patches: {MSD tag: probability in [0, 1]}.

    audio: a file path, or a mono waveform (samples,) with its `sample_rate`.
    network: a loaded musicnn (None: `load_musicnn()` from the registry).
    """
    network = network if network is not None else load_musicnn()
    patches = torch.from_numpy(_patches(log_mel(classifier_input(audio, sample_rate, SAMPLE_RATE)), max_patches))
    device = next(network.parameters()).device
    with torch.no_grad():
        probs = torch.cat([network(chunk.to(device)).sigmoid() for chunk in patches.split(4)]).mean(dim=0)
    tags = MSD_TAGS if len(probs) == len(MSD_TAGS) else tuple(f"tag{i}" for i in range(len(probs)))
    return dict(zip(tags, probs.cpu().tolist()))
