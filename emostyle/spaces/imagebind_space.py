"""ImageBind space: the joint audio-image space in which the paper retrieves its start image (3.1).

Inputs are prepared exactly as the official `imagebind/data.py` prepares them, in plain torch:
- audio: resampled to 16 kHz with torchaudio's windowed-sinc (Hann) resampler, 3 clips of 2 s
  placed as pytorchvideo's `ConstantClipsPerVideoSampler` places them (evenly from the start to
  duration - 2 s), each clip's mean removed, a Kaldi fbank of its first channel (128 mel bins,
  25 ms Hann window, 10 ms shift, no dither, as `torchaudio.compliance.kaldi.fbank` with
  `htk_compat=True, use_energy=False`), cut or zero-padded to 204 frames, normalised with
  mean -4.268 and std 9.138;
- images: [-1, 1] -> [0, 1], bicubic (antialiased) resize of the short side to 224, centre crop,
  CLIP mean and std.
The reference takes PNG/JPEG files through PIL; here images are tensors (rendered by the
generator), resized as torchvision resizes float tensors (the reference's transforms applied to
a tensor). Against saving the image as an 8-bit PNG and taking the reference's PIL path, the
inputs differ by PIL's uint8 rounding and clipping: mean 3e-3, max 1.5e-2 for a smooth image.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emostyle.audio import read_audio
from emostyle.models.imagebind import ImageBind, load_imagebind
from emostyle.parts import EmbeddingSpace
from emostyle.registry import file_sha256

__all__ = ["ImageBindSpace", "audio_features", "image_features"]

SAMPLE_RATE = 16000
MEL_BINS = 128
TARGET_FRAMES = 204
CLIP_SECONDS = 2
CLIPS = 3
AUDIO_MEAN, AUDIO_STD = -4.268, 9.138
IMAGE_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _resample(wave: torch.Tensor, orig: int, new: int, zeros: int = 6, rolloff: float = 0.99) -> torch.Tensor:
    """torchaudio.functional.resample (sinc_interp_hann, 6 zero crossings, rolloff 0.99); (C, N) -> (C, M)."""
    if orig == new:
        return wave
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    base = min(orig, new) * rolloff  # cutoff just below the lower Nyquist rate
    width = math.ceil(zeros * orig / base)
    # One kernel per output phase: kernel[j, i] weighs input sample (i - width) for output j / new.
    idx = torch.arange(-width, width + orig, dtype=wave.dtype) / orig
    t = (torch.arange(0, -new, -1, dtype=wave.dtype)[:, None] / new + idx) * base
    t = t.clamp(-zeros, zeros)
    window = torch.cos(t * math.pi / zeros / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), t.sin() / t) * (window * (base / orig))
    padded = F.pad(wave, (width, width + orig))
    out = F.conv1d(padded[:, None], kernel[:, None], stride=orig)  # (C, new, frames)
    # torchaudio rounds the output length up in float32; mirrored for sample-exact lengths
    length = int(torch.ceil(torch.as_tensor(new * wave.shape[-1] / orig)))
    return out.transpose(1, 2).reshape(wave.shape[0], -1)[:, :length]


def _mel_banks(bins: int, n_fft: int, sample_rate: int, low: float = 20.0) -> torch.Tensor:
    """Kaldi's triangular mel filters on the mel scale 1127 ln(1 + f / 700): (bins, n_fft / 2 + 1)."""
    def mel(f):
        return 1127.0 * (1.0 + f / 700.0).log() if torch.is_tensor(f) else 1127.0 * math.log(1.0 + f / 700.0)

    mel_low, mel_high = mel(low), mel(sample_rate / 2)
    delta = (mel_high - mel_low) / (bins + 1)
    b = torch.arange(bins).unsqueeze(1)
    left, center, right = mel_low + b * delta, mel_low + (b + 1.0) * delta, mel_low + (b + 2.0) * delta
    m = mel(sample_rate / n_fft * torch.arange(n_fft / 2)).unsqueeze(0)
    banks = torch.clamp(torch.min((m - left) / (center - left), (right - m) / (right - center)), min=0)
    return F.pad(banks, (0, 1))  # Kaldi leaves the Nyquist bin out


def _fbank(wave: torch.Tensor, sample_rate: int, bins: int = MEL_BINS) -> torch.Tensor:
    """Kaldi log mel fbank of a mono signal (N,) -> (frames, bins); 25 ms frames, 10 ms shift.

    As torchaudio.compliance.kaldi.fbank with htk_compat, no energy, Hann window, dither 0:
    per frame remove the mean, pre-emphasis 0.97, symmetric Hann window, zero-pad to a power
    of two, power spectrum, mel filters, log floored at float eps.
    """
    size, shift = int(sample_rate * 0.025), int(sample_rate * 0.010)
    n_fft = 1 << (size - 1).bit_length()
    if wave.shape[0] < size:
        raise ValueError(f"a clip of {wave.shape[0]} samples is shorter than one 25 ms frame")
    frames = wave.unfold(0, size, shift)
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # Kaldi repeats the first sample
    frames = frames - 0.97 * previous
    frames = frames * torch.hann_window(size, periodic=False, dtype=wave.dtype)
    power = torch.fft.rfft(F.pad(frames, (0, n_fft - size))).abs().pow(2.0)
    energies = power @ _mel_banks(bins, n_fft, sample_rate).to(wave.dtype).T
    return energies.clamp(min=torch.finfo(wave.dtype).eps).log()


