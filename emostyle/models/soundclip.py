"""SoundCLIP audio encoder (Lee et al. 2022): mel spectrograms into CLIP ViT-B/32's 512-d space.

EmoStyle embeds the input audio and the generated music with it (paper 3.3, Eq. 5). The
network is a Conv2d(1, 3, 3x3) in front of a ResNet-18 with a 512-way fc; module names follow
kuai-lab/sound-guided-semantic-image-manipulation (`conv.*`, `feature_extractor.*` in timm's
ResNet layout), so `resnet18.pth` / `resnet18_57.pth` load strictly, with or without the
`module.` prefix that DataParallel leaves.

`audio_features` reproduces the reference input exactly: librosa at 44.1 kHz mono, 128-band
mel power spectrogram (librosa defaults), power_to_db(ref=max) / 80 + 1, 864 frames (zero padded
on the right), cv2.resize(x, (128, 512)) bilinear, then a raw reshape to (1, 1, 128, 512).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emostyle.models.checkpoint import (
    build_from_shapes,
    load_network,
    random_state,
    read_state_dict,
    without_data_parallel,
)

__all__ = ["AudioEncoder", "audio_features", "load_soundclip", "tiny_soundclip", "CROPS",
           "SAMPLE_RATE", "N_MELS", "FRAMES"]

SAMPLE_RATE = 44100
N_MELS = 128
FRAMES = 864  # about 10 s at librosa's hop of 512 samples
_RESIZED = 512
CROPS = ("start", "center", "random", "mean")


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN with a (projected) shortcut, timm/torchvision names."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + shortcut)


class ResNet(nn.Module):
    """ResNet (7x7 stem, max pool, four stages, global average pool, fc); widths and depths given."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512), depths: tuple[int, ...] = (2, 2, 2, 2),
                 n_out: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        in_ch = widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths)):
            blocks = [BasicBlock(in_ch if j == 0 else width, width, 2 if (i > 0 and j == 0) else 1)
                      for j in range(depth)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            in_ch = width
        self.fc = nn.Linear(in_ch, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))


class AudioEncoder(nn.Module):
    """Mel input (B, 1, 128, 512) -> (B, 512) audio embeddings, not normalised."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512), depths: tuple[int, ...] = (2, 2, 2, 2),
                 embed_dim: int = 512):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)  # one mel channel to the three image channels of the ResNet
        self.feature_extractor = ResNet(widths, depths, embed_dim)

    @property
    def embed_dim(self) -> int:
        return self.feature_extractor.fc.out_features

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.feature_extractor(self.conv(mel))


# --- the reference input ---------------------------------------------------------------------

def _mel(path: str | Path) -> np.ndarray:
    """(128, frames) float32: librosa mel power in dB relative to the clip's maximum, /80 + 1."""
    import librosa

    from emostyle.audio import load_audio

    y = load_audio(path, sr=SAMPLE_RATE, mono=True)
    mel = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, n_mels=N_MELS)
    return librosa.power_to_db(mel, ref=np.max) / 80.0 + 1


def _window_starts(frames: int, crop: str, seed: int | None) -> list[int]:
    last = frames - FRAMES
    if last <= 0:
        return [0]
    if crop == "start":
        return [0]
    if crop == "center":
        return [last // 2]
    if crop == "random":  # the reference's random.randint(0, w - 864), from an explicit seed
        if seed is None:
            raise ValueError("crop='random' needs a seed (the reference draws the crop unseeded)")
        return [int(np.random.default_rng(seed).integers(0, last + 1))]
    # "mean": back-to-back windows, the last one flush with the end of the clip
    return [*range(0, last, FRAMES), last]


def _resize(window: np.ndarray) -> np.ndarray:
    """cv2.resize(window, (128, 512)) with INTER_LINEAR: (128, 864) -> (512, 128), half-pixel centres."""
    x = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float64))[None, None]
    return F.interpolate(x, size=(_RESIZED, N_MELS), mode="bilinear", align_corners=False)[0, 0].numpy()


def audio_features(path: str | Path, crop: str = "start", seed: int | None = None) -> torch.Tensor:
    """SoundCLIP input of an audio file: (1, 1, 128, 512) float32; crop="mean": (n, 1, 128, 512).

    Clips over 864 frames (~10 s) are cut to one window: crop="start", "center", or "random"
    (seeded; the reference code's choice). crop="mean" returns every window (back to back, the last
    flush with the end), whose embeddings `AudioEncoder` users average. Shorter clips are zero padded.
    """
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    mel = _mel(path)
    windows = []
    for start in _window_starts(mel.shape[1], crop, seed):
        if mel.shape[1] < FRAMES:  # right zero padding (float64, as the reference's np.zeros)
            window = np.zeros((N_MELS, FRAMES))
            window[:, : mel.shape[1]] = mel
        else:
            window = mel[:, start: start + FRAMES]
        # The resized (512, 128) array is reshaped, not transposed, to (128, 512), as the reference.
        windows.append(_resize(window).reshape(1, N_MELS, _RESIZED))
    return torch.from_numpy(np.stack(windows)).float()


# --- checkpoints -----------------------------------------------------------------------------

def _architecture(state: Mapping[str, torch.Tensor], name: str) -> dict:
    prefix = "feature_extractor."
    if f"{prefix}fc.weight" not in state or "conv.weight" not in state:
        raise ValueError(f"{name}: expected a SoundCLIP audio encoder (keys conv.weight, feature_extractor.conv1.weight, "
                         f"feature_extractor.layer1..4, feature_extractor.fc.weight; resnet18.pth)")
    widths, depths = [], []
    for i in range(1, 5):
        blocks = {k.split(".")[2] for k in state if k.startswith(f"{prefix}layer{i}.")}
        if not blocks:
            raise ValueError(f"{name}: SoundCLIP checkpoint has no feature_extractor.layer{i}; not a ResNet")
        depths.append(len(blocks))
        widths.append(state[f"{prefix}layer{i}.0.conv1.weight"].shape[0])
    if any(f"{prefix}layer1.0.conv3.weight" == k for k in state):
        raise ValueError(f"{name}: a bottleneck ResNet (resnet50?); SoundCLIP uses resnet18")
    return dict(widths=tuple(widths), depths=tuple(depths), embed_dim=state[f"{prefix}fc.weight"].shape[0])


def _build(state: Mapping[str, torch.Tensor], name: str) -> AudioEncoder:
    net = build_from_shapes(AudioEncoder, without_data_parallel(state), lambda s: _architecture(s, name),
                            f"{name} (the SoundCLIP encoder)", "resnet18.pth (conv, feature_extractor.*)")
    return net.eval().requires_grad_(False)


def _read_state(path: Path) -> Mapping[str, torch.Tensor]:
    return read_state_dict(path, "SoundCLIP weights", "soundclip-resnet18")


def load_soundclip(path_or_state: str | Path | Mapping | None = None,
                   device: str | torch.device = "cpu") -> AudioEncoder:
    """SoundCLIP from `resnet18.pth` / `resnet18_57.pth` or a state dict (None: registry
    `soundclip-resnet18`). Loaded once per (path, device); eval mode, parameters frozen."""
    return load_network(path_or_state, device, "soundclip-resnet18", _read_state, _build)


def tiny_soundclip(seed: int = 0, embed_dim: int = 32) -> AudioEncoder:
    """A narrow random SoundCLIP (widths 8-64, one block per stage) for the tiny profile and tests."""
    model = AudioEncoder(widths=(8, 16, 32, 64), depths=(1, 1, 1, 1), embed_dim=embed_dim)
    return _build(random_state(model, seed), f"tiny_soundclip(seed={seed})")