def _clip_spans(duration: float) -> list[tuple[Fraction, Fraction]]:
    """(start, end) seconds of the CLIPS clips, evenly spaced from 0 to duration - CLIP_SECONDS.

    Exact fractions as pytorchvideo's ConstantClipsPerVideoSampler computes them, so that
    sample indices int(t * 16000) agree with the reference to the sample.
    """
    last_start = Fraction(max(duration - CLIP_SECONDS, 0))
    step = last_start / max(CLIPS - 1, 1)
    spans = []
    for i in range(CLIPS):
        spans.append((step * i, step * i + CLIP_SECONDS))
        if step * (i + 1) > last_start:
            break
    return spans


def audio_features(samples: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
    """ImageBind's audio input (CLIPS, 1, 128, 204) from samples (channels, N) at `sample_rate` Hz."""
    wave = torch.as_tensor(np.asarray(samples, dtype=np.float32)).clone()
    if wave.ndim == 1:
        wave = wave[None]
    wave = _resample(wave, int(sample_rate), SAMPLE_RATE)
    clips = []
    for start, end in _clip_spans(wave.shape[1] / SAMPLE_RATE):
        clip = wave[:, int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)]
        # In place, as the reference: overlapping clips of a short file see earlier clips' means removed.
        clip -= clip.mean()
        fbank = _fbank(clip[0], SAMPLE_RATE).T
        fbank = F.pad(fbank, (0, TARGET_FRAMES - fbank.shape[1])) if fbank.shape[1] < TARGET_FRAMES \
            else fbank[:, :TARGET_FRAMES]
        clips.append((fbank[None] - AUDIO_MEAN) / AUDIO_STD)
    return torch.stack(clips)


def image_features(images: torch.Tensor) -> torch.Tensor:
    """ImageBind's vision input (B, 3, 224, 224) from images (B, 3, H, W) in [-1, 1]."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images (B, 3, H, W) in [-1, 1]; got shape {tuple(images.shape)}")
    x = (images.float() + 1) / 2
    h, w = x.shape[-2:]
    long = int(IMAGE_SIZE * max(h, w) / min(h, w))
    size = (IMAGE_SIZE, long) if h <= w else (long, IMAGE_SIZE)
    if size != (h, w):
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    top, left = int(round((size[0] - IMAGE_SIZE) / 2.0)), int(round((size[1] - IMAGE_SIZE) / 2.0))
    x = x[..., top:top + IMAGE_SIZE, left:left + IMAGE_SIZE]
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std



class ImageBindSpace(EmbeddingSpace):
    """Images and audio in ImageBind's joint space; retrieval compares cosines (Eq. 1).

    The model's dtype sets the precision (float16 on CUDA, float32 on CPU by `load`);
    embeddings come back as float32. Audio embeddings are cached per file content (sha256).
    `logit_scale` (20) is the reference's audio scale: softmax over images of
    `logit_scale * similarity` is the reference's softmax(E_img E_a^T) (Eq. 2) for one clip.
    """

    name = "imagebind"
    logit_scale = 20.0

    def __init__(self, model: ImageBind, batch_size: int = 16):
        self.model = model.eval()
        self.dim = model.out_dim
        self.batch_size = batch_size
        self._audio_cache: dict[str, torch.Tensor] = {}
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu",
             batch_size: int = 16) -> "ImageBindSpace":
        """From `imagebind_huge.pth` (default: the registry's file; MissingWeightError if absent)."""
        return cls(load_imagebind(path, device), batch_size)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings (B, dim), in batches of `batch_size`; differentiable if `images` are."""
        x = image_features(images.to(self.device))
        with torch.set_grad_enabled(images.requires_grad and torch.is_grad_enabled()):
            out = [self.model.embed_vision(b.to(self.dtype)) for b in x.split(self.batch_size)]
        return torch.cat(out).float()

    @torch.no_grad()
    def encode_audio(self, path: str | Path) -> torch.Tensor:
        """Embedding (1, dim) of an audio file: the mean over its 3 clips, as the reference."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"audio file not found: {path}")
        key = file_sha256(path)
        if key in self._audio_cache:
            return self._audio_cache[key].clone()
        samples, sr = read_audio(path)  # raises FileNotFoundError / AudioError with the file's name
        clips = audio_features(samples, sr)[None].to(self.device, self.dtype)
        emb = self.model.embed_audio(clips).float()
        self._audio_cache[key] = emb
        return emb.clone()

    def encode_text(self, text: str) -> torch.Tensor:
        raise NotImplementedError("ImageBind space embeds images and audio only: its text branch is "
                                  "not loaded; use CLIP space for text guidance")

    def similarity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cosine similarities (B, M): dot products of the L2-normalised embeddings."""
        return F.normalize(x.float(), dim=-1) @ F.normalize(y.float(), dim=-1).T

    def distance(self, image_emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """1 - cosine, per item (B,)."""
        return 1 - F.cosine_similarity(image_emb.float(), target.float(), dim=-1)
